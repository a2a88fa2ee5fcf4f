/**
 * The Koa application of a web client: security headers, errors as JSON (API) or a page (forms),
 * sessions, the JSON API and the HTML pages, all over one ClientService.
 */
import Koa, { type Context } from 'koa';
import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';
import { CairnError, isCairnError } from '../errors.js';
import { apiRouter, type ApiDeps } from './api.js';
import { originGuard } from './csrf.js';
import { httpError, senderCaused } from './http-errors.js';
import { resolveSession } from './http-session.js';
import { pagesRouter, renderError } from './pages.js';
import { securityHeaders } from './security-headers.js';

const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
const DRAIN_MAX_MS = 15_000;

/** Reads and discards what is left of a request body; false if it is longer or slower than allowed. */
export function drainRequest(req: IncomingMessage, maxBytes: number, maxMs: number): Promise<boolean> {
  if (req.complete) return Promise.resolve(true);
  if (req.destroyed) return Promise.resolve(false);
  // Announced longer than we would read: answer now and close, rather than read for maxMs first.
  if (Number(req.headers['content-length']) > maxBytes) return Promise.resolve(false);
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('close', onClose);
      resolve(ok);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > maxBytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onFail = () => finish(false);
    const onClose = () => finish(req.complete);
    const timer = setTimeout(() => finish(false), maxMs);
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onFail);
    req.once('close', onClose);
    req.resume();
  });
}

export function createApp(deps: ApiDeps, log: (line: string) => void): Koa {
  const app = new Koa({ proxy: false });
  app.keys = [randomBytes(32).toString('hex')];
  // Errors of responses already under way (a download that failed past its headers) and of
  // requests that broke off: Koa's own listener printed a stack for each, also for every
  // cancelled upload. What the sender caused is not ours to log.
  app.on('error', (err: unknown, ctx?: Context) => {
    if (senderCaused(err)) return;
    const where = ctx ? `${ctx.method} ${ctx.path}` : 'a request';
    log(`${where} failed: ${isCairnError(err) ? `${err.code}: ${err.message}` : ((err as Error).stack ?? String(err))}`);
  });

  app.use(securityHeaders());
  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new CairnError('NOT_FOUND', `nothing at ${ctx.path}`);
      // The routers answer a known path with a method it lacks by status and Allow header alone.
      if ((ctx.status === 405 || ctx.status === 501) && ctx.body === undefined) {
        throw new CairnError('METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}; use ${ctx.response.get('Allow') || 'another method'}`);
      }
    } catch (err) {
      const e = httpError(err);
      if (e.internal) log(`${ctx.method} ${ctx.path} failed: ${(err as Error).stack ?? String(err)}`);
      ctx.status = e.status;
      if (e.status === 429) ctx.set('Retry-After', '5');
      // Refused before the request body was read (413, a CSRF 403 on an upload …): read and
      // drop the rest first, so the client sees the answer instead of a reset connection and
      // its keep-alive socket stays clean; past a bound, or when the error says not to wait
      // (see HttpError.drain), answer and close the connection.
      if (!ctx.req.complete && (!e.drain || !(await drainRequest(ctx.req, DRAIN_MAX_BYTES, DRAIN_MAX_MS)))) ctx.set('Connection', 'close');
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
