/** Giving memory back once work stops: pools free their buffers after their last use, not during it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../src/codec/buffer-pool.js';
import { freeBuffers, KEEP_WARM_MS, quietWindow, type CpuSample } from '../src/idle.js';

/** Keeps a core busy for `ms`: the work that arms the next release. */
function burn(ms: number): void {
  const until = performance.now() + ms;
  let x = 0;
  while (performance.now() < until) x += Math.sqrt(x + 1);
  assert.ok(x > 0);
}

async function waitFor(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('freeBuffers detaches what it frees and skips what is already gone', () => {
  const a = new ArrayBuffer(1 << 20);
  const b = new ArrayBuffer(10);
  structuredClone(b, { transfer: [b] });
  freeBuffers([a, b]);
  assert.equal(a.byteLength, 0, 'the freed buffer is detached');
  freeBuffers([]);
});

test('a pool keeps its buffers while it is used and frees them KEEP_WARM_MS after its last use', async () => {
  const pool = new BufferPool(8 << 20);
  const kept = pool.take(1 << 20);
  pool.give(kept);
  assert.equal(pool.stats().pooledBytes, 1 << 20);
  // Work that uses the pool for longer than KEEP_WARM_MS, the watcher's timer running in between:
  // never released, since it is the time since the last use that counts, not since the first.
  const started = performance.now();
  for (let i = 0; performance.now() - started < KEEP_WARM_MS + 1_000; i++) {
    assert.ok(i < 1_000, 'the work loop ends');
    pool.give(pool.take(1 << 20));
    burn(50);
    await new Promise((r) => setTimeout(r, 50)); // the watcher's turn, as between a transfer's chunks
  }
  assert.equal(pool.stats().pooledBytes, 1 << 20, 'nothing is released while the pool is in use');
  assert.equal(kept.byteLength, 1 << 20);
  const lastUse = performance.now();
  await waitFor('the idle release', () => pool.stats().pooledBytes === 0, KEEP_WARM_MS + 10_000);
  assert.ok(performance.now() - lastUse >= KEEP_WARM_MS - 600, 'kept warm until then (the watcher checks every 500 ms)');
  assert.equal(kept.byteLength, 0, 'its memory went back, not just the reference');
  // The pool works as before; a new buffer stands in for the freed one.
  const fresh = pool.take(1 << 20);
  assert.equal(fresh.byteLength, 1 << 20);
  pool.give(fresh);
  assert.equal(pool.stats().pooledBytes, 1 << 20);
});

test('a quiet window is quiet on average, with no half second of real work: a blip does not restart it', () => {
  /** One sample per 500 ms over `seconds`, the process using `coresAt(t)` cores in each half second. */
  const run = (seconds: number, coresAt: (t: number) => number): CpuSample[] => {
    const samples: CpuSample[] = [{ at: 0, cpu: 0 }];
    for (let t = 500; t <= seconds * 1000; t += 500) samples.push({ at: t, cpu: samples.at(-1)!.cpu + coresAt(t) * 500 });
    return samples;
  };
  const now = 20_000;
  const window = KEEP_WARM_MS + 1_000;
  assert.equal(quietWindow(run(20, () => 0.05), window, now), true, 'an idle process');
  assert.equal(quietWindow(run(20, (t) => (t === 15_000 ? 0.5 : 0.05)), window, now), true, 'a heartbeat or GC of half a core');
  assert.equal(quietWindow(run(20, (t) => (t === 15_000 ? 1.5 : 0.05)), window, now), false, 'a half second of real work restarts it');
  assert.equal(quietWindow(run(20, (t) => (t <= 8_500 ? 1.5 : 0.05)), window, now), true, 'work that stopped more than the window ago');
  assert.equal(quietWindow(run(20, (t) => (t <= 9_500 ? 1.5 : 0.05)), window, now), false, 'work that stopped within the window');
  assert.equal(quietWindow(run(20, () => 0.3), window, now), false, 'busy on average, though never above real work');
  assert.equal(quietWindow(run(5, () => 0), window, 5_000), false, 'too little history to tell');
});
