/**
 * A big seeded sweep of the Raft simulator, for hunting rare interleavings beyond what `npm test`
 * can afford: `node dist/test/raft-sweep.js --seeds 5000 [--from 1] [--nodes 3,4,5] [--async]`
 * (--async: the shell persists asynchronously, as cairn's chain node does).
 * Prints a summary; exits 1 if any seed violated an invariant (each is replayable by its seed).
 */
import { parseArgs } from 'node:util';
import { runSimulation, SimViolation, type SimResult } from './support/raft-sim.js';

const MAX_REPORTED = 20;

function main(): number {
  const { values } = parseArgs({
    options: { seeds: { type: 'string' }, from: { type: 'string', default: '1' }, nodes: { type: 'string', default: '3,4,5' }, async: { type: 'boolean', default: false } },
  });
  // Without --seeds this is not a sweep (e.g. the test runner picked the file up): say how, do nothing.
  if (values.seeds === undefined) {
    console.log('usage: node dist/test/raft-sweep.js --seeds N [--from S] [--nodes 3,4,5] [--async]');
    return 0;
  }
  const seeds = Number(values.seeds);
  const from = Number(values.from);
  const sizes = values.nodes.split(',').map(Number);
  if (!Number.isSafeInteger(seeds) || seeds < 1 || !Number.isSafeInteger(from) || !sizes.every((n) => Number.isInteger(n) && n >= 1)) {
    console.error('--seeds and --from must be integers, --nodes a comma-separated list of positive integers');
    return 2;
  }

  const started = process.hrtime.bigint();
  const violations: string[] = [];
  const totals = { steps: 0, commit: 0, elections: 0, crashes: 0, partitions: 0, truncations: 0, messages: 0, dropped: 0, garbage: 0 };
  let slowest = { seed: 0, ms: 0 };
  const perSize = new Map<number, number>();
  for (let seed = from; seed < from + seeds; seed++) {
    const nodes = sizes[seed % sizes.length]!;
    perSize.set(nodes, (perSize.get(nodes) ?? 0) + 1);
    const t0 = process.hrtime.bigint();
    let r: SimResult;
    try {
      r = runSimulation({ seed, nodes, asyncStorage: values.async });
    } catch (err) {
      if (!(err instanceof SimViolation)) throw err;
      violations.push(`nodes=${nodes} ${err.message}`);
      continue;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms > slowest.ms) slowest = { seed, ms };
    for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += r[k];
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  console.log(`raft sweep${values.async ? ' (asynchronous storage)' : ''}: seeds ${from}..${from + seeds - 1}, cluster sizes ${[...perSize].map(([n, c]) => `${n}×${c}`).join(' ')}`);
  console.log(`  violations: ${violations.length}`);
  for (const v of violations.slice(0, MAX_REPORTED)) console.log(`    ${v}`);
  if (violations.length > MAX_REPORTED) console.log(`    … and ${violations.length - MAX_REPORTED} more`);
  console.log(`  steps: ${totals.steps} (core calls, all checked)   time: ${seconds.toFixed(1)} s   slowest seed: ${slowest.seed} (${slowest.ms.toFixed(0)} ms)`);
  console.log(
    `  committed entries: ${totals.commit}   elections: ${totals.elections}   crashes: ${totals.crashes}   partitions: ${totals.partitions}   ` +
      `truncations: ${totals.truncations}`,
  );
  console.log(`  messages: ${totals.messages} (dropped ${totals.dropped})   garbage injected: ${totals.garbage}`);
  return violations.length === 0 ? 0 : 1;
}

process.exitCode = main();
