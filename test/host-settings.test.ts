/**
 * Settings each host keeps for itself, checked where they meet. A web client may take
 * max-upload-ms to record a file's shards; an SP sweeps shards no record names after its
 * orphan-grace-ms. On one host the config check keeps the grace longer; across hosts (real
 * processes with settings of their own here) an SP refuses shards it could sweep too early, and
 * the upload stops with the operator's fix in the log rather than store them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { Api } from './support/http.js';
import { ManualCluster } from './support/manual-cluster.js';
import { LIMITS } from '../src/chain/tx.js';

const KiB = 1024;
const password = 'host settings password';

describe('settings of separate hosts', () => {
  let cluster: ManualCluster;
  let api: Api;

  before(async () => {
    cluster = await ManualCluster.create({
      providerArgs: ['--max-upload-ms', '20000', '--orphan-grace-ms', '30000'],
      clientArgs: ['--max-upload-ms', '40000'],
    });
    api = new Api(cluster.clients[0]!.url);
    assert.equal((await api.register('hosts', password)).status, 201);
    assert.equal((await api.signIn('hosts', password)).status, 200);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('an SP whose orphan grace is shorter than a client upload limit refuses its shards, and the upload stores no file', async () => {
    const shardsBefore = (await api.call('GET', '/api/v1/cluster')).body.providers.map((p: { shards: number }) => p.shards);
    const up = await api.upload([{ name: 'too-long.bin', bytes: randomBytes(300 * KiB) }]);
    assert.equal(up.status, 500, JSON.stringify(up.body));
    assert.equal(up.body.error.code, 'INTERNAL');
    assert.ok(
      cluster.output.some((line) => line.startsWith('[client1]') && /orphan-grace-ms/.test(line) && /30000 ms/.test(line) && /40000 ms/.test(line)),
      `the client logs the SP's reason:\n${cluster.output.slice(-20).join('\n')}`,
    );
    assert.deepEqual((await api.call('GET', '/api/v1/files')).body, []);
    const shardsAfter = (await api.call('GET', '/api/v1/cluster')).body.providers.map((p: { shards: number }) => p.shards);
    assert.deepEqual(shardsAfter, shardsBefore, 'no SP stored a shard');
  });

  it('a file small enough to sit in its record (no shards) is stored as usual', async () => {
    const bytes = randomBytes(2 * KiB);
    const up = await api.upload([{ name: 'inline.bin', bytes }]);
    assert.equal(up.status, 201, JSON.stringify(up.body));
    const down = await api.download(up.body[0].id);
    assert.equal(down.status, 200);
    assert.ok(down.bytes.equals(bytes));
  });
});

describe('SPs whose disks are full', () => {
  let cluster: ManualCluster;
  let api: Api;

  before(async () => {
    // A reserve larger than any disk: every SP is "full" for shards, with room kept for its chain.
    cluster = await ManualCluster.create({ providerArgs: ['--disk-reserve-bytes', String(Number.MAX_SAFE_INTEGER)] });
    api = new Api(cluster.clients[0]!.url);
    assert.equal((await api.register('full', password)).status, 201);
    assert.equal((await api.signIn('full', password)).status, 200);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('refuse shards with STORAGE_FULL and stay up: the upload is a 503 that says so, and files in records still fit', async () => {
    const up = await api.upload([{ name: 'no-room.bin', bytes: randomBytes(300 * KiB) }]);
    assert.equal(up.status, 503, JSON.stringify(up.body));
    assert.match(up.body.error.message, /sp1: STORAGE_FULL/);
    assert.deepEqual((await api.call('GET', '/api/v1/files')).body, []);
    const providers = (await api.call('GET', '/api/v1/cluster')).body.providers as { id: string; up: boolean; shards: number }[];
    assert.deepEqual(providers.map((p) => [p.id, p.up, p.shards]), [['sp1', true, 0], ['sp2', true, 0], ['sp3', true, 0]]);
    const small = randomBytes(KiB);
    const inline = await api.upload([{ name: 'fits.bin', bytes: small }]);
    assert.equal(inline.status, 201, JSON.stringify(inline.body));
    assert.ok((await api.download(inline.body[0].id)).bytes.equals(small));
  });
});

describe('a cluster of small segments', () => {
  let cluster: ManualCluster;
  let api: Api;

  before(async () => {
    // 64 KiB segments: a record (at most LIMITS.maxSegments segments) describes at most ~6.1 GiB.
    cluster = await ManualCluster.create({ args: ['--segment-size', String(64 * KiB)] });
    api = new Api(cluster.clients[0]!.url);
    assert.equal((await api.register('small', password)).status, 201);
    assert.equal((await api.signIn('small', password)).status, 200);
  });

  after(async () => {
    await cluster?.stop();
  });

  it('refuses at once an upload larger than a file record can describe, instead of storing it and refusing its record', async () => {
    const recordable = Math.min(256 * KiB, 64 * KiB) + (LIMITS.maxSegments - 1) * 64 * KiB;
    // Announced by its Content-Length; only its first bytes are sent.
    const req = request(`${cluster.clients[0]!.url}/api/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api.token}`, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(recordable + 2 * 1024 * 1024) },
    });
    req.on('error', () => undefined);
    const answered = new Promise<IncomingMessage>((resolve) => req.on('response', resolve));
    req.write('--x\r\nContent-Disposition: form-data; name="file"; filename="huge.bin"\r\n\r\n');
    const res = await answered;
    const text = await new Promise<string>((resolve) => {
      let t = '';
      res.setEncoding('utf8').on('data', (c: string) => (t += c)).on('end', () => resolve(t));
    });
    req.destroy();
    assert.equal(res.statusCode, 413, text);
    assert.match((JSON.parse(text) as { error: { message: string } }).error.message, new RegExp(`${recordable}`));
    assert.ok(cluster.output.some((l) => /uploads are limited to \d+ bytes: a file record holds 100000 segments of 65536 bytes/.test(l)), 'the client says why at start');
    // Files within the limit are stored as usual.
    const bytes = randomBytes(200 * KiB);
    const up = await api.upload([{ name: 'fits.bin', bytes }]);
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.ok((await api.download(up.body[0].id)).bytes.equals(bytes));
  });
});
