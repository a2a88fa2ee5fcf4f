/**
 * Shard hashes on a real cluster: a new upload's record names BLAKE3 and its SPs hold shards that
 * hash to it; a file recorded the way earlier builds did (SHA-256 shard hashes, no `hashAlg`) is
 * still read, scrubbed and repaired under SHA-256.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spClients, startCluster, waitFor, type ClusterHandle } from './support/cluster.js';
import { Api } from './support/http.js';
import { repairAndWait } from './support/repair.js';
import { join } from 'node:path';
import { genesisHash } from '../src/chain/genesis.js';
import { readClusterFile } from '../src/config/cluster-file.js';
import { fileRoot } from '../src/chain/state.js';
import { signTx, type FileRecord } from '../src/chain/tx.js';
import { encodeSegment } from '../src/codec/segment-codec.js';
import { newFileKey } from '../src/codec/segment-seal.js';
import { keyContext, metaContext } from '../src/client/file-access.js';
import { newFileId } from '../src/client/file-id.js';
import { sealSmall, sealToSelf } from '../src/crypto/keys.js';
import { deriveAccountKeys } from '../src/crypto/password.js';
import { shardHashHex } from '../src/crypto/shard-hash.js';
import type { MailboxClient } from '../src/mailbox/client.js';
import { call } from '../src/mailbox/rpc.js';

const KiB = 1024;
const USER = 'hasher';
const PASSWORD = 'shard hash test password';
const sha256Hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('shard hashes', () => {
  let cluster: ClusterHandle;
  let api: Api;
  let sps = new Map<string, MailboxClient>();

  before(async () => {
    cluster = await startCluster();
    api = new Api(cluster.clients[0]!);
    assert.equal((await api.register(USER, PASSWORD)).status, 201);
    assert.equal((await api.signIn(USER, PASSWORD)).status, 200);
    sps = spClients(cluster);
  });
  after(async () => {
    await Promise.all([...sps.values()].map((c) => c.close()));
    await cluster?.stop();
  });

  it('records a new upload under BLAKE3, and its SPs hold shards that hash to it', async () => {
    const bytes = randomBytes(300 * KiB); // two segments (the first is cut at 256 KiB)
    const up = await api.upload([{ name: 'new.bin', bytes }]);
    assert.equal(up.status, 201);
    const d = (await api.call('GET', `/api/v1/files/${up.body[0].id}`)).body;
    assert.equal(d.hashAlg, 'blake3');
    let checked = 0;
    for (const [index, seg] of d.segments.entries()) {
      for (const sh of seg.shards) {
        const reply = await call(sps.get(sh.sp)!, 'shard.get', { key: `${d.id}/${index}/${sh.shard}` });
        assert.equal(shardHashHex('blake3', reply.payload!), sh.hash, `segment ${index} shard ${sh.shard}`);
        assert.notEqual(sha256Hex(reply.payload!), sh.hash);
        checked++;
      }
    }
    assert.equal(checked, 6);
    assert.ok((await api.download(d.id)).bytes.equals(bytes));
  });

  it('reads, scrubs and repairs a file whose record has SHA-256 shard hashes, as earlier builds made them', async () => {
    // The record an earlier build's upload made: shards hashed with SHA-256, put without naming
    // the hash, and a record without `hashAlg`. Shard 2 is left unplaced (a degraded upload) for
    // repair to rebuild.
    const { user } = (await call(sps.get('sp1')!, 'state.user', { username: USER, minHeight: 0 })).body;
    assert.ok(user);
    const keys = await deriveAccountKeys(PASSWORD, user.kdf);
    const plaintext = randomBytes(40 * KiB);
    const fileKey = newFileKey();
    const id = newFileId();
    const encoded = encodeSegment({ key: fileKey, fileId: id, index: 0, last: true, k: 2, m: 1, hashAlg: 'sha256', plaintext });
    const hashes = encoded.shards.map((s) => sha256Hex(s));
    assert.deepEqual(encoded.hashes.map((h) => h.toString('hex')), hashes);
    for (const shard of [0, 1]) {
      await call(sps.get(`sp${shard + 1}`)!, 'shard.put', { key: `${id}/0/${shard}`, hash: hashes[shard]! }, { payload: encoded.shards[shard]! });
    }
    const content = { segments: [{ sealedLength: encoded.sealedLength, shards: hashes.map((hash, i) => ({ hash, sp: i < 2 ? `sp${i + 1}` : null })) }] };
    const record: FileRecord = {
      id,
      owner: USER,
      size: plaintext.length,
      createdAt: Date.now(),
      k: 2,
      m: 1,
      segmentSize: 64 * KiB,
      meta: sealSmall(fileKey, Buffer.from(JSON.stringify({ name: 'old.bin', type: 'application/octet-stream' })), metaContext(id)),
      ownerKey: sealToSelf(keys.box, fileKey, keyContext(id)),
      ...content,
      root: fileRoot(content),
    };
    const tx = signTx({ type: 'file.put', file: record }, USER, keys.signing, genesisHash(readClusterFile(join(cluster.dataDir, 'cluster.json')).genesis));
    const submitted = await waitFor('the chain to take the record', async () => {
      for (const sp of sps.values()) {
        const r = await call(sp, 'chain.submit', { tx }).catch(() => undefined);
        if (r?.body.ok) return r.body;
      }
      return undefined;
    }, 30_000, 250);
    assert.ok(submitted.height > 0);

    const d = await waitFor('the file to be listed', async () => {
      const r = await api.call('GET', `/api/v1/files/${id}`);
      return r.status === 200 ? r.body : undefined;
    }, 10_000, 100);
    assert.equal(d.hashAlg, 'sha256');
    assert.equal(d.health, 'degraded');
    assert.ok((await api.download(id)).bytes.equals(plaintext), 'read under SHA-256');

    // Each SP's scrub re-hashes what it holds under the hash it was stored with: nothing is bad.
    for (const [name, sp] of sps) {
      const pass = (await call(sp, 'scrub.run', {}, { timeoutMs: 60_000 })).body;
      assert.equal(pass.bad, 0, `${name} found no bad shard`);
    }
    assert.equal((await call(sps.get('sp1')!, 'shard.get', { key: `${id}/0/0` })).payload!.length, encoded.shardSize, 'sp1 kept its shard');

    // Repair reads the two shards by their SHA-256, rebuilds the third and stores it under SHA-256.
    const run = await repairAndWait(api);
    assert.ok(run.shardsRebuilt >= 1, JSON.stringify(run));
    const healed = await waitFor('the file to be whole', async () => {
      const r = (await api.call('GET', `/api/v1/files/${id}`)).body;
      return r.health === 'ok' ? r : undefined;
    }, 15_000, 200);
    const placed = healed.segments[0].shards[2];
    const rebuilt = await call(sps.get(placed.sp)!, 'shard.get', { key: `${id}/0/2` });
    assert.equal(sha256Hex(rebuilt.payload!), hashes[2]);
    assert.equal(healed.hashAlg, 'sha256');
  });
});
