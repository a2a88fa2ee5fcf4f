import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SharedRun } from '../src/shared-run.js';

test('callers while a run is under way share it; later ones start another; a failed run is not reused', async () => {
  let runs = 0;
  let fail = false;
  let release!: () => void;
  const shared = new SharedRun(async () => {
    runs += 1;
    await new Promise<void>((r) => (release = r));
    if (fail) throw new Error(`run ${runs} failed`);
    return runs;
  });
  const burst = Array.from({ length: 30 }, () => shared.get());
  await new Promise((r) => setImmediate(r));
  release();
  assert.deepEqual(new Set(await Promise.all(burst)), new Set([1]), 'thirty callers, one run');
  const next = shared.get();
  await new Promise((r) => setImmediate(r));
  release();
  assert.equal(await next, 2, 'a caller after the run finished gets a fresh one');

  fail = true;
  const failing = shared.get();
  await new Promise((r) => setImmediate(r));
  release();
  await assert.rejects(failing, /run 3 failed/);
  fail = false;
  const after = shared.get();
  await new Promise((r) => setImmediate(r));
  release();
  assert.equal(await after, 4, 'a failure is not handed to the next caller');
});
