/**
 * The whole path against a real cluster on free ports: accounts on one client, files uploaded,
 * listed and downloaded through the other, no plaintext at rest, one chain head everywhere,
 * strangers kept out, and bad input answered clearly while the cluster keeps working.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { request } from 'node:http';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster, waitFor, type ClusterHandle } from './support/cluster.js';
import { Api } from './support/http.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('cairn end to end', () => {
  let cluster: ClusterHandle;
  const marker = `cairn-plaintext-marker-${randomBytes(8).toString('hex')}`;
  const files = [
    { name: 'empty.bin', bytes: Buffer.alloc(0) },
    { name: 'one.bin', bytes: Buffer.from('x') },
    { name: 'big.bin', bytes: Buffer.concat([Buffer.from(marker), randomBytes(20 * MiB), Buffer.from(marker)]) },
    { name: 'notes ü "quoted".txt', bytes: Buffer.from(`hello ${marker} world\n`.repeat(1000)) },
    // Around the segment boundaries: a short first segment (256 KiB), then 4 MiB ones.
    { name: 'first-full.bin', bytes: randomBytes(256 * KiB) },
    { name: 'first-plus-one.bin', bytes: randomBytes(256 * KiB + 1) },
    { name: 'second-full.bin', bytes: randomBytes(256 * KiB + 4 * MiB) },
    { name: 'second-plus-one.bin', bytes: randomBytes(256 * KiB + 4 * MiB + 1) },
  ];
  const expectedSegments: Record<string, number> = { 'first-full.bin': 1, 'first-plus-one.bin': 2, 'second-full.bin': 2, 'second-plus-one.bin': 3, 'big.bin': 6 };
  const ids = new Map<string, string>();
  const alice = { username: `alice${randomBytes(3).toString('hex')}`, password: 'correct horse battery' };

  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('registers on client1 and refuses a duplicate or invalid account', async () => {
    const api = new Api(cluster.clients[0]!);
    assert.equal((await api.register(alice.username, alice.password)).status, 201);
    const dup = await api.register(alice.username, 'another password');
    assert.equal(dup.status, 409);
    assert.equal((dup.body as any).error.code, 'CONFLICT');
    assert.equal((await api.register('x', 'short')).status, 400);
  });

  it('uploads 0 B, 1 B and 20 MiB files and lists them', async () => {
    const api = new Api(cluster.clients[0]!);
    assert.equal((await api.signIn(alice.username, alice.password)).status, 200);
    const up = await api.upload(files);
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(up.body.length, files.length);
    for (const [i, f] of files.entries()) {
      assert.equal(up.body[i].name, f.name);
      assert.equal(up.body[i].size, f.bytes.length);
      assert.ok(up.body[i].block >= 1);
      ids.set(f.name, up.body[i].id);
    }
    const list = await api.call('GET', '/api/v1/files');
    assert.equal(list.status, 200);
    assert.deepEqual(new Set(list.body.map((f: any) => f.name)), new Set(files.map((f) => f.name)));
    for (const f of list.body) assert.equal(f.health, 'ok');
  });

  it('signs in on client2 and downloads every file byte for byte', async () => {
    const api = new Api(cluster.clients[1]!);
    assert.equal((await api.signIn(alice.username, alice.password)).status, 200);
    for (const f of files) {
      const d = await api.download(ids.get(f.name)!);
      assert.equal(d.status, 200);
      assert.equal(d.bytes.length, f.bytes.length, f.name);
      assert.ok(d.bytes.equals(f.bytes), `${f.name} differs`);
      assert.match(d.headers.get('content-disposition')!, /^attachment; filename="/);
      assert.equal(d.headers.get('content-length'), String(f.bytes.length), `${f.name}: Content-Length`);
      assert.equal(d.headers.get('cache-control'), 'no-store', `${f.name}: never cached`);
      assert.equal(d.headers.get('x-content-type-options'), 'nosniff', `${f.name}: security headers`);
    }
    // A reader that leaves mid-download: the web client stops sending and serves the next one whole.
    const big = files.find((f) => f.name === 'big.bin')!;
    const abort = new AbortController();
    const partial = await fetch(`${cluster.clients[1]}/api/v1/files/${ids.get('big.bin')}/content`, {
      headers: { authorization: `Bearer ${api.token}` },
      signal: abort.signal,
    });
    const reader = partial.body!.getReader();
    const firstChunk = await reader.read();
    assert.ok(firstChunk.value && firstChunk.value.length > 0 && Buffer.from(firstChunk.value).equals(big.bytes.subarray(0, firstChunk.value.length)));
    abort.abort();
    await reader.read().catch(() => undefined);
    const again = await api.download(ids.get('big.bin')!);
    assert.ok(again.bytes.equals(big.bytes), 'the download after an abandoned one is whole');
    for (const [name, count] of Object.entries(expectedSegments)) {
      const d = await api.call('GET', `/api/v1/files/${ids.get(name)}`);
      assert.equal(d.body.segments.length, count, `${name}: segments`);
      assert.equal(d.body.segments[0].sealedLength, Math.min(256 * KiB, d.body.size) + 16, `${name}: the first segment is cut at 256 KiB`);
    }
    // Files up to inlineMaxBytes (8 KiB) ride sealed in their record: no segments, no shards.
    for (const name of ['empty.bin', 'one.bin']) {
      const d = await api.call('GET', `/api/v1/files/${ids.get(name)}`);
      assert.equal(d.body.inline, true, `${name} is inline`);
      assert.deepEqual(d.body.segments, [], `${name} has no shards`);
      assert.equal(d.body.health, 'ok');
    }
    assert.equal((await api.call('GET', `/api/v1/files/${ids.get('notes ü "quoted".txt')}`)).body.inline, false, 'a 52 KB file is sharded');
    const details = await api.call('GET', `/api/v1/files/${ids.get('big.bin')}`);
    assert.equal(details.status, 200);
    assert.equal(details.body.k, 2);
    assert.equal(details.body.m, 1);
    assert.equal(details.body.firstSegmentSize, 256 * KiB);
    for (const seg of details.body.segments) {
      const sps = seg.shards.map((s: any) => s.sp);
      assert.equal(new Set(sps).size, 3, 'shards of a segment sit on distinct SPs');
    }
  });

  it('keeps a file of up to 8 KiB in its record (no SP gains a shard) and shards one byte more', async () => {
    const api = new Api(cluster.clients[0]!);
    assert.equal((await api.signIn(alice.username, alice.password)).status, 200);
    const shards = async () => (await api.call('GET', '/api/v1/cluster')).body.providers.reduce((n: number, p: { shards: number }) => n + p.shards, 0);
    const before = await shards();
    const small = randomBytes(8 * KiB);
    const over = randomBytes(8 * KiB + 1);
    const up = await api.upload([{ name: 'inline.bin', bytes: small }, { name: 'over.bin', bytes: over }]);
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(await shards(), before + 3, 'only the 8 KiB + 1 file has shards (2+1)');
    const other = new Api(cluster.clients[1]!);
    assert.equal((await other.signIn(alice.username, alice.password)).status, 200);
    assert.ok((await other.download(up.body[0].id)).bytes.equals(small));
    assert.ok((await other.download(up.body[1].id)).bytes.equals(over));
    // The details page says where the bytes are: in the record, or in shards.
    const page = (id: string) => api.call<string>('GET', `/files/${id}`, undefined, { accept: 'text/html' });
    const inlinePage = await page(up.body[0].id);
    assert.equal(inlinePage.status, 200);
    assert.match(inlinePage.body, /<dt>Storage<\/dt><dd>inline/);
    assert.doesNotMatch(inlinePage.body, /Segments and shards/);
    assert.match((await page(up.body[1].id)).body, /Segments and shards/);
    // The chain explorer's JSON shows the sealed bytes as hex, like every other binary field there.
    const height = (await api.call('GET', '/api/v1/chain')).body.height;
    const blocks = (await api.call('GET', `/api/v1/chain/blocks?from=${Math.max(1, height - 20)}&limit=21`)).body;
    const put = blocks.flatMap((b: { txs: any[] }) => b.txs).find((tx: any) => tx.body.file?.id === up.body[0].id);
    assert.ok(put, 'the inline file.put is among the last blocks');
    assert.match(put.body.file.inline, new RegExp(`^[0-9a-f]{${2 * (8 * KiB + 16)}}$`));
    const slots = (await api.call('GET', '/api/v1/cluster')).body.pool.uploadSlots;
    assert.deepEqual(slots, { limit: 8, inUse: 0, waiting: 0 }, 'every upload gave its segment slots back');
  });

  it('shares its segment slots among concurrent uploads, and leaves nothing behind from one cut off mid-file', async () => {
    const api = new Api(cluster.clients[0]!);
    assert.equal((await api.signIn(alice.username, alice.password)).status, 200);
    const slots = async () => (await api.call('GET', '/api/v1/cluster')).body.pool.uploadSlots as { limit: number; inUse: number; waiting: number };
    const shards = async () => (await api.call('GET', '/api/v1/cluster')).body.providers.reduce((n: number, p: { shards: number }) => n + p.shards, 0);
    // More uploads of three segments each than the client has slots: each waits its turn, none is stuck.
    const many = Array.from({ length: 10 }, (_, i) => ({ name: `together-${i}.bin`, bytes: randomBytes(256 * KiB + 4 * MiB + 100) }));
    const ups = await Promise.all(many.map((f) => api.upload([f])));
    const other = new Api(cluster.clients[1]!);
    assert.equal((await other.signIn(alice.username, alice.password)).status, 200);
    for (const [i, up] of ups.entries()) {
      assert.equal(up.status, 201, JSON.stringify(up.body));
      assert.ok((await other.download(up.body[0].id)).bytes.equals(many[i]!.bytes), `${many[i]!.name} comes back whole`);
    }
    assert.deepEqual(await slots(), { limit: 8, inUse: 0, waiting: 0 });
    // Their shards came to every SP on lanes beside TLS (src/mailbox/lane.ts), and back whole above.
    for (const p of (await api.call('GET', '/api/v1/cluster')).body.providers) assert.ok(p.mailbox.lanePayloads > 0, `${p.id} took shards on lanes`);
    // Many downloads at once, each reading ahead: they take turns at the client's download budget
    // of segments, none is refused, and the budget is idle again after.
    const downs = await Promise.all(Array.from({ length: 30 }, (_, i) => other.download(ups[i % ups.length]!.body[0].id)));
    for (const [i, d] of downs.entries()) assert.ok(d.status === 200 && d.bytes.equals(many[i % many.length]!.bytes), `download ${i} whole (${d.status})`);
    assert.deepEqual((await api.call('GET', '/api/v1/cluster')).body.pool.downloadSlots, { limit: 8, inUse: 0, waiting: 0 });

    /** An upload request that announces 64 MiB and sends what it is given, until destroyed. */
    const partialUpload = (...pieces: (string | Buffer)[]) => {
      const req = request(`${cluster.clients[0]}/api/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${api.token}`, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(64 * MiB) },
      });
      req.on('error', () => undefined);
      for (const piece of pieces) req.write(piece);
      return req;
    };
    const part = (name: string) => `--x\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n\r\n`;

    // An upload whose sender vanishes after 5 MiB: one segment sent, the next one held.
    const filesBefore = (await api.call('GET', '/api/v1/files')).body.length;
    const shardsBefore = await shards();
    const req = partialUpload(part('vanishes.bin'), randomBytes(5 * MiB));
    await waitFor('the cut-off upload to store a segment', async () => (await shards()) > shardsBefore);
    req.destroy();
    await waitFor('its slots to come back', async () => {
      const s = await slots();
      return s.inUse === 0 && s.waiting === 0;
    });
    await waitFor('its stored shards to be removed', async () => (await shards()) === shardsBefore);
    assert.equal((await api.call('GET', '/api/v1/files')).body.length, filesBefore, 'no file from the cut-off upload');
    const after = await api.upload([{ name: 'after-cut.bin', bytes: many[0]!.bytes }]);
    assert.equal(after.status, 201, 'the next upload goes through');

    // A request that breaks off after one whole file stores none of its files: each record waits
    // for the whole request. The first file (two segments, six shards) is complete and stored
    // before the sender goes.
    const shardsBeforePair = await shards();
    const pair = partialUpload(part('whole.bin'), randomBytes(300 * KiB), `\r\n${part('broken.bin')}`, randomBytes(1000));
    await waitFor('the whole first file to be stored', async () => (await shards()) >= shardsBeforePair + 6);
    pair.destroy();
    await waitFor('its shards to be removed', async () => (await shards()) === shardsBeforePair);
    assert.equal((await api.call('GET', '/api/v1/files')).body.length, filesBefore + 1, 'only after-cut.bin was added');
  });

  it('keeps no plaintext in the SP data directories', () => {
    const needle = Buffer.from(marker);
    let scanned = 0;
    for (const sp of ['sp1', 'sp2', 'sp3']) {
      for (const path of filesUnder(join(cluster.dataDir, sp))) {
        const bytes = readFileSync(path);
        scanned += bytes.length;
        assert.equal(bytes.indexOf(needle), -1, `plaintext marker found in ${path}`);
      }
    }
    assert.ok(scanned > 20 * MiB, `scanned ${scanned} bytes of SP data`);
  });

  it('has the same chain head on every SP', async () => {
    const api = new Api(cluster.clients[0]!);
    const chain = await waitFor('replicas to agree', async () => {
      const c = await api.call('GET', '/api/v1/chain');
      const heads = new Set(c.body.replicas.map((r: any) => `${r.height}:${r.head}`));
      return c.status === 200 && heads.size === 1 && c.body.replicas.every((r: any) => r.up) ? c.body : undefined;
    });
    assert.ok(chain.height >= 2);
    assert.ok(chain.leader);
    // A verification walks every SP's whole chain: it is for signed-in users only.
    assert.equal((await api.call('GET', '/api/v1/chain/verify')).status, 401);
    assert.equal((await api.signIn(alice.username, alice.password)).status, 200);
    const verify = await api.call('GET', '/api/v1/chain/verify');
    assert.equal(verify.status, 200);
    assert.equal(verify.body.ok, true, JSON.stringify(verify.body));
    // Compared at the height the leader had applied, right after a write (no wait for followers).
    const write = await api.upload([{ name: 'verify-now.txt', bytes: Buffer.from('now') }]);
    assert.equal(write.status, 201);
    const now = await api.call('GET', '/api/v1/chain/verify');
    assert.equal(now.body.ok, true, JSON.stringify(now.body));
    const at = now.body.replicas.map((r: any) => r.at);
    assert.ok(at.every((a: any) => a && a.height >= write.body[0].block), JSON.stringify(at));
    assert.equal(new Set(at.map((a: any) => `${a.height}:${a.hash}`)).size, 1, 'one block at that height on every replica');
  });

  it("keeps another user out of alice's files", async () => {
    // Also a user whose name is a property every object has: a share is an own entry, not Object's.
    for (const name of [`bob${randomBytes(3).toString('hex')}`, 'constructor']) {
      const bob = new Api(cluster.clients[1]!);
      assert.equal((await bob.register(name, 'bob password 1')).status, 201);
      assert.equal((await bob.signIn(name, 'bob password 1')).status, 200);
      const id = ids.get('one.bin')!;
      for (const [method, path] of [
        ['GET', `/api/v1/files/${id}`],
        ['GET', `/api/v1/files/${id}/content`],
        ['DELETE', `/api/v1/files/${id}`],
        ['POST', `/api/v1/files/${id}/shares`],
      ] as const) {
        const r = await bob.call(method, path, method === 'POST' ? { username: name } : undefined);
        assert.ok(r.status === 403 || r.status === 404, `${name}: ${method} ${path} gave ${r.status}`);
        if (method === 'GET') assert.equal(r.status, 404, `${name}: a file one may not see is not found`);
      }
      const list = await bob.call('GET', '/api/v1/files');
      assert.deepEqual(list.body, []);
    }
  });

  it('answers bad input clearly and keeps working', async () => {
    const api = new Api(cluster.clients[0]!);
    const wrong = await api.signIn(alice.username, 'wrong password!');
    assert.equal(wrong.status, 401);
    assert.equal((wrong.body as any).error.code, 'UNAUTHENTICATED');
    assert.equal((await api.call('GET', '/api/v1/files')).status, 401);
    await api.signIn(alice.username, alice.password);
    const unknown = await api.call('GET', `/api/v1/files/${'0'.repeat(32)}`);
    assert.equal(unknown.status, 404);
    assert.equal((await api.call('GET', '/api/v1/files/not-an-id/content')).status, 404);
    const wrongMethod = await api.call('PUT', '/api/v1/files');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.body.error.code, 'METHOD_NOT_ALLOWED', 'a JSON error, as every API error');
    assert.match(wrongMethod.headers.get('allow') ?? '', /GET.*POST|POST.*GET/);
    const notMultipart = await api.call('POST', '/api/v1/files', { file: 'nope' });
    assert.equal(notMultipart.status, 400);
    assert.equal(notMultipart.body.error.code, 'BAD_REQUEST');
    assert.doesNotMatch(JSON.stringify(notMultipart.body), /at .*\.js:\d+/, 'no stack trace');
    // Malformed multipart bodies: a clear 400 naming the problem, and no file appears.
    const filesBefore = (await api.call('GET', '/api/v1/files')).body.length;
    const part = '--x\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\nhalf a file';
    for (const [contentType, body, problem] of [
      ['multipart/form-data', `${part}\r\n--x--\r\n`, /boundary/],
      ['multipart/form-data; boundary=x', part, /cut off/],
      ['multipart/form-data; boundary=x', '--x\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--x--\r\n', /Content-Disposition/],
      ['multipart/form-data; boundary=x', '--x--\r\n', /no file/],
      // What a form's file input sends with no file chosen: an empty part named "".
      ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="file"; filename=""\r\nContent-Type: application/octet-stream\r\n\r\n\r\n--x--\r\n', /no file/],
    ] as const) {
      const r = await fetch(`${cluster.clients[0]}/api/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${api.token}`, 'content-type': contentType },
        body,
      });
      const reply = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(r.status, 400, contentType);
      assert.equal(reply.error.code, 'BAD_REQUEST');
      assert.match(reply.error.message, problem);
    }
    // A compressed form (read byte for byte as it comes) and a JSON body in an encoding no one inflates: 415.
    const { gzipSync } = await import('node:zlib');
    for (const [path, contentType, encoding, body] of [
      ['/api/v1/files', 'multipart/form-data; boundary=x', 'gzip', gzipSync(`${part}\r\n--x--\r\n`)],
      ['/api/v1/sessions', 'application/json', 'compress', Buffer.from('{}')],
    ] as const) {
      const r = await fetch(`${cluster.clients[0]}${path}`, { method: 'POST', headers: { authorization: `Bearer ${api.token}`, 'content-type': contentType, 'content-encoding': encoding }, body });
      const reply = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(r.status, 415, `${path} ${encoding}: ${reply.error.message}`);
      assert.equal(reply.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.match(reply.error.message, /encoding/i);
    }
    assert.equal((await api.call('GET', '/api/v1/files')).body.length, filesBefore, 'no file from a malformed upload');
    // A body that does not inflate is the sender's error, not ours.
    const deflated = await fetch(`${cluster.clients[0]}/api/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: 'not gzip' });
    assert.equal(deflated.status, 400);
    assert.match(((await deflated.json()) as { error: { message: string } }).error.message, /could not be decompressed/);

    // Garbage at an SP's mailbox port: the connection is refused or closed, the SP stays up.
    const [host, port] = cluster.providers[0]!.split(':');
    await new Promise<void>((resolve) => {
      const s = connect(Number(port), host!, () => s.end(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), randomBytes(4096)])));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
    const again = await api.upload([{ name: 'after-garbage.txt', bytes: Buffer.from('still here') }]);
    assert.equal(again.status, 201);
    const d = await api.download(again.body[0].id);
    assert.equal(d.bytes.toString(), 'still here');
    const health = await fetch(`${cluster.clients[0]}/healthz`);
    assert.equal(health.status, 200);
  });
});
