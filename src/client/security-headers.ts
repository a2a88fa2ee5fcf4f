/**
 * Security headers on every answer of a web client. The pages carry no inline script and no
 * inline style (no <script> bodies, no style= attributes), so the policy can forbid both.
 */
import type { Context, Next } from 'koa';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function securityHeaders() {
  return async (ctx: Context, next: Next) => {
    ctx.set('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Referrer-Policy', 'same-origin');
    ctx.set('Cross-Origin-Opener-Policy', 'same-origin');
    ctx.set('Cross-Origin-Resource-Policy', 'same-origin');
    ctx.set('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), interest-cohort=()');
    // Pages and API answers hold a user's data: never keep them in a shared or disk cache. Set
    // before the route runs (a download writes its headers itself); a route may relax it.
    ctx.set('Cache-Control', 'no-store');
    await next();
  };
}
