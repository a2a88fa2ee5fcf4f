/** The background scrubber on a real ShardStore (LMDB in a temp dir). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Scrubber } from '../src/provider/scrubber.js';
import { ShardStore } from '../src/provider/shard-store.js';
import { openProviderDbs } from '../src/provider/store.js';

/** A ShardStore on a fresh LMDB holding 300 shards of 64 KiB (~19 MiB), for `fn`. */
async function withShards(fn: (store: ShardStore) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-scrub-'));
  const dbs = openProviderDbs(dir);
  try {
    const store = new ShardStore(dbs, { dir, reserveBytes: 0, recordedHash: () => undefined });
    const bytes = randomBytes(64 * 1024);
    const hash = createHash('sha256').update(bytes).digest('hex');
    for (let i = 0; i < 300; i++) await store.put(`${'cd'.repeat(16)}/${i}/0`, bytes, hash, 'sha256');
    await fn(store);
  } finally {
    await dbs.root.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('an on-demand pass joining a throttled one lifts its throttle, and both learn the same outcome', async () => {
  await withShards(async (store) => {
    // ~19 MiB at 1 MiB/s: the throttled pass alone would take ~19 s.
    const scrubber = new Scrubber(store, { bytesPerSecond: 1024 * 1024, intervalMs: 3_600_000, log: () => undefined });
    const background = scrubber.runPass(true);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual([scrubber.stats().running, scrubber.stats().throttled], [true, true]);
    const joined = scrubber.runPass(false);
    assert.equal(scrubber.stats().throttled, false, 'the throttle is lifted the moment someone waits');
    const now = await joined;
    assert.deepEqual(now, { scanned: 300, bad: 0 });
    assert.deepEqual(await background, now, 'one pass, one outcome');
    scrubber.stop();
  });
});

test('a pass lets other work in after every shard, so a leader keeps its heartbeats', async () => {
  await withShards(async (store) => {
    const scrubber = new Scrubber(store, { bytesPerSecond: 1024 ** 3, intervalMs: 3_600_000, log: () => undefined });
    // Another task that needs the event loop once per turn (as the Raft tick does): it gets a
    // turn between shards, not only between pages of 256.
    let turns = 0;
    let done = false;
    const other = (async () => {
      for (let i = 0; !done && i < 1_000_000; i++) {
        turns += 1;
        await new Promise((r) => setImmediate(r));
      }
    })();
    const pass = await scrubber.runPass(false);
    done = true;
    await other;
    assert.deepEqual(pass, { scanned: 300, bad: 0 });
    assert.ok(turns >= 299, `other work ran ${turns} times during a pass over 300 shards`);
    scrubber.stop();
  });
});
