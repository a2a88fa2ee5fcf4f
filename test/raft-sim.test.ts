import assert from 'node:assert/strict';
import test from 'node:test';
import type { Ready } from '../src/chain/raft.js';
import { makeEntry, runSimulation, SimViolation, type SimResult } from './support/raft-sim.js';

function sweep(nodes: number, seeds: number, firstSeed: number): SimResult[] {
  const results: SimResult[] = [];
  for (let seed = firstSeed; seed < firstSeed + seeds; seed++) results.push(runSimulation({ seed, nodes }));
  return results;
}

function sum(results: SimResult[], key: keyof SimResult): number {
  return results.reduce((acc, r) => acc + (r[key] as number), 0);
}

for (const [nodes, seeds] of [
  [3, 500],
  [5, 300],
  [4, 50],
  [2, 25],
  [1, 25],
] as const) {
  test(`${seeds} seeded runs of ${nodes} node(s) with faults keep every Raft invariant and converge`, () => {
    const results = sweep(nodes, seeds, 1000 * nodes);
    for (const r of results) assert.ok(r.commit > 0, `seed ${r.seed} made no progress`);
    // The faults must actually have happened, or the invariants were checked against nothing.
    assert.ok(sum(results, 'crashes') > seeds, 'crashes');
    assert.ok(sum(results, 'elections') > seeds, 'elections');
    assert.ok(sum(results, 'committedPayloads') > 10 * seeds, 'client payloads committed');
    if (nodes > 1) assert.ok(sum(results, 'dropped') > 0, 'dropped messages');
    if (nodes > 2) {
      assert.ok(sum(results, 'partitions') > seeds / 2, 'partitions');
      assert.ok(sum(results, 'truncations') > 0, 'conflicting suffixes truncated');
    }
  });
}

for (const [nodes, seeds] of [
  [3, 300],
  [5, 150],
  [1, 25],
] as const) {
  test(`${seeds} seeded runs of ${nodes} node(s) with asynchronous storage (crashes lose what was not flushed) keep every invariant`, () => {
    const results: SimResult[] = [];
    for (let seed = 7000 * nodes; seed < 7000 * nodes + seeds; seed++) results.push(runSimulation({ seed, nodes, asyncStorage: true }));
    for (const r of results) assert.ok(r.commit > 0, `seed ${r.seed} made no progress`);
    assert.ok(sum(results, 'crashes') > seeds, 'crashes');
    assert.ok(sum(results, 'committedPayloads') > 10 * seeds, 'client payloads committed');
    if (nodes > 2) assert.ok(sum(results, 'truncations') > 0, 'conflicting suffixes truncated');
  });
}

test('a seed replays exactly: same seed, same trace digest; another seed, another run', () => {
  const a = runSimulation({ seed: 4242, nodes: 5 });
  const b = runSimulation({ seed: 4242, nodes: 5 });
  const c = runSimulation({ seed: 4243, nodes: 5 });
  assert.deepEqual(a, b);
  assert.notEqual(a.digest, c.digest);
});

test('the checker catches a core that lies, naming the seed and step, and the failure replays', () => {
  // Deliver a forged entry in place of the first committed one node n2 is told to apply.
  const forge = () => {
    let done = false;
    return (node: string, _step: number, ready: Ready<string>): Ready<string> => {
      const first = ready.committed[0];
      if (done || node !== 'n2' || !first) return ready;
      done = true;
      return { ...ready, committed: [makeEntry(first.height, first.term, first.prevHash, 'forged'), ...ready.committed.slice(1)] };
    };
  };
  const failure = (): SimViolation => {
    try {
      runSimulation({ seed: 7, nodes: 3, tamper: forge() });
    } catch (err) {
      assert.ok(err instanceof SimViolation);
      return err;
    }
    assert.fail('the forged entry went unnoticed');
  };
  const first = failure();
  assert.match(first.message, /^raft-sim seed=7 step=\d+: .*applied an entry at height \d+ that is not the committed one/);
  assert.equal(failure().message, first.message);

  // A shell that skipped a truncation is caught too (on the first seed whose run truncates).
  let seed = 1;
  while (seed < 100 && runSimulation({ seed, nodes: 3 }).truncations === 0) seed++;
  assert.throws(
    () =>
      runSimulation({
        seed,
        nodes: 3,
        tamper: (_node, _step, ready) => (ready.truncateAfter === undefined ? ready : { ...ready, truncateAfter: undefined }),
      }),
    (err) => err instanceof SimViolation && err.seed === seed && err.message.startsWith(`raft-sim seed=${seed} step=`),
  );
});
