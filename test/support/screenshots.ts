/**
 * Screenshots of every page at desktop (1280×800) and phone (390×844) widths, for a person to
 * look at: `node dist/test/support/screenshots.js [out-dir]` (default /tmp/cairn-shots). Starts
 * its own cluster, signs two users up, uploads, shares, and visits each page.
 */
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { startCluster } from './cluster.js';
import { DESKTOP, PHONE, launchBrowser, newContext, type Page } from './browser.js';

const out = process.argv[2] ?? '/tmp/cairn-shots';
mkdirSync(out, { recursive: true });

/** A full-page screenshot, plus parts of at most 1600 px for long pages (easier to look at). */
async function shot(page: Page, path: string) {
  await page.screenshot({ path, fullPage: true });
  const height = (await page.evaluate('document.documentElement.scrollHeight')) as number;
  const width = page.viewportSize()!.width;
  if (height <= 1800) return;
  for (let y = 0, i = 1; y < height && i <= 4; y += 1600, i += 1) {
    await page.screenshot({ path: path.replace(/\.png$/, `-part${i}.png`), fullPage: true, clip: { x: 0, y, width, height: Math.min(1600, height - y) } });
  }
}

async function signUp(page: Page, base: string, username: string, password: string) {
  await page.goto(`${base}/signup`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign up', exact: true }).click();
  await page.waitForURL(/\/files/);
}

async function main() {
  const cluster = await startCluster();
  const browser = await launchBrowser();
  try {
    const base = cluster.clients[0]!;
    const suffix = randomBytes(2).toString('hex');
    const alice = `alice${suffix}`;
    const bob = `bob${suffix}`;
    const pw = 'correct horse battery';

    const b = await newContext(browser);
    const bobPage = await b.context.newPage();
    await signUp(bobPage, base, bob, pw);

    const a = await newContext(browser);
    const page = await a.context.newPage();
    // Anonymous pages first.
    for (const [name, url] of [['signin', '/signin'], ['signup', '/signup']] as const) {
      for (const [w, vp] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
        await page.setViewportSize(vp);
        await page.goto(`${base}${url}`);
        await shot(page, `${out}/${name}-${w}.png`);
      }
    }
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/signin`);
    await page.getByLabel('Username').fill(alice);
    await page.getByLabel('Password').fill('wrong password!');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForSelector('.alert-error');
    await shot(page, `${out}/signin-error-desktop.png`);

    await signUp(page, base, alice, pw);
    for (const [w, vp] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      await page.setViewportSize(vp);
      await page.goto(`${base}/files`);
      await shot(page, `${out}/files-empty-${w}.png`);
    }
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/files`);
    await page.setInputFiles('#file', [
      { name: 'quarterly report – final (v2).pdf', mimeType: 'application/pdf', buffer: randomBytes(1_300_000) },
      { name: 'holiday.jpg', mimeType: 'image/jpeg', buffer: randomBytes(6 * 1024 * 1024 + 17) },
      { name: '<script>alert(1)</script>.txt', mimeType: 'text/plain', buffer: Buffer.from('hi') },
    ]);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.waitForSelector('.upload-item[data-state="sending"], .upload-item[data-state="storing"]');
    await shot(page, `${out}/files-uploading-desktop.png`);
    await page.locator('.upload-item[data-state="stored"]').nth(2).waitFor({ timeout: 60_000 });
    await page.locator('#mine tbody tr').nth(2).waitFor({ timeout: 30_000 });
    // A too-large file: refused in the browser before sending.
    await shot(page, `${out}/files-uploaded-desktop.png`);

    // Share one with bob.
    await page.getByRole('link', { name: 'holiday.jpg', exact: true }).click();
    await page.getByLabel('Username to share with').fill(bob);
    await page.getByRole('button', { name: 'Share', exact: true }).click();
    await page.waitForSelector('.flash');
    const detailsUrl = page.url();
    for (const [w, vp] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
      await page.setViewportSize(vp);
      await page.goto(detailsUrl);
      await shot(page, `${out}/details-${w}.png`);
      await page.goto(`${detailsUrl}/delete`);
      await shot(page, `${out}/delete-${w}.png`);
      await page.goto(`${base}/files`);
      await shot(page, `${out}/files-${w}.png`);
      await page.goto(`${base}/chain`);
      await shot(page, `${out}/chain-${w}.png`);
      await page.goto(`${base}/cluster`);
      await shot(page, `${out}/cluster-${w}.png`);
      await page.goto(`${base}/files/00000000000000000000000000000000`);
      await shot(page, `${out}/error-${w}.png`);
      await bobPage.setViewportSize(vp);
      await bobPage.goto(`${base}/files`);
      await shot(bobPage, `${out}/files-bob-${w}.png`);
    }
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/cluster`);
    await page.getByRole('button', { name: 'Run repair' }).click();
    await page.waitForLoadState();
    await shot(page, `${out}/repair-desktop.png`);
    await page.goto(`${detailsUrl}/delete`);
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.waitForSelector('.flash');
    await shot(page, `${out}/files-after-delete-desktop.png`);
    console.log(`screenshots in ${out}; problems: ${JSON.stringify([...a.problems, ...b.problems])}`);
  } finally {
    await browser.close();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
