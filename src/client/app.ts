/**
 * The Koa application of a web client: security headers, errors as JSON (API) or a page (forms),
 * sessions, the JSON API and the HTML pages, all over one ClientService.
 */
import Koa from 'koa';
import { randomBytes } from 'node:crypto';
import { CairnError } from '../errors.js';
import { apiRouter, type ApiDeps } from './api.js';
import { originGuard } from './csrf.js';
import { httpError } from './http-errors.js';
import { resolveSession } from './http-session.js';
import { pagesRouter, renderError } from './pages.js';
import { securityHeaders } from './security-headers.js';

export function createApp(deps: ApiDeps, log: (line: string) => void): Koa {
  const app = new Koa({ proxy: false });
  app.keys = [randomBytes(32).toString('hex')];

  app.use(securityHeaders());
  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new CairnError('NOT_FOUND', `nothing at ${ctx.path}`);
    } catch (err) {
      const e = httpError(err);
      if (e.internal) log(`${ctx.method} ${ctx.path} failed: ${(err as Error).stack ?? String(err)}`);
      ctx.status = e.status;
      if (e.status === 429) ctx.set('Retry-After', '5');
      if (ctx.path.startsWith('/api/') || ctx.path === '/healthz' || !ctx.accepts('html')) {
        ctx.body = { error: { code: e.code, message: e.message } };
      } else {
        ctx.type = 'html';
        ctx.body = renderError(ctx, e.status, e.message);
      }
    }
  });
  app.use(originGuard());
  app.use(resolveSession(deps.sessions));

  app.use(async (ctx, next) => {
    if (ctx.path !== '/healthz') return next();
    const ok = await deps.service.healthy();
    ctx.status = ok ? 200 : 503;
    ctx.body = ok ? { ok: true } : { ok: false, error: { code: 'NO_MAJORITY', message: 'this client cannot reach a chain majority' } };
  });

  const api = apiRouter(deps);
  app.use(api.routes()).use(api.allowedMethods());
  const pages = pagesRouter(deps);
  app.use(pages.routes()).use(pages.allowedMethods());
  return app;
}
