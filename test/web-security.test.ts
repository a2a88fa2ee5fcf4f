/**
 * Web security against a real cluster (upload limit 1 MiB): CSRF on every form, other users'
 * files out of reach on every route, hostile file names shown as text, password guessing
 * slowed down, too-large uploads refused with nothing stored. Plain fetch, plus Chromium for
 * what only a browser can show (no script runs from a file name).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { startCluster, type ClusterHandle } from './support/cluster.js';
import { Api } from './support/http.js';
import { browserSkip, launchBrowser, newContext } from './support/browser.js';

const MiB = 1024 * 1024;
const PASSWORD = 'correct horse battery staple';
const STACK = /\bat [\w.<>]+ \(|\.js:\d+:\d+|node:internal/;

interface Reply {
  status: number;
  text: string;
  headers: Headers;
}

/** A browser-like HTTP client: keeps cookies, reads the CSRF token from the last page. */
class FormClient {
  readonly jar = new Map<string, string>();
  lastPage = '';
  constructor(readonly base: string) {}

  get cookieHeader(): string {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  #keep(res: Response) {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (/max-age=0|expires=Thu, 01 Jan 1970/i.test(c) || value === '') this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }

  async request(method: string, path: string, init: { body?: string | FormData; headers?: Record<string, string> } = {}): Promise<Reply> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      redirect: 'manual',
      body: init.body ?? null,
      headers: { accept: 'text/html', ...(this.jar.size ? { cookie: this.cookieHeader } : {}), ...init.headers },
    });
    this.#keep(res);
    const text = await res.text();
    if (res.headers.get('content-type')?.startsWith('text/html')) this.lastPage = text;
    return { status: res.status, text, headers: res.headers };
  }

  get(path: string): Promise<Reply> {
    return this.request('GET', path);
  }

  /** Posts a urlencoded form; `_csrf` is taken from the last page unless given (null = left out). */
  post(path: string, fields: Record<string, string>, csrf: string | null | undefined = undefined, headers: Record<string, string> = {}): Promise<Reply> {
    const token = csrf === undefined ? this.token() : csrf;
    const body = new URLSearchParams({ ...fields, ...(token === null ? {} : { _csrf: token }) });
    return this.request('POST', path, { body: body.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
  }

  token(): string {
    const m = /name="_csrf" value="([^"]+)"/.exec(this.lastPage);
    assert.ok(m, 'the page carries a CSRF token');
    return m[1]!;
  }

  async signIn(username: string, password = PASSWORD): Promise<Reply> {
    await this.get('/signin');
    return this.post('/signin', { username, password });
  }
}

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');

describe('web security', () => {
  let cluster: ClusterHandle;
  const tag = randomBytes(3).toString('hex');
  const alice = `alice${tag}`;
  const bob = `bob${tag}`;
  const carol = `carol${tag}`;
  const aliceApi = () => Object.assign(new Api(cluster.clients[0]!), { token: aliceToken });
  let aliceToken: string;
  let bobToken: string;
  let fileId: string; // alice's, never shared
  let sharedId: string; // alice's, shared with bob
  const fileBytes = randomBytes(200_000);

  before(async () => {
    cluster = await startCluster({ args: ['--max-upload-bytes', String(MiB)] });
    const api = new Api(cluster.clients[0]!);
    for (const u of [alice, bob, carol]) assert.equal((await api.register(u, PASSWORD)).status, 201);
    const a = new Api(cluster.clients[0]!);
    assert.equal((await a.signIn(alice, PASSWORD)).status, 200);
    aliceToken = a.token!;
    const b = new Api(cluster.clients[1]!);
    assert.equal((await b.signIn(bob, PASSWORD)).status, 200);
    bobToken = b.token!;
    const up = await a.upload([
      { name: 'private.bin', bytes: fileBytes },
      { name: 'shared.txt', bytes: Buffer.from('for bob\n') },
    ]);
    assert.equal(up.status, 201, JSON.stringify(up.body));
    fileId = up.body[0].id;
    sharedId = up.body[1].id;
    assert.equal((await a.call('POST', `/api/v1/files/${sharedId}/shares`, { username: bob })).status, 201);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('refuses a form post without a valid CSRF token (403), anonymous forms included', async () => {
    const base = cluster.clients[0]!;
    // Anonymous forms: sign in and sign up.
    const anon = new FormClient(base);
    await anon.get('/signin');
    assert.ok([...anon.jar.keys()].some((k) => k.startsWith('cairn_csrf')), 'the sign-in page sets the anonymous CSRF cookie');
    let r = await anon.post('/signin', { username: alice, password: PASSWORD }, null);
    assert.equal(r.status, 403, 'sign-in without a token');
    assert.ok(![...anon.jar.keys()].some((k) => k.startsWith('cairn_session')), 'no session was created');
    r = await anon.post('/signin', { username: alice, password: PASSWORD }, 'x'.repeat(32));
    assert.equal(r.status, 403, 'sign-in with a wrong token');
    // A token with no cookie to match (another browser's token, a forged page) is refused too.
    const token = anon.token();
    const stranger = new FormClient(base);
    r = await stranger.post('/signin', { username: alice, password: PASSWORD }, token);
    assert.equal(r.status, 403, 'sign-in with a token but without the matching cookie');
    const newUser = `dave${tag}`;
    await anon.get('/signup');
    r = await anon.post('/signup', { username: newUser, password: PASSWORD }, null);
    assert.equal(r.status, 403, 'sign-up without a token');
    assert.equal((await new Api(base).register(newUser, PASSWORD)).status, 201, 'the refused sign-up created no account');

    // A browser that says the post comes from another site is refused even with a token.
    await anon.get('/signin');
    r = await anon.post('/signin', { username: alice, password: PASSWORD }, undefined, { origin: 'http://evil.example' });
    assert.equal(r.status, 403, 'cross-origin sign-in');
    await anon.get('/signin');
    r = await anon.post('/signin', { username: alice, password: PASSWORD }, undefined, { 'sec-fetch-site': 'cross-site' });
    assert.equal(r.status, 403, 'cross-site sign-in');

    // With the token, the same form works: 303 to the files page and a session cookie.
    await anon.get('/signin');
    r = await anon.post('/signin', { username: alice, password: PASSWORD });
    assert.equal(r.status, 303, r.text.slice(0, 300));
    assert.equal(r.headers.get('location'), '/files');
    const session = [...anon.jar.entries()].find(([k]) => /^cairn_session_\d+$/.test(k));
    assert.ok(session, 'signed in');

    // Signed-in forms: each refuses a post without the session's token, and nothing changes.
    await anon.get(`/files/${fileId}`);
    for (const [path, fields] of [
      [`/files/${fileId}/delete`, {}],
      [`/files/${fileId}/share`, { username: carol }],
      ['/cluster/repair', {}],
      ['/signout', {}],
    ] as const) {
      r = await anon.post(path, fields, null);
      assert.equal(r.status, 403, `${path} without a token`);
      assert.doesNotMatch(r.text, STACK);
      r = await anon.post(path, fields, 'A'.repeat(32));
      assert.equal(r.status, 403, `${path} with a wrong token`);
    }
    r = await anon.request('POST', `/upload`, { body: new FormData() });
    assert.equal(r.status, 403, 'upload form without a token');
    // The upload form carries its token as its first field, never in its URL (logs, history).
    await anon.get('/files');
    assert.match(anon.lastPage, /<form id="upload-form" method="post" action="\/upload"[^>]*>\s*(?:<!--[^]*?-->\s*)?<input type="hidden" name="_csrf"/);
    assert.doesNotMatch(anon.lastPage, /_csrf=/);
    const formToken = anon.token();
    const uploadForm = (fields: [string, string][], name: string) => {
      const form = new FormData();
      for (const [field, value] of fields) {
        if (field === 'file') form.append('file', new Blob([Buffer.from(value)]), name);
        else form.append(field, value);
      }
      return anon.request('POST', '/upload', { body: form });
    };
    for (const [fields, what] of [
      [[['file', 'no token']], 'without a token'],
      [[['_csrf', 'A'.repeat(formToken.length)], ['file', 'wrong token']], 'with a wrong token'],
      [[['file', 'token after the file'], ['_csrf', formToken]], 'with its token only after the file'],
      // Longer than any token: refused whole, not cut down to the real token in front.
      [[['_csrf', formToken + 'x'.repeat(300)], ['file', 'long token']], 'with a token followed by 300 bytes'],
    ] as [[string, string][], string][]) {
      r = await uploadForm(fields, `refused-${what.replace(/ /g, '-')}.txt`);
      assert.equal(r.status, 403, `upload form ${what}`);
      assert.doesNotMatch(r.text, STACK);
    }
    // A sender no one signed in is refused before its body is parsed, and a form whose first 64 KiB
    // hold no token as soon as they have passed: 401 and 403 for 3 MiB of junk before any part
    // (chunked: no length to refuse it by), not the 413 of reading on to the size limit (1 MiB here).
    const web = new URL(anon.base);
    const chunkedPost = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: web.hostname, port: Number(web.port), method: 'POST', path: '/upload', headers: { 'content-type': 'multipart/form-data; boundary=BB', accept: 'application/json', ...headers } });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        for (let i = 0; i < 3; i++) req.write(Buffer.alloc(1024 * 1024, 0x61));
        req.end('\r\n--BB--\r\n');
      });
    assert.equal(await chunkedPost({}), 401, 'no one signed in');
    assert.equal(await chunkedPost({ cookie: anon.cookieHeader }), 403, 'no token in the first 64 KiB');
    await anon.get('/files');
    assert.doesNotMatch(anon.lastPage, /refused-/, 'no refused form stored a file');
    // The JSON API with the cookie (not a Bearer token) needs the x-csrf-token header for changes.
    r = await anon.request('DELETE', `/api/v1/files/${fileId}`);
    assert.equal(r.status, 403, 'cookie-authenticated API delete without x-csrf-token');
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('sneaky')]), 'sneaky.txt');
    r = await anon.request('POST', '/api/v1/files', { body: form });
    assert.equal(r.status, 403, 'cookie-authenticated API upload without x-csrf-token');

    const list = await aliceApi().call('GET', '/api/v1/files');
    assert.deepEqual(list.body.map((f: { name: string }) => f.name).sort(), ['private.bin', 'shared.txt']);
    assert.deepEqual((await aliceApi().call('GET', `/api/v1/files/${fileId}`)).body.sharedWith, []);
    assert.equal((await anon.get('/files')).status, 200, 'still signed in: sign-out without a token did nothing');

    // And the cookies are HttpOnly, SameSite=Strict, signed.
    const res = await fetch(`${base}/signin`);
    const cookies = res.headers.getSetCookie();
    assert.ok(cookies.length >= 2);
    for (const c of cookies) assert.match(c, /httponly/i), assert.match(c, /samesite=strict/i);
    assert.ok(cookies.some((c) => /^cairn_csrf_\d+\.sig=/.test(c)), 'the anonymous token cookie is signed');
  });

  it("gives 403 or 404 for another user's file on every route, pages and API", async () => {
    const intruderPages = new FormClient(cluster.clients[1]!);
    assert.equal((await intruderPages.signIn(bob)).status, 303);
    await intruderPages.get('/files');
    const token = intruderPages.token();
    const bobApi = Object.assign(new Api(cluster.clients[1]!), { token: bobToken });
    const denied = (status: number) => status === 403 || status === 404;

    // A file bob has no access to at all.
    for (const path of [`/files/${fileId}`, `/files/${fileId}/download`, `/files/${fileId}/delete`]) {
      const r = await intruderPages.get(path);
      assert.ok(denied(r.status), `GET ${path} → ${r.status}`);
      assert.doesNotMatch(r.text, STACK);
      assert.ok(!r.text.includes('private.bin'), 'the name is not revealed');
    }
    for (const [path, fields] of [
      [`/files/${fileId}/delete`, {}],
      [`/files/${fileId}/share`, { username: bob }],
    ] as const) {
      const r = await intruderPages.post(path, fields, token);
      assert.ok(denied(r.status), `POST ${path} → ${r.status}`);
    }
    for (const [method, path, body] of [
      ['GET', `/api/v1/files/${fileId}`, undefined],
      ['GET', `/api/v1/files/${fileId}/content`, undefined],
      ['DELETE', `/api/v1/files/${fileId}`, undefined],
      ['POST', `/api/v1/files/${fileId}/shares`, { username: bob }],
    ] as const) {
      const r = await bobApi.call(method, path, body);
      assert.ok(denied(r.status), `${method} ${path} → ${r.status}`);
      assert.ok(typeof r.body === 'object' && r.body !== null && 'error' in r.body, 'a JSON error');
      assert.doesNotMatch(JSON.stringify(r.body), STACK);
    }

    // A file shared with bob: he may read it, not delete or re-share it.
    assert.equal((await intruderPages.get(`/files/${sharedId}`)).status, 200);
    assert.equal((await intruderPages.get(`/files/${sharedId}/delete`)).status, 403);
    assert.equal((await intruderPages.post(`/files/${sharedId}/delete`, {}, token)).status, 403);
    assert.equal((await intruderPages.post(`/files/${sharedId}/share`, { username: carol }, token)).status, 403);
    assert.equal((await bobApi.call('DELETE', `/api/v1/files/${sharedId}`)).status, 403);
    assert.equal((await bobApi.call('POST', `/api/v1/files/${sharedId}/shares`, { username: carol })).status, 403);

    // Signed out, a page sends the browser to sign in; the API answers 401.
    const nobody = new FormClient(cluster.clients[0]!);
    const r = await nobody.get(`/files/${fileId}`);
    assert.equal(r.status, 302);
    assert.match(r.headers.get('location')!, /^\/signin\?next=/);
    assert.equal((await new Api(cluster.clients[0]!).call('GET', `/api/v1/files/${fileId}`)).status, 401);

    // Nothing changed for alice.
    const d = await aliceApi().download(fileId);
    assert.equal(d.status, 200);
    assert.ok(d.bytes.equals(fileBytes));
    assert.deepEqual((await aliceApi().call('GET', `/api/v1/files/${sharedId}`)).body.sharedWith, [bob]);
  });

  it('shows a file named <script>alert(1)</script>.txt (and other hostile names) as text', async () => {
    const hostile = ['<script>alert(1)</script>.txt', '<img src=x onerror=alert(1)>.txt', '"><svg onload=alert(1)>\'.txt'];
    const up = await aliceApi().upload(hostile.map((name) => ({ name, bytes: Buffer.from(`body of ${name}`), type: 'text/plain' })));
    assert.equal(up.status, 201, JSON.stringify(up.body));
    const stored = up.body as { id: string; name: string }[];
    assert.deepEqual(stored.map((s) => s.name), hostile, 'each stored under its own name');

    const pages = new FormClient(cluster.clients[0]!);
    assert.equal((await pages.signIn(alice)).status, 303);
    const list = await pages.get('/files');
    assert.equal(list.status, 200);
    const check = (html: string, where: string) => {
      for (const bad of ['<script>alert', '<img src=x', '<svg onload', 'onerror=alert(1)>', '"><svg']) assert.ok(!html.includes(bad), `${where}: raw ${bad}`);
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc="\/static\/app\.js")/, `${where}: only our own script tag`);
    };
    check(list.text, '/files');
    for (const s of stored) {
      assert.ok(list.text.includes(escapeHtml(s.name)), `/files shows ${s.name} escaped`);
      const details = await pages.get(`/files/${s.id}`);
      assert.equal(details.status, 200);
      check(details.text, `/files/${s.id}`);
      assert.ok(details.text.includes(`<h1 class="file-title">${escapeHtml(s.name)}</h1>`));
      const confirm = await pages.get(`/files/${s.id}/delete`);
      check(confirm.text, 'delete page');
      // The download's Content-Disposition cannot be broken out of.
      const dl = await pages.get(`/files/${s.id}/download`);
      assert.equal(dl.status, 200);
      assert.match(dl.headers.get('content-disposition')!, /^attachment; filename="[^"\\]*"; filename\*=UTF-8''[A-Za-z0-9%._~!$&+^`|-]*$/);
      assert.equal(dl.headers.get('x-content-type-options'), 'nosniff');
    }
    // The security headers forbid inline script and framing.
    const csp = list.headers.get('content-security-policy')!;
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(list.headers.get('x-frame-options'), 'DENY');

    // In a real browser: no dialog, the names read as text.
    const skip = browserSkip();
    if (skip) return;
    const browser = await launchBrowser();
    try {
      const { context, problems } = await newContext(browser);
      const page = await context.newPage();
      await page.goto(`${cluster.clients[0]}/signin`);
      await page.getByLabel('Username').fill(alice);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await page.waitForURL(/\/files$/);
      const names = await page.locator('#mine .file-name').allInnerTexts();
      for (const s of stored) assert.ok(names.includes(s.name), `the list reads ${s.name}`);
      for (const s of stored) {
        await page.goto(`${cluster.clients[0]}/files/${s.id}`);
        assert.equal(await page.locator('h1').innerText(), s.name);
      }
      // The upload form refuses a file over the limit before sending it, and says why.
      await page.goto(`${cluster.clients[0]}/files`);
      await page.setInputFiles('#file', { name: 'big.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(MiB + 1) });
      await page.getByRole('button', { name: 'Upload', exact: true }).click();
      const item = page.locator('.upload-item[data-name="big.bin"][data-state="failed"]');
      await item.waitFor();
      assert.match(await item.innerText(), /too large: the limit is 1\.0 MiB/);
      assert.deepEqual(problems, [], 'no dialog, page error or CSP violation');
    } finally {
      await browser.close();
    }
  });

  it('slows down repeated wrong passwords (429 after a few), on the page and the API alike', async () => {
    const pages = new FormClient(cluster.clients[0]!);
    await pages.get('/signin');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await pages.post('/signin', { username: carol, password: `wrong password ${i}` });
      statuses.push(r.status);
      if (r.status === 429) {
        assert.ok(Number(r.headers.get('retry-after')) > 0, 'Retry-After says when to come back');
        assert.match(r.text, /too many failed sign-ins/i);
        break;
      }
      assert.equal(r.status, 401);
      assert.match(r.text, /Wrong username or password/);
    }
    assert.equal(statuses.at(-1), 429, `statuses: ${statuses.join(',')}`);
    assert.ok(statuses.length <= 5, `429 after a few attempts: ${statuses.join(',')}`);
    // While locked, even the right password is refused, on the page and through the API.
    assert.equal((await pages.post('/signin', { username: carol, password: PASSWORD })).status, 429);
    assert.equal((await new Api(cluster.clients[0]!).signIn(carol, PASSWORD)).status, 429);
    // Other accounts are not affected.
    assert.equal((await new Api(cluster.clients[0]!).signIn(alice, PASSWORD)).status, 200);
  });

  it('checks no more guesses sent all at once than the free failures', async () => {
    const dave = `dave${Date.now() % 100_000}`;
    assert.equal((await new Api(cluster.clients[0]!).register(dave, PASSWORD)).status, 201);
    const statuses = await Promise.all(Array.from({ length: 12 }, (_, i) => new Api(cluster.clients[0]!).signIn(dave, `wrong guess ${i}`).then((r) => r.status)));
    const checked = statuses.filter((st) => st === 401).length;
    assert.ok(checked >= 1 && checked <= 3, `at most the 3 free guesses were checked: ${statuses.join(',')}`);
    assert.equal(checked + statuses.filter((st) => st === 429).length, 12, statuses.join(','));
    assert.equal((await new Api(cluster.clients[0]!).signIn(dave, PASSWORD)).status, 200, 'three failures do not lock the account yet');
  });

  it('answers odd requests with the JSON error and logs no stack for what a sender broke off', async () => {
    const base = cluster.clients[0]!;
    // Names of Object.prototype's properties are no assets (they found one and failed with 500).
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      const r = await fetch(`${base}/static/${name}`, { headers: { accept: 'application/json' } });
      assert.equal(r.status, 404, name);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
    }
    const { port } = new URL(base);
    // Refused by node's parser before the app sees them: still the contract's JSON error.
    const malformed = await rawRequest(Number(port), 'GET /api/v1/files HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n');
    assert.match(malformed, /^HTTP\/1\.1 400 /);
    assert.match(malformed, /"code":"BAD_REQUEST"/);
    const hugeHeader = await rawRequest(Number(port), `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(hugeHeader, /^HTTP\/1\.1 431 /);
    assert.match(hugeHeader, /"code":"TOO_LARGE"/);
    // Bodies broken off (a FIN mid-body, a bad chunk size, a reset mid-upload): the sender's doing,
    // not logged (Koa printed a stack for each, also for every cancelled upload).
    const logged = cluster.output.length;
    await rawRequest(Number(port), 'POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"user');
    await rawRequest(Number(port), 'POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
    const boundary = 'cut';
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\n`;
    await rawRequest(Number(port), `POST /api/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${aliceToken}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${MiB}\r\n\r\n${head}${'x'.repeat(200_000)}`, { reset: true });
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const lines = cluster.output.slice(logged).join('\n');
    assert.doesNotMatch(lines, STACK, `no stack in the log:\n${lines}`);
    assert.doesNotMatch(lines, /Parse Error|ECONNRESET/, `nothing logged for it:\n${lines}`);
  });

  it('answers deletes of one file sent at once with one 204 and 404s', async () => {
    const api = aliceApi();
    const up = await api.upload([{ name: 'twice.txt', bytes: Buffer.from('delete me') }]);
    assert.equal(up.status, 201);
    const id = up.body[0].id as string;
    const statuses = (await Promise.all(Array.from({ length: 5 }, () => api.call('DELETE', `/api/v1/files/${id}`)))).map((r) => r.status).sort();
    assert.deepEqual(statuses, [204, 404, 404, 404, 404], 'the chain refuses all but one; each of those is told the file is gone');
  });

  it('answers a too-large upload with 413 and stores nothing', async () => {
    const api = aliceApi();
    const before = {
      files: (await api.call('GET', '/api/v1/files')).body.map((f: { id: string }) => f.id).sort(),
      shards: (await api.call('GET', '/api/v1/cluster')).body.providers.map((p: { id: string; shards: number }) => [p.id, p.shards]),
    };
    // Through the API: far over the limit (refused from Content-Length) and just over it (refused mid-stream).
    for (const size of [3 * MiB, MiB + MiB / 2]) {
      const r = await api.upload([{ name: `big-${size}.bin`, bytes: randomBytes(size) }]);
      assert.equal(r.status, 413, `${size} B`);
      assert.equal(r.body.error.code, 'TOO_LARGE');
      assert.match(r.body.error.message, /limit/);
    }
    // Two files, each under the limit, together over it.
    const pair = await api.upload([
      { name: 'half-a.bin', bytes: randomBytes(700 * 1024) },
      { name: 'half-b.bin', bytes: randomBytes(700 * 1024) },
    ]);
    assert.equal(pair.status, 413);
    // Through the page's upload form (no JavaScript): a clear HTML page with 413.
    const pages = new FormClient(cluster.clients[0]!);
    assert.equal((await pages.signIn(alice)).status, 303);
    await pages.get('/files');
    const action = /id="upload-form" method="post" action="([^"]+)"/.exec(pages.lastPage)![1]!;
    const form = new FormData();
    form.append('_csrf', pages.token()); // first, as the page's form sends it
    form.append('file', new Blob([randomBytes(MiB + 10)]), 'form-big.bin');
    const r = await pages.request('POST', action, { body: form });
    assert.equal(r.status, 413);
    assert.match(r.text, /Too large/);
    assert.doesNotMatch(r.text, STACK);

    const afterFiles = (await api.call('GET', '/api/v1/files')).body.map((f: { id: string }) => f.id).sort();
    assert.deepEqual(afterFiles, before.files, 'the file list is unchanged');
    const afterShards = (await api.call('GET', '/api/v1/cluster')).body.providers.map((p: { id: string; shards: number }) => [p.id, p.shards]);
    assert.deepEqual(afterShards, before.shards, 'no SP stores more shards');

    // The limit is inclusive: a file of exactly the limit is stored.
    const ok = await api.upload([{ name: 'exactly-1MiB.bin', bytes: randomBytes(MiB) }]);
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    // And through the page's form, without JavaScript: stored, and back to the files page.
    await pages.get('/files');
    const small = new FormData();
    small.append('note', 'n'.repeat(300)); // another field first: the token's own bytes are what is bounded
    small.append('_csrf', pages.token());
    small.append('file', new Blob([Buffer.from('sent by the form')]), 'by-the-form.txt');
    const stored = await pages.request('POST', action, { body: small });
    assert.equal(stored.status, 303, stored.text.slice(0, 300));
    assert.equal(stored.headers.get('location'), '/files');
    await pages.get('/files');
    assert.match(pages.lastPage, /by-the-form\.txt/);
  });
});

/**
 * Writes raw bytes to a web client and reads what comes back until it closes the connection (or a
 * second passes); with `reset`, the connection is reset (RST) once the bytes are written.
 */
function rawRequest(port: number, text: string, opts: { reset?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => resolve(Buffer.concat(chunks).toString('utf8'));
    const timer = setTimeout(() => {
      socket.destroy();
      done();
    }, 1_000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined); // a reset of ours, or the server closing first
    socket.on('close', () => {
      clearTimeout(timer);
      done();
    });
    socket.once('connect', () => {
      socket.write(text, () => {
        if (opts.reset) socket.resetAndDestroy();
        else socket.end();
      });
    });
  });
}
