/**
 * The HTML pages, rendered from views/ with Eta (auto-escaping on: every value is escaped; the
 * templates use `<%~` only for the layout's body and for included partials, never for data).
 * Forms post back here and use the same ClientService as the JSON API. Every form carries a
 * CSRF token: the session's when signed in, a double-submit cookie token when anonymous.
 */
import Router from '@koa/router';
import type { Context } from 'koa';
import { koaBody } from 'koa-body';
import { Eta } from 'eta';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CairnError } from '../errors.js';
import { USERNAME } from '../chain/tx.js';
import { checkCredentials, register } from './accounts.js';
import { sendDownload, signInAndStart, type ApiDeps } from './api.js';
import { checkAnonymousForm, formToken } from './csrf.js';
import type { FileSummary } from './file-access.js';
import { humanDate, humanSize, isoDate, percent, sentence, shortHash, summarizeTx, thousands } from './format.js';
import { requireSession, setSessionCookie, signedInSession, type SessionState } from './http-session.js';
import type { Session } from './sessions.js';
import { receiveUploads } from './upload-receiver.js';

const VIEWS = fileURLToPath(new URL('../../../views', import.meta.url));
const eta = new Eta({ views: VIEWS, autoEscape: true, cache: true });
const fmt = { humanSize, humanDate, isoDate, shortHash, percent, thousands, sentence };

/** A Map, not an object: `/static/__proto__` must find nothing (it found Object.prototype and read a file that is not there). */
const STATIC = new Map<string, string>([
  ['app.css', 'text/css; charset=utf-8'],
  ['app.js', 'text/javascript; charset=utf-8'],
]);
const staticCache = new Map<string, Buffer>();

const form = koaBody({ json: false, urlencoded: true, multipart: false, text: false, formLimit: '64kb' });

const SEGMENTS_PER_PAGE = 50;
const BLOCKS_PER_PAGE = 20;

function fields(ctx: Context): Record<string, unknown> {
  const b = ctx.request.body;
  return typeof b === 'object' && b !== null && !Array.isArray(b) ? (b as Record<string, unknown>) : {};
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

// ---- one-shot messages shown on the next page a session sees (post → redirect → get) ----

interface Flash {
  kind: 'ok' | 'error';
  text: string;
}
const flashes = new WeakMap<Session, Flash>();

function setFlash(session: Session, text: string, kind: Flash['kind'] = 'ok'): void {
  flashes.set(session, { kind, text });
}

function takeFlash(session: Session | undefined): Flash | null {
  if (!session) return null;
  const f = flashes.get(session) ?? null;
  flashes.delete(session);
  return f;
}

// ---- rendering ----

export function render(ctx: Context, view: string, data: Record<string, unknown> = {}): void {
  const session = (ctx.state as SessionState).session;
  const csrf = formToken(ctx);
  ctx.type = 'html';
  ctx.body = eta.render(view, { ...data, user: session?.username ?? null, csrf, path: ctx.path, flash: takeFlash(session), fmt });
}

export function renderError(ctx: Context, status: number, message: string): string {
  const session = (ctx.state as SessionState).session;
  return eta.render('error', { status, message, user: session?.username ?? null, csrf: formToken(ctx), path: ctx.path, flash: null, fmt });
}

/** 303 See Other: after a form post, the browser fetches the next page with GET. */
function seeOther(ctx: Context, url: string): void {
  ctx.redirect(url);
  ctx.status = 303;
}

/** Only local paths may be a destination after sign-in (no open redirect). */
export function safeNext(raw: unknown): string {
  const s = str(raw);
  return /^\/(?![/\\])[\x21-\x7e]{0,500}$/.test(s) && !s.startsWith('/signout') ? s : '/files';
}

/** The signed-in session, or null after redirecting the browser to the sign-in page. */
function signedIn(ctx: Context): Session | null {
  const session = (ctx.state as SessionState).session;
  if (session) return session;
  ctx.redirect(`/signin?next=${encodeURIComponent(ctx.originalUrl)}`);
  return null;
}

// ---- "My files": sorting ----

type SortKey = 'name' | 'size' | 'date' | 'owner' | 'health';
const COLUMNS: { key: SortKey; label: string; firstDir: 'asc' | 'desc' }[] = [
  { key: 'name', label: 'Name', firstDir: 'asc' },
  { key: 'size', label: 'Size', firstDir: 'desc' },
  { key: 'date', label: 'Date', firstDir: 'desc' },
  { key: 'owner', label: 'Owner', firstDir: 'asc' },
  { key: 'health', label: 'Health', firstDir: 'desc' },
];
const HEALTH_RANK = { ok: 0, degraded: 1, lost: 2 } as const;
const collator = new Intl.Collator('en', { sensitivity: 'base', numeric: true });

function compareBy(key: SortKey): (a: FileSummary, b: FileSummary) => number {
  switch (key) {
    case 'name':
      return (a, b) => collator.compare(a.name, b.name);
    case 'size':
      return (a, b) => a.size - b.size;
    case 'owner':
      return (a, b) => collator.compare(a.owner, b.owner);
    case 'health':
      return (a, b) => HEALTH_RANK[a.health] - HEALTH_RANK[b.health];
    default:
      return (a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0);
  }
}

export function sortFiles(files: FileSummary[], key: SortKey, dir: 'asc' | 'desc'): FileSummary[] {
  const cmp = compareBy(key);
  const byDate = compareBy('date');
  const sign = dir === 'asc' ? 1 : -1;
  // Ties fall back to newest first, then id, so the order is stable between reloads.
  return [...files].sort((a, b) => sign * cmp(a, b) || -byDate(a, b) || (a.id < b.id ? -1 : 1));
}

function parseSort(query: Record<string, unknown>): { key: SortKey; dir: 'asc' | 'desc'; label: string } {
  const col = COLUMNS.find((c) => c.key === query.sort) ?? COLUMNS.find((c) => c.key === 'date')!;
  const dir = query.dir === 'asc' || query.dir === 'desc' ? query.dir : col.firstDir;
  return { key: col.key, dir, label: col.label.toLowerCase() };
}

function columnsFor(sort: { key: SortKey; dir: 'asc' | 'desc' }, anchor: string) {
  return COLUMNS.map((c) => {
    const active = c.key === sort.key;
    const nextDir = active ? (sort.dir === 'asc' ? 'desc' : 'asc') : c.firstDir;
    return {
      key: c.key,
      label: c.label,
      nextDir,
      ariaSort: active ? (sort.dir === 'asc' ? 'ascending' : 'descending') : null,
      href: `/files?sort=${c.key}&dir=${nextDir}#${anchor}`,
    };
  });
}

function healthText(h: string, inline: boolean): string {
  if (inline) return 'its record, with its bytes, is on every storage provider';
  if (h === 'ok') return 'every shard is present';
  if (h === 'degraded') return 'some shards are missing or on a provider that is down; still readable';
  return 'a segment has fewer than k shards reachable; not readable until providers return';
}


export function pagesRouter(deps: ApiDeps): Router {
  const { service, sessions } = deps;
  const r = new Router();

  r.get('/static/:name', async (ctx) => {
    const name = ctx.params.name!;
    const type = STATIC.get(name);
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

  // ---- accounts ----

  const signInPage = async (ctx: Context) => {
    if ((ctx.state as SessionState).session) return ctx.redirect(safeNext(ctx.query.next));
    render(ctx, 'signin', { error: null, username: '', next: safeNext(ctx.query.next) });
  };
  r.get('/', signInPage);
  r.get('/signin', signInPage);

  r.get('/signup', async (ctx) => {
    if ((ctx.state as SessionState).session) return ctx.redirect('/files');
    render(ctx, 'signup', { error: null, username: '' });
  });

  r.post('/signup', form, async (ctx) => {
    const f = fields(ctx);
    const username = str(f.username).trim();
    try {
      checkAnonymousForm(ctx, f._csrf);
      const creds = checkCredentials(username, f.password);
      await register(service.link, creds.username, creds.password);
      const old = (ctx.state as SessionState).session;
      if (old) sessions.delete(old.token);
      const session = await signInAndStart(deps, ctx, creds.username, creds.password);
      setFlash(session, `Welcome, ${session.username}. Your account is on the chain: you can sign in on any client.`);
      seeOther(ctx, '/files');
    } catch (err) {
      if (!(err instanceof CairnError) || !['BAD_REQUEST', 'CONFLICT', 'FORBIDDEN'].includes(err.code)) throw err;
      ctx.status = err.code === 'CONFLICT' ? 409 : err.code === 'FORBIDDEN' ? 403 : 400;
      render(ctx, 'signup', { error: err.message, username });
    }
  });

  r.post('/signin', form, async (ctx) => {
    const f = fields(ctx);
    const username = str(f.username).trim().toLowerCase(); // names are lower-case; a capital typed is no format error
    const next = safeNext(f.next);
    try {
      checkAnonymousForm(ctx, f._csrf);
      const old = (ctx.state as SessionState).session;
      await signInAndStart(deps, ctx, username, f.password);
      if (old) sessions.delete(old.token);
      seeOther(ctx, next);
    } catch (err) {
      if (!(err instanceof CairnError) || !['BAD_REQUEST', 'UNAUTHENTICATED', 'RATE_LIMITED', 'FORBIDDEN'].includes(err.code)) throw err;
      const status = { RATE_LIMITED: 429, FORBIDDEN: 403, BAD_REQUEST: 400 }[err.code as string] ?? 401;
      ctx.status = status;
      if (status === 429) ctx.set('Retry-After', '5');
      render(ctx, 'signin', { error: err.message, username, next });
    }
  });

  r.post('/signout', form, async (ctx) => {
    const session = requireSession(ctx, str(fields(ctx)._csrf));
    sessions.delete(session.token);
    setSessionCookie(ctx, null);
    seeOther(ctx, '/signin');
  });

  // ---- files ----

  r.get('/files', async (ctx) => {
    const session = signedIn(ctx);
    if (!session) return;
    const sort = parseSort(ctx.query);
    const all = await service.listFiles(session);
    const mine = sortFiles(all.filter((f) => f.owner === session.username), sort.key, sort.dir);
    const shared = sortFiles(all.filter((f) => f.owner !== session.username), sort.key, sort.dir);
    const k = service.settings.k;
    const m = service.settings.m;
    render(ctx, 'files', {
      active: 'files',
      mine,
      shared,
      sort,
      columns: columnsFor(sort, 'mine'),
      sharedColumns: columnsFor(sort, 'shared'),
      coding: `${k}+${m}`,
      maxUploadBytes: deps.maxUploadBytes,
      maxUploadHuman: humanSize(deps.maxUploadBytes),
    });
  });

  // Upload without JavaScript: the form posts here, its CSRF token the form's first field (the
  // body streams into the pipeline as it arrives, so the token is checked as it passes).
  r.post('/upload', async (ctx) => {
    const session = signedInSession(ctx); // no one signed in: refused before a byte of the body is read
    // receiveUploads returns only once the form's token has vouched for this session.
    const results = await receiveUploads(ctx, service, { byFormToken: (token) => requireSession(ctx, token) }, deps.maxUploadBytes);
    setFlash(session, `Stored ${results.map((x) => x.name).join(', ')}.`);
    seeOther(ctx, '/files');
  });

  async function renderDetails(ctx: Context, session: Session, extra: { shareError?: string; shareUsername?: string } = {}) {
    const file = await service.fileDetails(session, ctx.params.id!);
    const pages = Math.max(1, Math.ceil(file.segments.length / SEGMENTS_PER_PAGE));
    const page = Math.min(pages, Math.max(1, Number.parseInt(str(ctx.query.page), 10) || 1));
    const first = (page - 1) * SEGMENTS_PER_PAGE;
    const last = Math.min(file.segments.length, first + SEGMENTS_PER_PAGE);
    render(ctx, 'details', {
      file,
      isOwner: file.owner === session.username,
      healthText: healthText(file.health, file.inline),
      segments: file.segments.slice(first, last),
      page,
      pages,
      first,
      last,
      shareError: extra.shareError ?? null,
      shareUsername: extra.shareUsername ?? '',
    });
  }

  r.get('/files/:id', async (ctx) => {
    const session = signedIn(ctx);
    if (!session) return;
    await renderDetails(ctx, session);
  });

  r.get('/files/:id/download', async (ctx) => {
    const session = signedIn(ctx);
    if (!session) return;
    await sendDownload(ctx, service, session, ctx.params.id!);
  });

  r.get('/files/:id/delete', async (ctx) => {
    const session = signedIn(ctx);
    if (!session) return;
    const file = await service.fileDetails(session, ctx.params.id!);
    if (file.owner !== session.username) throw new CairnError('FORBIDDEN', 'only the owner of a file may delete it');
    render(ctx, 'delete', { active: 'files', file });
  });

  r.post('/files/:id/delete', form, async (ctx) => {
    const session = requireSession(ctx, str(fields(ctx)._csrf));
    const file = await service.fileDetails(session, ctx.params.id!);
    await service.deleteFile(session, file.id);
    setFlash(session, `Deleted ${file.name}.`);
    seeOther(ctx, '/files');
  });

  r.post('/files/:id/share', form, async (ctx) => {
    const session = requireSession(ctx, str(fields(ctx)._csrf));
    const username = str(fields(ctx).username).trim().toLowerCase();
    try {
      if (!USERNAME.test(username)) throw new CairnError('BAD_REQUEST', 'enter the username of an existing user (3–32 characters: a-z, 0-9, . _ -)');
      await service.shareFile(session, ctx.params.id!, username);
    } catch (err) {
      if (!(err instanceof CairnError) || !['BAD_REQUEST', 'NOT_FOUND'].includes(err.code)) throw err;
      ctx.status = err.code === 'NOT_FOUND' ? 404 : 400;
      // Re-render the page with the message; if the file itself is not accessible this throws 404.
      await renderDetails(ctx, session, { shareError: err.message, shareUsername: username });
      return;
    }
    const file = await service.fileDetails(session, ctx.params.id!);
    setFlash(session, `Shared ${file.name} with ${username}.`);
    seeOther(ctx, `/files/${file.id}`);
  });

  // ---- chain and cluster ----

  r.get('/chain', async (ctx) => {
    const session = signedIn(ctx);
    if (!session) return;
    const [info, verify] = await Promise.all([service.chainInfo(), service.verify()]);
    const height = info.height;
    const requested = Number.parseInt(str(ctx.query.top), 10);
    const top = height === 0 ? 0 : Math.min(height, Math.max(1, Number.isFinite(requested) ? requested : height));
    const from = Math.max(1, top - BLOCKS_PER_PAGE + 1);
    const blocks = top === 0 ? [] : (await service.blocks(from, top - from + 1)).slice().reverse();
    render(ctx, 'chain', {
      active: 'chain',
      info,
      verify,
      blocks: blocks.map((b) => ({ ...b, summaries: b.txs.map(summarizeTx) })),
      newer: top < height ? Math.min(height, top + BLOCKS_PER_PAGE) : null,
      older: from > 1 ? from - 1 : null,
    });
  });

  r.get('/cluster', async (ctx) => {
    const session = signedIn(ctx);
    if (!session) return;
    const c = await service.cluster();
    render(ctx, 'cluster', { active: 'cluster', c, leader: c.leader });
  });

  r.post('/cluster/repair', form, async (ctx) => {
    const session = requireSession(ctx, str(fields(ctx)._csrf));
    await service.repair();
    setFlash(session, 'Repair started: every provider checks its shards; missing or bad ones are rebuilt and re-placed.');
    seeOther(ctx, '/cluster');
  });

  return r;
}
