/**
 * Cross-site request forgery defences for the web forms.
 *
 * - Signed-in forms carry the session's CSRF token (checked by requireSession).
 * - Anonymous forms (sign in, sign up) use a double-submit token: a random value in a signed,
 *   HttpOnly, SameSite=Strict cookie, repeated in a hidden form field; a post must carry both and
 *   they must match. So a login-CSRF (signing a victim into the attacker's account) fails too.
 * - Defence in depth for every state-changing request: a browser that says the request comes
 *   from another origin (Origin or Sec-Fetch-Site) is refused before anything else runs.
 *   Scripts that send neither header (curl, fetch from Node) are not affected.
 */
import type { Context, Next } from 'koa';
import { randomBytes } from 'node:crypto';
import { CairnError } from '../errors.js';
import { cookieName, sameSecret, type SessionState } from './http-session.js';

export const ANON_CSRF_COOKIE = 'cairn_csrf';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const STALE_FORM = 'this form is stale or did not come from this site (CSRF token missing or wrong); reload the page and try again';

/** The token an anonymous form must echo; set in a cookie the first time it is needed. */
export function anonymousToken(ctx: Context): string {
  const name = cookieName(ctx, ANON_CSRF_COOKIE);
  const existing = ctx.cookies.get(name, { signed: true });
  if (existing && /^[A-Za-z0-9_-]{32}$/.test(existing)) return existing;
  const token = randomBytes(24).toString('base64url');
  ctx.cookies.set(name, token, { signed: true, httpOnly: true, sameSite: 'strict', overwrite: true });
  return token;
}

/** The token to put in a form on this page: the session's when signed in, else the anonymous one. */
export function formToken(ctx: Context): string {
  const session = (ctx.state as SessionState).session;
  return session ? session.csrf : anonymousToken(ctx);
}

/**
 * For forms that anyone may post (sign in, sign up): the submitted token must match the
 * anonymous cookie, or the session's token when a signed-in browser posts one.
 */
export function checkAnonymousForm(ctx: Context, submitted: unknown): void {
  const token = typeof submitted === 'string' ? submitted : undefined;
  const cookie = ctx.cookies.get(cookieName(ctx, ANON_CSRF_COOKIE), { signed: true });
  const session = (ctx.state as SessionState).session;
  const ok = (cookie !== undefined && sameSecret(token, cookie)) || (session !== undefined && sameSecret(token, session.csrf));
  if (!ok) throw new CairnError('FORBIDDEN', STALE_FORM);
}

function sameOrigin(ctx: Context, origin: string): boolean {
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host === ctx.host;
  } catch {
    return false;
  }
}

/** Refuses state-changing requests that a browser marks as coming from another site. */
export function originGuard() {
  return async (ctx: Context, next: Next) => {
    if (!SAFE_METHODS.has(ctx.method)) {
      const origin = ctx.get('origin');
      const site = ctx.get('sec-fetch-site');
      if ((origin && !sameOrigin(ctx, origin)) || site === 'cross-site' || site === 'same-site') {
        throw new CairnError('FORBIDDEN', 'cross-site requests are refused');
      }
    }
    await next();
  };
}
