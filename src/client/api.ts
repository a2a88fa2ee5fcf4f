/** The JSON API under /api/v1 (API.md): the contract scripts and tests rely on. */
import Router from '@koa/router';
import type { Context } from 'koa';
import { koaBody } from 'koa-body';
import { CairnError } from '../errors.js';
import * as v from '../validate.js';
import { checkCredentials, register, signIn } from './accounts.js';
import { requireSession, setSessionCookie, type SessionState } from './http-session.js';
import type { SignInLimiter } from './rate-limit.js';
import type { ClientService } from './service.js';
import type { Session, Sessions } from './sessions.js';
import { receiveUploads } from './upload-receiver.js';
import { sendSegments } from './download.js';
import { blockJson, wellFormed } from './format.js';

export interface ApiDeps {
  service: ClientService;
  sessions: Sessions;
  limiter: SignInLimiter;
  maxUploadBytes: number;
}

const json = koaBody({ json: true, urlencoded: true, multipart: false, jsonLimit: '64kb', formLimit: '64kb' });

function body(ctx: Context): Record<string, unknown> {
  const b = ctx.request.body;
  return typeof b === 'object' && b !== null && !Array.isArray(b) ? (b as Record<string, unknown>) : {};
}

export function contentDisposition(stored: string): string {
  const name = wellFormed(stored);
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

/**
 * Answers with a file's plaintext (streamed past the first segment); shared by the API and the
 * pages. A HEAD gets the headers only, so no download pipeline starts that nobody would read.
 */
export async function sendDownload(ctx: Context, service: ClientService, session: Session, id: string): Promise<void> {
  const d = await service.openDownload(session, id);
  const body = ctx.method === 'HEAD' ? Buffer.alloc(0) : await d.body();
  ctx.set('Content-Disposition', contentDisposition(d.meta.name));
  ctx.type = d.meta.type;
  if (Buffer.isBuffer(body)) {
    ctx.body = body;
    ctx.length = d.size;
    return;
  }
  // Written here rather than by Koa, so each segment's memory is reused once the socket sent it.
  ctx.status = 200;
  ctx.length = d.size;
  ctx.respond = false;
  // A failure past the headers cannot change the status: it ends the response early, and goes
  // where Koa reports errors of responses already under way.
  await sendSegments(ctx.res, body, (err) => ctx.app.emit('error', err, ctx));
}

/** Shared by the API and the pages: sign in and remember the session in a cookie. */
export async function signInAndStart(deps: ApiDeps, ctx: Context, username: unknown, password: unknown) {
  const creds = checkCredentials(username, password);
  const attempt = deps.limiter.begin(creds.username, ctx.ip);
  try {
    const keys = await signIn(deps.service.link, creds.username, creds.password);
    attempt.succeeded();
    const session = deps.sessions.create(creds.username, keys);
    setSessionCookie(ctx, session.token);
    return session;
  } catch (err) {
    if (err instanceof CairnError && err.code === 'UNAUTHENTICATED') attempt.failed();
    throw err;
  } finally {
    attempt.abandoned(); // a no-op once the attempt ended above
  }
}

export function apiRouter(deps: ApiDeps): Router {
  const { service, sessions } = deps;
  const r = new Router({ prefix: '/api/v1' });

  r.post('/users', json, async (ctx) => {
    const creds = checkCredentials(body(ctx).username, body(ctx).password);
    await register(service.link, creds.username, creds.password);
    ctx.status = 201;
    ctx.body = { username: creds.username };
  });

  r.post('/sessions', json, async (ctx) => {
    const session = await signInAndStart(deps, ctx, body(ctx).username, body(ctx).password);
    ctx.body = { token: session.token, username: session.username };
  });

  r.delete('/sessions', async (ctx) => {
    const session = (ctx.state as SessionState).session;
    if (session) sessions.delete(session.token);
    setSessionCookie(ctx, null);
    ctx.status = 204;
  });

  r.get('/files', async (ctx) => {
    ctx.body = await service.listFiles(requireSession(ctx));
  });

  r.post('/files', async (ctx) => {
    const session = requireSession(ctx);
    const results = await receiveUploads(ctx, service, session, deps.maxUploadBytes);
    ctx.status = 201;
    ctx.body = results;
  });

  r.get('/files/:id', async (ctx) => {
    ctx.body = await service.fileDetails(requireSession(ctx), ctx.params.id!);
  });

  r.get('/files/:id/content', async (ctx) => {
    await sendDownload(ctx, service, requireSession(ctx), ctx.params.id!);
  });

  r.delete('/files/:id', async (ctx) => {
    await service.deleteFile(requireSession(ctx), ctx.params.id!);
    ctx.status = 204;
  });

  r.post('/files/:id/shares', json, async (ctx) => {
    const username = v.parseWith(v.str({ min: 1, max: 64 }), body(ctx).username, 'BAD_REQUEST', 'username');
    await service.shareFile(requireSession(ctx), ctx.params.id!, username);
    ctx.status = 201;
    ctx.body = { id: ctx.params.id, username };
  });

  r.get('/chain', async (ctx) => {
    ctx.body = await service.chainInfo();
  });

  r.get('/chain/blocks', async (ctx) => {
    const from = v.parseWith(v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }), Number(ctx.query.from ?? 1), 'BAD_REQUEST', 'from');
    const limit = v.parseWith(v.int({ min: 1, max: 256 }), Number(ctx.query.limit ?? 50), 'BAD_REQUEST', 'limit');
    ctx.body = (await service.blocks(from, limit)).map(blockJson);
  });

  r.get('/chain/verify', async (ctx) => {
    requireSession(ctx); // it costs every SP a walk of its whole chain: not for anyone who asks
    ctx.body = await service.verify();
  });

  r.get('/cluster', async (ctx) => {
    ctx.body = await service.cluster();
  });

  r.post('/cluster/repair', async (ctx) => {
    requireSession(ctx);
    await service.repair();
    ctx.status = 202;
    ctx.body = { started: true };
  });

  return r;
}
