/**
 * ShardStore on a real LMDB in a temp dir: what it counts matches what it holds, also when a
 * write and a delete of the same shard race, and the age-bounded sweep takes only old shards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShardStore } from '../src/provider/shard-store.js';
import { openProviderDbs, type ProviderDbs } from '../src/provider/store.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const key = (i: number) => `${'ab'.repeat(16)}/${i}/0`;

describe('shard store', () => {
  let dir: string;
  let dbs: ProviderDbs;
  let store: ShardStore;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-shards-'));
    dbs = openProviderDbs(dir);
    store = new ShardStore(dbs);
  });
  after(async () => {
    await dbs.root.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const held = () => {
    let shards = 0;
    let bytes = 0;
    for (const { value } of dbs.shardMeta.getRange()) {
      shards += 1;
      bytes += value.size;
    }
    return { shards, bytes };
  };

  it('counts what it holds when a put and a delete of one shard race', async () => {
    for (let i = 0; i < 20; i++) {
      const first = randomBytes(1000 + i);
      await store.put(key(i), first, sha(first));
      const second = randomBytes(2000 + i);
      // Issued together: the delete's write goes first, the put's second.
      await Promise.all([store.delete(key(i)), store.put(key(i), second, sha(second))]);
      assert.ok(store.has(key(i)), 'the later put stands');
    }
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });

  it('removes a rotten copy it read, not a good one stored again meanwhile', async () => {
    const good = randomBytes(3000);
    await store.put(key(200), good, sha(good));
    const rotten = Buffer.from(good);
    rotten[0] = rotten[0]! ^ 1;
    dbs.shards.putSync(key(200), rotten); // rot on disk, under the recorded hash
    const storedAt = Date.now();
    for (let spins = 0; Date.now() <= storedAt; spins++) assert.ok(spins < 10_000_000, 'the clock moves');
    // Stored again (as repair does) while a check reads the rotten copy: the put's write is issued
    // first, the check reads before it lands and removes after it.
    const again = store.put(key(200), good, sha(good));
    const verdict = await store.check(key(200));
    await again;
    assert.equal(verdict, 'bad');
    assert.ok(store.read(key(200)).bytes.equals(good), 'the good copy stored meanwhile stays');
    assert.equal(await store.check(key(200)), 'ok');
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });

  it('sweeps only the shards stored by the given time', async () => {
    const old = randomBytes(500);
    await store.put(key(100), old, sha(old));
    const cutoff = Date.now();
    // Stored strictly after the cut-off (bounded: the clock moves within milliseconds).
    for (let spins = 0; Date.now() <= cutoff; spins++) assert.ok(spins < 10_000_000, 'the clock moves');
    const young = randomBytes(500);
    await store.put(key(101), young, sha(young));
    assert.equal(await store.deleteStoredBy([key(100), key(101), key(102)], cutoff), 1);
    assert.equal(store.has(key(100)), false);
    assert.equal(store.has(key(101)), true);
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });
});
