/**
 * Who is calling: a Bearer token (scripts) or the signed session cookie (browsers). Cookie
 * callers must also prove the request came from our own page (CSRF token) for any change.
 */
import type { Context, Next } from 'koa';
import { timingSafeEqual } from 'node:crypto';
import { CairnError } from '../errors.js';
import type { Session, Sessions } from './sessions.js';

export const SESSION_COOKIE = 'cairn_session';

/**
 * Cookies are shared by every port of a host, so two web clients on one host (client1 on :5000,
 * client2 on :5001) would overwrite each other's session cookie in one browser. Each client's
 * cookies therefore carry the port they were set for: `cairn_session_5000`, `cairn_session_5001`.
 */
export function cookieName(ctx: Context, base: string): string {
  const port = /:(\d{1,5})$/.exec(ctx.host)?.[1];
  return port ? `${base}_${port}` : base;
}
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface SessionState {
  session?: Session;
  viaCookie?: boolean;
}

export function sameSecret(a: string | undefined, b: string): boolean {
  if (typeof a !== 'string') return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function resolveSession(sessions: Sessions) {
  return async (ctx: Context, next: Next) => {
    const state = ctx.state as SessionState;
    const auth = ctx.get('authorization');
    if (auth.startsWith('Bearer ')) {
      state.session = sessions.get(auth.slice(7).trim());
      state.viaCookie = false;
    } else {
      state.session = sessions.get(ctx.cookies.get(cookieName(ctx, SESSION_COOKIE), { signed: true }));
      state.viaCookie = state.session !== undefined;
    }
    await next();
  };
}

/** The session, or 401; the CSRF token is for requireSession to check. */
export function signedInSession(ctx: Context): Session {
  const { session } = ctx.state as SessionState;
  if (!session) throw new CairnError('UNAUTHENTICATED', 'sign in first (session missing or expired)');
  return session;
}

/** The session, or 401; for cookie callers making a change, also checks the CSRF token. */
export function requireSession(ctx: Context, csrfFromForm?: string): Session {
  const session = signedInSession(ctx);
  if ((ctx.state as SessionState).viaCookie && !SAFE_METHODS.has(ctx.method)) {
    const token = ctx.get('x-csrf-token') || csrfFromForm;
    if (!sameSecret(token, session.csrf)) throw new CairnError('FORBIDDEN', 'the form is stale or did not come from this site (CSRF token missing or wrong); reload the page and try again');
  }
  return session;
}

export function setSessionCookie(ctx: Context, token: string | null): void {
  ctx.cookies.set(cookieName(ctx, SESSION_COOKIE), token, { signed: true, httpOnly: true, sameSite: 'strict', overwrite: true, ...(token === null ? { maxAge: 0 } : {}) });
}
