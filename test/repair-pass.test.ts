/**
 * The repair pass on its own, over a real ChainStore (LMDB in a temp dir) and the real
 * Reed-Solomon code; the SPs' shard stores are maps behind the ShardAccess interface, so a file
 * can be recorded exactly while the pass is busy with another one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChainStore } from '../src/chain/chain-store.js';
import { keys, type StoredFile } from '../src/chain/state.js';
import { ReedSolomon } from '../src/codec/reed-solomon.js';
import { shardSize } from '../src/codec/shards.js';
import { sha256Hex } from '../src/crypto/hash.js';
import { newSigningSeed, signingKeyFromSeed } from '../src/crypto/keys.js';
import { Repairer, type ShardAccess } from '../src/provider/repairer.js';
import { openProviderDbs } from '../src/provider/store.js';

test('a file recorded while a pass runs waits for the next pass instead of counting as a failed repair', async () => {
  const sps = ['sp1', 'sp2', 'sp3'];
  const signers = new Map(sps.map((id) => [id, signingKeyFromSeed(newSigningSeed())]));
  const genesis = { chainId: 't', time: 1, validators: sps.map((id) => ({ id, signKey: signers.get(id)!.publicKey })) };
  const dir = mkdtempSync(join(tmpdir(), 'cairn-repair-pass-'));
  const dbs = openProviderDbs(dir);
  dbs.meta.putSync('chain/applied', 5); // the state below is as of block 5
  const store = new ChainStore(dbs, genesis);
  const disks = new Map(sps.map((sp) => [sp, new Map<string, Uint8Array>()]));
  const makeFile = (id: string, height: number) => {
    const sealedLength = 64;
    const shards = [0, 1, 2].map((i) => new Uint8Array(shardSize(sealedLength, 2)).fill(i + 1));
    new ReedSolomon(2, 1).encode(shards);
    const record = { id, owner: 'alice', size: 48, createdAt: 1, k: 2, m: 1, segmentSize: 65536, meta: '00', ownerKey: { epk: '00', nonce: '00', ct: '00' }, segments: [{ sealedLength, shards: shards.map((b, i) => ({ hash: sha256Hex(b), sp: sps[i]! })) }], root: '0'.repeat(64) };
    return { file: { record, shares: {}, height, updatedAt: height } as unknown as StoredFile, shards };
  };
  const a = makeFile('a'.repeat(32), 3); // recorded before the pass, and lost its shard on sp3
  const b = makeFile('b'.repeat(32), 6); // recorded during the pass, after the SPs' lists were taken
  dbs.state.putSync(keys.file(a.file.record.id), a.file);
  a.shards.forEach((bytes, i) => i < 2 && disks.get(sps[i]!)!.set(`${a.file.record.id}/0/${i}`, bytes));
  let recordedB = false;
  const access: ShardAccess = {
    providers: sps,
    scrub: async () => ({ scanned: 0, bad: 0 }),
    list: async (sp, after) => [...disks.get(sp)!.keys()].sort().filter((k) => after === undefined || k > after),
    get: async (sp, key) => {
      if (!recordedB) {
        // While a is rebuilt, an upload of b completes: its shards stored, its record final.
        recordedB = true;
        b.shards.forEach((bytes, i) => disks.get(sps[i]!)!.set(`${b.file.record.id}/0/${i}`, bytes));
        dbs.state.putSync(keys.file(b.file.record.id), b.file);
      }
      const bytes = disks.get(sp)!.get(key);
      if (!bytes) throw new Error(`${sp} has no ${key}`);
      return bytes;
    },
    put: async (sp, key, _hash, _alg, bytes) => void disks.get(sp)!.set(key, bytes),
    sweep: async () => 0,
  };
  const logs: string[] = [];
  const repairer = new Repairer({ id: 'sp1', signer: signers.get('sp1')!, chain: store, submit: async () => ({ ok: true, height: 7, txId: 'x' }), leaderRead: async () => undefined, shards: access, log: (l) => logs.push(l) });
  try {
    const run = await repairer.run({ scrub: false });
    assert.equal(recordedB, true, 'b was recorded during the pass');
    assert.deepEqual([run.segmentsChecked, run.shardsMissing, run.shardsRebuilt, run.failures], [1, 1, 1, 0], `${JSON.stringify(run)}\n${logs.join('\n')}`);
    assert.ok(disks.get('sp3')!.has(`${a.file.record.id}/0/2`), "a's shard is back on sp3");
  } finally {
    await store.settled();
    await dbs.root.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
