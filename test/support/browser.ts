/**
 * Debian's Chromium driven by playwright-core. When the browser is absent the browser tests say
 * so and skip — unless CAIRN_REQUIRE_BROWSER=1 (CI), where absence is a failure.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CAIRN_CHROMIUM || '/usr/bin/chromium';
export const BROWSER_REQUIRED = process.env.CAIRN_REQUIRE_BROWSER === '1';

/** Why browser tests must skip, or false when they run (or must run and fail loudly). */
export function browserSkip(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (BROWSER_REQUIRED) return false;
  const reason = `Chromium not found at ${CHROMIUM}: browser tests skipped (install the chromium package; CI sets CAIRN_REQUIRE_BROWSER=1)`;
  console.log(`# ${reason}`);
  return reason;
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`CAIRN_REQUIRE_BROWSER=1 but Chromium is missing at ${CHROMIUM}`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/**
 * A fresh browser profile (cookies of its own) that fails the test on anything the page gets
 * wrong quietly: a JavaScript error, a CSP violation, or a dialog (alert/confirm) of any kind.
 */
export async function newContext(browser: Browser, opts: { viewport?: { width: number; height: number } } = {}) {
  const context = await browser.newContext({ viewport: opts.viewport ?? DESKTOP, acceptDownloads: true });
  const problems: string[] = [];
  const watch = (page: Page) => {
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(`console: ${msg.text()}`);
    });
    page.on('dialog', (d) => {
      problems.push(`dialog (${d.type()}): ${d.message()}`);
      void d.dismiss();
    });
  };
  context.on('page', watch);
  return { context, problems };
}

export type { Browser, BrowserContext, Page };
