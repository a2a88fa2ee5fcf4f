/**
 * ShardStore on a real LMDB in a temp dir: what it counts matches what it holds, also when a
 * write and a delete of the same shard race, and the age-bounded sweep takes only old shards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeBytes, ShardStore, type ShardStoreOptions } from '../src/provider/shard-store.js';
import { CairnError } from '../src/errors.js';
import { NEW_SHARD_HASH, shardHashHex } from '../src/crypto/shard-hash.js';
import { openProviderDbs, type ProviderDbs } from '../src/provider/store.js';

const sha = (b: Uint8Array) => shardHashHex(NEW_SHARD_HASH, b);
const key = (i: number) => `${'ab'.repeat(16)}/${i}/0`;

describe('shard store', () => {
  let dir: string;
  let dbs: ProviderDbs;
  let store: ShardStore;
  const recorded = new Map<string, string>(); // the hashes final records give shards
  let options: ShardStoreOptions;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-shards-'));
    dbs = openProviderDbs(dir);
    options = { dir, reserveBytes: 0, recordedHash: (k) => recorded.get(k) };
    store = new ShardStore(dbs, options);
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
      await store.put(key(i), first, sha(first), NEW_SHARD_HASH);
      const second = randomBytes(2000 + i);
      // Issued together: the delete's write goes first, the put's second.
      await Promise.all([store.delete(key(i)), store.put(key(i), second, sha(second), NEW_SHARD_HASH)]);
      assert.ok(store.has(key(i)), 'the later put stands');
    }
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });

  it('removes a rotten copy it read, not a good one stored again meanwhile', async () => {
    const good = randomBytes(3000);
    await store.put(key(200), good, sha(good), NEW_SHARD_HASH);
    const rotten = Buffer.from(good);
    rotten[0] = rotten[0]! ^ 1;
    dbs.shards.putSync(key(200), rotten); // rot on disk, under the recorded hash
    const storedAt = Date.now();
    for (let spins = 0; Date.now() <= storedAt; spins++) assert.ok(spins < 10_000_000, 'the clock moves');
    // Stored again (as repair does) while a check reads the rotten copy: the put's write is issued
    // first, the check reads before it lands and removes after it.
    const again = store.put(key(200), good, sha(good), NEW_SHARD_HASH);
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
    await store.put(key(100), old, sha(old), NEW_SHARD_HASH);
    const cutoff = Date.now();
    // Stored strictly after the cut-off (bounded: the clock moves within milliseconds).
    for (let spins = 0; Date.now() <= cutoff; spins++) assert.ok(spins < 10_000_000, 'the clock moves');
    const young = randomBytes(500);
    await store.put(key(101), young, sha(young), NEW_SHARD_HASH);
    assert.equal(await store.deleteStoredBy([key(100), key(101), key(102)], cutoff), 1);
    assert.equal(store.has(key(100)), false);
    assert.equal(store.has(key(101)), true);
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });

  const refused = (code: string) => (err: unknown) => err instanceof CairnError && err.code === code;

  it('keeps the first bytes of a key: other bytes under a stored or recorded key are refused', async () => {
    const first = randomBytes(700);
    await store.put(key(300), first, sha(first), NEW_SHARD_HASH);
    const other = randomBytes(700);
    await assert.rejects(store.put(key(300), other, sha(other), NEW_SHARD_HASH), refused('CONFLICT'));
    assert.ok(store.read(key(300)).bytes.equals(first), 'the stored shard is unchanged');
    await store.put(key(300), first, sha(first), NEW_SHARD_HASH); // the same bytes again (a retry, repair): fine

    recorded.set(key(301), sha(first));
    await assert.rejects(store.put(key(301), other, sha(other), NEW_SHARD_HASH), refused('CONFLICT'));
    assert.equal(store.has(key(301)), false);
    await store.put(key(301), first, sha(first), NEW_SHARD_HASH);
    assert.equal(await store.check(key(301)), 'ok');
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });

  it('judges a stored shard by the hash its record gives it, and removes one that differs', async () => {
    const stored = randomBytes(800);
    await store.put(key(310), stored, sha(stored), NEW_SHARD_HASH);
    recorded.set(key(310), sha(randomBytes(800))); // recorded with other bytes than this SP holds
    assert.equal(await store.check(key(310)), 'bad');
    assert.equal(store.has(key(310)), false, 'removed, so repair rebuilds the recorded bytes');
    const { shards, bytes } = store.stats();
    assert.deepEqual({ shards, bytes }, held());
  });

  it('leaves alone a shard stored under a hash it does not know (by a later build, before a rollback)', async () => {
    const bytes = randomBytes(600);
    await store.put(key(330), bytes, sha(bytes), NEW_SHARD_HASH);
    const meta = dbs.shardMeta.get(key(330))!;
    await dbs.root.transaction(() => dbs.shardMeta.put(key(330), { ...meta, hash: 'ff'.repeat(32), hashAlg: 'sha3-256' as never }));
    assert.equal(await store.check(key(330)), 'ok');
    assert.equal(store.has(key(330)), true, 'kept: deleting it would lose data this build cannot judge');
    assert.ok(await store.delete(key(330)));
  });

  it('refuses a shard that would eat into the disk reserve, storing nothing', async () => {
    const bytes = randomBytes(1000);
    const before = store.stats();
    options.reserveBytes = freeBytes(dir); // a put of any size would leave less
    try {
      await assert.rejects(store.put(key(320), bytes, sha(bytes), NEW_SHARD_HASH), (err: unknown) => refused('STORAGE_FULL')(err) && /disk-reserve-bytes/.test((err as Error).message));
    } finally {
      options.reserveBytes = 0;
    }
    assert.equal(store.has(key(320)), false);
    assert.deepEqual(store.stats(), before);
    await store.put(key(320), bytes, sha(bytes), NEW_SHARD_HASH);
    assert.ok(store.has(key(320)));
  });
});

describe('a disk that refuses writes', () => {
  it('fails the put with STORAGE_FAILED, and the process lives on to serve what it holds', () => {
    // The file size limit (ulimit -f, SIGXFSZ ignored) stands in for a full disk: the commit that
    // grows data.mdb past it fails as a full disk's does. lmdb-js then also rejects a promise of
    // its own, out of reach, which used to end the process.
    const dir = mkdtempSync(join(tmpdir(), 'cairn-full-'));
    const script = join(dir, 'fill.mjs');
    writeFileSync(
      script,
      `import { ShardStore } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../src/provider/shard-store.js')).href)};
import { openProviderDbs } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../src/provider/store.js')).href)};
import { createHash } from 'node:crypto';
const dbs = openProviderDbs(${JSON.stringify(join(dir, 'lmdb'))});
const store = new ShardStore(dbs, { dir: ${JSON.stringify(dir)}, reserveBytes: 0, recordedHash: () => undefined });
const bytes = Buffer.alloc(1 << 20, 7);
const hash = createHash('sha256').update(bytes).digest('hex');
let stored = 0, failure = null;
for (let i = 0; i < 200 && !failure; i++) {
  try { await store.put(\`${'ef'.repeat(16)}/\${i}/0\`, bytes, hash, 'sha256'); stored++; } catch (err) { failure = err.code; }
}
await new Promise((r) => setTimeout(r, 300)); // any stray rejection would end the process here
const readBack = store.read(\`${'ef'.repeat(16)}/0/0\`).bytes.equals(bytes);
console.log(JSON.stringify({ stored, failure, readBack, counted: store.stats().shards }));
`,
    );
    try {
      const out = execFileSync('bash', ['-c', `ulimit -f 20000; trap '' XFSZ; exec "${process.execPath}" "${script}"`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
      const result = JSON.parse(out.trim().split('\n').at(-1)!) as { stored: number; failure: string | null; readBack: boolean; counted: number };
      assert.equal(result.failure, 'STORAGE_FAILED', out);
      assert.ok(result.stored > 0 && result.stored < 20, out);
      assert.equal(result.counted, result.stored, 'the failed put is not counted');
      assert.equal(result.readBack, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
