/**
 * Garbage on a real cluster (max-upload-ms 4 s, orphan grace 8 s, connections idle 6 s closed):
 * an upload slower than its limit fails with nothing stored, a connection that stalls is closed,
 * and repair deletes shards that no final record names once they are older than the grace, and
 * nothing else: not a fresh one, not a file's own shards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { spClients, startCluster, waitFor, type ClusterHandle } from './support/cluster.js';
import { Api } from './support/http.js';
import { allHealthy, repairAndWait } from './support/repair.js';
import { CairnError } from '../src/errors.js';
import { NEW_SHARD_HASH, shardHashHex } from '../src/crypto/shard-hash.js';
import type { MailboxClient } from '../src/mailbox/client.js';
import { call } from '../src/mailbox/rpc.js';

const KiB = 1024;
const MAX_UPLOAD_MS = 4_000;
const GRACE_MS = 8_000;
const IDLE_MS = 6_000;
const hashed = (b: Uint8Array) => ({ hash: shardHashHex(NEW_SHARD_HASH, b), hashAlg: NEW_SHARD_HASH });

describe('orphaned shards', () => {
  let cluster: ClusterHandle;
  let api: Api;
  let sps = new Map<string, MailboxClient>();

  before(async () => {
    cluster = await startCluster({ args: ['--max-upload-ms', String(MAX_UPLOAD_MS), '--orphan-grace-ms', String(GRACE_MS), '--http-idle-ms', String(IDLE_MS)] });
    api = new Api(cluster.clients[0]!);
    assert.equal((await api.register('gcuser', 'orphan test password')).status, 201);
    assert.equal((await api.signIn('gcuser', 'orphan test password')).status, 200);
    sps = spClients(cluster);
  });
  after(async () => {
    await Promise.all([...sps.values()].map((c) => c.close()));
    await cluster?.stop();
  });

  const shardCount = async () => (await api.call('GET', '/api/v1/cluster')).body.providers.reduce((n: number, p: { shards: number }) => n + p.shards, 0);
  const holds = async (sp: string, key: string) => {
    const [id] = key.split('/');
    const { body } = await call(sps.get(sp)!, 'shard.list', { after: `${id}/`, limit: 10_000 });
    return body.keys.includes(key);
  };
  const plant = async (sp: string, key: string, bytes: Uint8Array = randomBytes(4 * KiB)) => {
    await call(sps.get(sp)!, 'shard.put', { key, ...hashed(bytes) }, { payload: bytes });
    assert.ok(await holds(sp, key), `${sp} holds ${key}`);
  };

  it('fails an upload that takes longer than max-upload-ms, and stores nothing of it', async () => {
    const filesBefore = (await api.call('GET', '/api/v1/files')).body.length;
    const shardsBefore = await shardCount();
    const started = Date.now();
    const req = request(`${cluster.clients[0]}/api/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api.token}`, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(1024 * KiB) },
    });
    req.on('error', () => undefined);
    const answered = new Promise<IncomingMessage>((resolve) => req.on('response', resolve));
    // The first segment (256 KiB) is sent to the SPs at once; then the sender stalls.
    req.write('--x\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\n');
    req.write(randomBytes(300 * KiB));
    await waitFor('the slow upload to store a segment', async () => (await shardCount()) > shardsBefore);
    const res = await Promise.race([answered, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the stalled upload had no answer within 30 s')), 30_000).unref())]);
    const elapsed = Date.now() - started;
    const body = JSON.parse(await new Promise<string>((resolve) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve(text));
    })) as { error: { code: string; message: string } };
    req.destroy();
    assert.equal(res.statusCode, 408);
    assert.equal(body.error.code, 'TOO_SLOW');
    assert.equal(res.headers.connection, 'close', 'a sender too slow for its upload is not waited for again');
    assert.match(body.error.message, /within 4 s.*nothing was stored/);
    assert.ok(elapsed >= MAX_UPLOAD_MS, `answered after ${elapsed} ms, not before the limit`);
    await waitFor('its stored shards to be removed', async () => (await shardCount()) === shardsBefore);
    assert.equal((await api.call('GET', '/api/v1/files')).body.length, filesBefore, 'no file from the slow upload');
  });

  it('closes a connection that stalls mid-body once idle for http-idle-ms', async () => {
    const { hostname, port } = new URL(cluster.clients[0]!);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const started = Date.now();
    socket.write('POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"username":');
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the stalled connection is still open after 30 s')), 30_000);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= IDLE_MS - 100, `closed after ${elapsed} ms, not before the idle limit`);
    assert.equal((await api.call('GET', '/api/v1/files')).status, 200, 'the client serves on');
  });

  it('deletes shards that no record names once older than the grace, and nothing else', async () => {
    const bytes = randomBytes(600 * KiB);
    const up = await api.upload([{ name: 'kept.bin', bytes }]);
    assert.equal(up.status, 201);
    const id = up.body[0].id as string;
    const record = (await api.call('GET', `/api/v1/files/${id}`)).body;
    const named: [string, string][] = record.segments.flatMap((seg: { shards: { sp: string }[] }, s: number) => seg.shards.map((sh, i) => [sh.sp, `${id}/${s}/${i}`]));
    assert.ok(named.length >= 6, 'the file has at least two segments of three shards');

    // Left by an upload that never got a record, and a stale copy of this file's shard 0 on an
    // SP the record names for another shard (as after a re-placement).
    const orphan = `${randomBytes(16).toString('hex')}/0/1`;
    const [holder0] = named[0]!;
    const other = named.find(([sp, key]) => sp !== holder0 && key.startsWith(`${id}/0/`))![0];
    const stale = `${id}/0/0`;
    await plant('sp1', orphan);
    const shard0 = (await call(sps.get(holder0!)!, 'shard.get', { key: stale })).payload!;
    await plant(other, stale, Buffer.from(shard0)); // the same bytes: a shard's bytes never change

    const young = await repairAndWait(api);
    assert.equal(young.orphansDeleted, 0, 'nothing younger than the grace is deleted');
    assert.ok(await holds('sp1', orphan));
    assert.ok(await holds(other, stale));

    const run = await waitFor('a repair pass to delete both once old enough', async () => {
      const r = await repairAndWait(api);
      return r.orphansDeleted > 0 ? r : undefined;
    }, 60_000, 1_000);
    assert.equal(run.orphansDeleted, 2);
    assert.equal(run.failures, 0);
    assert.equal(await holds('sp1', orphan), false, 'the orphan is gone');
    assert.equal(await holds(other, stale), false, 'the stale copy is gone');
    for (const [sp, key] of named) assert.ok(await holds(sp, key), `${sp} still holds ${key}, which the record names`);
    const down = await api.download(id);
    assert.equal(down.status, 200);
    assert.ok(down.bytes.equals(bytes), 'the file reads back whole');
    await allHealthy(api);

    // A fresh orphan survives the next pass.
    const fresh = `${randomBytes(16).toString('hex')}/0/0`;
    await plant('sp2', fresh);
    assert.equal((await repairAndWait(api)).orphansDeleted, 0);
    assert.ok(await holds('sp2', fresh));

    // A shard a final record places on an SP (older than the grace by now) cannot be swapped for
    // other bytes or deleted by any member, and only SPs may sweep.
    const conflict = (err: unknown) => err instanceof CairnError && err.code === 'CONFLICT';
    for (const [sp, key] of named.slice(0, 3)) {
      const other = randomBytes(4 * KiB);
      await assert.rejects(call(sps.get(sp)!, 'shard.put', { key, ...hashed(other) }, { payload: other }), conflict, `${sp} refuses other bytes for ${key}`);
      await assert.rejects(call(sps.get(sp)!, 'shard.delete', { key }), conflict, `${sp} refuses to delete ${key}`);
      await assert.rejects(call(sps.get(sp)!, 'shard.sweep', { keys: [key] }), (err: unknown) => err instanceof CairnError && err.code === 'FORBIDDEN', 'the sweep is for SPs alone');
      assert.ok(await holds(sp, key));
    }
    const again = await api.download(id);
    assert.ok(again.bytes.equals(bytes), 'the file still reads back whole');
  });
});
