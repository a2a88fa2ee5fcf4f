/**
 * The HTML pages, rendered from views/ with Eta (auto-escaping on: every value is escaped unless
 * a template says otherwise). Forms post back here and use the same ClientService as the API.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { koaBody } from 'koa-body';
import { Eta } from 'eta';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CairnError } from '../errors.js';
import { checkCredentials, register } from './accounts.js';
import { signInAndStart, type ApiDeps } from './api.js';
import { requireSession, setSessionCookie, type SessionState } from './http-session.js';

const VIEWS = fileURLToPath(new URL('../../../views', import.meta.url));
const eta = new Eta({ views: VIEWS, autoEscape: true, cache: true });

const STATIC: Record<string, string> = { 'app.css': 'text/css; charset=utf-8', 'upload.js': 'text/javascript; charset=utf-8' };
const staticCache = new Map<string, Buffer>();

const form = koaBody({ json: false, urlencoded: true, multipart: false, formLimit: '64kb' });

function fields(ctx: Context): Record<string, unknown> {
  const b = ctx.request.body;
  return typeof b === 'object' && b !== null && !Array.isArray(b) ? (b as Record<string, unknown>) : {};
}

export function render(ctx: Context, view: string, data: Record<string, unknown> = {}): void {
  const session = (ctx.state as SessionState).session;
  ctx.type = 'html';
  ctx.body = eta.render(view, { ...data, user: session?.username ?? null, csrf: session?.csrf ?? '', path: ctx.path });
}

export function renderError(ctx: Context, status: number, message: string): string {
  const session = (ctx.state as SessionState).session;
  return eta.render('error', { status, message, user: session?.username ?? null, csrf: session?.csrf ?? '', path: ctx.path });
}

export function pagesRouter(deps: ApiDeps): Router {
  const { service, sessions } = deps;
  const r = new Router();

  r.get('/static/:name', async (ctx) => {
    const name = ctx.params.name!;
    const type = STATIC[name];
    if (!type) throw new CairnError('NOT_FOUND', 'no such asset');
    let bytes = staticCache.get(name);
    if (!bytes) {
      bytes = readFileSync(`${VIEWS}/static/${name}`);
      staticCache.set(name, bytes);
    }
    ctx.type = type;
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = bytes;
  });

  r.get('/', async (ctx) => {
    if ((ctx.state as SessionState).session) return ctx.redirect('/files');
    render(ctx, 'signin', { error: null, username: '' });
  });

  r.get('/signup', async (ctx) => render(ctx, 'signup', { error: null, username: '' }));

  r.post('/signup', form, async (ctx) => {
    const f = fields(ctx);
    try {
      const creds = checkCredentials(f.username, f.password);
      await register(service.link, creds.username, creds.password);
      await signInAndStart(deps, ctx, creds.username, creds.password);
      ctx.redirect('/files');
    } catch (err) {
      if (!(err instanceof CairnError) || (err.code !== 'BAD_REQUEST' && err.code !== 'CONFLICT')) throw err;
      ctx.status = err.code === 'CONFLICT' ? 409 : 400;
      render(ctx, 'signup', { error: err.message, username: String(f.username ?? '') });
    }
  });

  r.post('/signin', form, async (ctx) => {
    const f = fields(ctx);
    try {
      await signInAndStart(deps, ctx, f.username, f.password);
      ctx.redirect('/files');
    } catch (err) {
      if (!(err instanceof CairnError) || !['BAD_REQUEST', 'UNAUTHENTICATED', 'RATE_LIMITED'].includes(err.code)) throw err;
      ctx.status = err.code === 'RATE_LIMITED' ? 429 : 401;
      render(ctx, 'signin', { error: err.message, username: String(f.username ?? '') });
    }
  });

  r.post('/signout', form, async (ctx) => {
    const session = requireSession(ctx, String(fields(ctx)._csrf ?? ''));
    sessions.delete(session.token);
    setSessionCookie(ctx, null);
    ctx.redirect('/');
  });

  r.get('/files', async (ctx) => {
    const session = (ctx.state as SessionState).session;
    if (!session) return ctx.redirect('/');
    render(ctx, 'files', { files: await service.listFiles(session), maxUploadBytes: deps.maxUploadBytes });
  });

  return r;
}
