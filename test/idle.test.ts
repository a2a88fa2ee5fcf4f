/** Giving memory back once work stops: pools free their buffers after their last use, not during it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../src/codec/buffer-pool.js';
import { freeBuffers, KEEP_WARM_MS } from '../src/idle.js';

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
  // Two seconds of work that uses the pool, the watcher's timer running in between: never released.
  for (let i = 0; i < 20; i++) {
    pool.give(pool.take(1 << 20));
    burn(50);
    await new Promise((r) => setTimeout(r, 50));
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
