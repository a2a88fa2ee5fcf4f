/** Rendezvous placement: deterministic, distinct, and adding an SP moves only a fair share. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { rendezvousOrder } from '../src/chain/placement.js';

it('orders SPs deterministically and moves about 1/n of first choices when an SP joins', () => {
  const three = ['sp1', 'sp2', 'sp3'];
  const four = [...three, 'sp4'];
  assert.deepEqual(rendezvousOrder('f/0', three), rendezvousOrder('f/0', [...three].reverse()));
  let moved = 0;
  const counts = new Map<string, number>();
  const n = 4000;
  for (let i = 0; i < n; i++) {
    const before = rendezvousOrder(`file/${i}`, three);
    const after = rendezvousOrder(`file/${i}`, four);
    assert.equal(new Set(after).size, 4);
    if (before[0] !== after[0]) {
      moved += 1;
      assert.equal(after[0], 'sp4', 'a first choice only ever moves to the new SP');
    }
    counts.set(before[0]!, (counts.get(before[0]!) ?? 0) + 1);
  }
  assert.ok(moved > n * 0.2 && moved < n * 0.3, `moved ${moved} of ${n}, expected about a quarter`);
  for (const sp of three) assert.ok(counts.get(sp)! > n * 0.28, `${sp} gets a fair share (${counts.get(sp)})`);
});
