/**
 * A CPU profiler for every process and worker thread of a benchmark cluster.
 *
 * Node 20 refuses `--cpu-prof` in NODE_OPTIONS, the supervisor spawns its actors without our
 * flags, and an `--import` preload does not reach worker threads — but a CommonJS `--require`
 * preload does. So the benchmark writes the CommonJS source below to a file and starts the cluster
 * with NODE_OPTIONS="--require <file>" and CAIRN_BENCH_PROF_DIR set. In every thread it starts
 * V8's sampling profiler; SIGUSR2 to a process discards what was sampled so far in it and its
 * workers (so a profile covers the measured transfer, not start-up); a main thread writes its
 * profile when it exits (cairn's actors exit through process.exit after a clean stop), and a
 * worker, which is terminated without an 'exit' event, writes a slice whenever it goes idle (a
 * Piscina worker blocks in Atomics.wait, so it may miss the reset: the summary then skips worker
 * slices written before the reset time).
 * Files: CPU.bench.<ms>.<pid>.<thread>.<seq>.cpuprofile.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PRELOAD_SOURCE = `'use strict';
const dir = process.env.CAIRN_BENCH_PROF_DIR;
if (dir) {
  const { Session } = require('node:inspector');
  const { writeFileSync, unlinkSync } = require('node:fs');
  const { join } = require('node:path');
  const { threadId, isMainThread, BroadcastChannel } = require('node:worker_threads');
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  let seq = 0;
  let files = [];
  // The in-thread inspector session answers synchronously, so this works inside 'exit'.
  const flush = (restart) => {
    session.post('Profiler.stop', (err, res) => {
      if (err || !res) return;
      const file = join(dir, 'CPU.bench.' + Date.now() + '.' + process.pid + '.' + threadId + '.' + seq++ + '.cpuprofile');
      try {
        writeFileSync(file, JSON.stringify(res.profile));
        files.push(file);
      } catch {}
    });
    if (restart) session.post('Profiler.start');
  };
  const reset = () => {
    session.post('Profiler.stop');
    for (const f of files) {
      try { unlinkSync(f); } catch {}
    }
    files = [];
    session.post('Profiler.start');
  };
  const channel = new BroadcastChannel('cairn-bench-prof');
  if (isMainThread) {
    channel.unref();
    process.on('SIGUSR2', () => {
      reset();
      channel.postMessage('reset');
    });
    process.on('exit', () => flush(false));
  } else {
    // A Piscina worker waits for tasks in Atomics.wait, where neither timers nor messages run:
    // write a slice whenever it goes to wait and 200 ms have passed since the last one.
    let last = Date.now();
    const wait = Atomics.wait;
    Atomics.wait = function (...args) {
      if (Date.now() - last > 200) {
        last = Date.now();
        flush(true);
      }
      return wait.apply(Atomics, args);
    };
    channel.onmessage = (e) => {
      if (e.data === 'reset') reset();
    };
    channel.unref();
    setInterval(() => flush(true), 1000).unref();
    process.on('exit', () => flush(false));
  }
}
`;

/** Writes the preload into dir and returns the NODE_OPTIONS flag that loads it. */
export function writePreload(dir: string): string {
  const file = join(dir, 'cpu-prof-preload.cjs');
  writeFileSync(file, PRELOAD_SOURCE);
  return `--require=${file}`;
}
