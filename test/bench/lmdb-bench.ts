/**
 * LMDB throughput with 1 MiB values, as an SP uses it (lmdb-js, writes awaited until flushed to
 * disk as shard.put does, no compression, binary values), in MB/s (10^6 bytes per second):
 *  - writeSync: one durable write per value, so every 1 MiB value is its own flushed commit;
 *  - writeCpu: the same writes per second of this process's CPU (every thread, kernel time
 *    included): what storing a new byte costs an SP's cores. On this kind of VM most of it is the
 *    kernel filling fresh page-cache pages (first touch of memory is ~0.5-2 s per GB here, a rewrite
 *    of cached pages ~0.1), so it is a CPU stage of the upload floor, not only a disk ceiling;
 *  - writeBatched: 16 puts issued in one event-loop turn (lmdb-js makes them one flushed commit);
 *  - read: `get` (which copies) of every stored value, repeated for a while;
 *  - durableCommitsPerSec: 4 KiB writes one after another, each flushed before the next: how
 *    many times a second this disk makes a small write durable, the price of every consensus
 *    step that must reach the disk before its answer leaves (small files, chain finality).
 * Runs in a temp directory that is removed afterwards.
 *
 *   node dist/test/bench/lmdb-bench.js [MiB]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { open } from 'lmdb';
import { writeDurably } from '../../src/lmdb-durable.js';

const MiB = 1024 * 1024;

export interface LmdbBenchResult {
  valueBytes: number;
  writeSyncMBps: number;
  writeCpuMBps: number;
  writeBatchedMBps: number;
  readMBps: number;
  durableCommitsPerSec: number;
}

export async function benchLmdb(options: { totalMiB?: number; readMs?: number; commitMs?: number } = {}): Promise<LmdbBenchResult> {
  const total = options.totalMiB ?? 128;
  const readMs = options.readMs ?? 500;
  const commitMs = options.commitMs ?? 300;
  const dir = mkdtempSync(join(tmpdir(), 'cairn-lmdb-bench-'));
  const root = open({ path: dir, maxDbs: 2, mapSize: 16 * 1024 ** 3, compression: false });
  try {
    const db = root.openDB<Buffer, string>({ name: 'values', encoding: 'binary' });
    const values = Array.from({ length: 8 }, () => randomBytes(MiB));
    const value = (i: number) => values[i % values.length]!;

    let start = process.hrtime.bigint();
    const cpu = process.cpuUsage();
    for (let i = 0; i < total; i++) await writeDurably(root, () => void db.put(`s/${i}`, value(i)));
    const writeSyncMBps = (total * MiB) / (Number(process.hrtime.bigint() - start) / 1e9) / 1e6;
    const used = process.cpuUsage(cpu);
    const writeCpuMBps = (total * MiB) / ((used.user + used.system) / 1e6) / 1e6;

    start = process.hrtime.bigint();
    const BATCH = 16;
    for (let i = 0; i < total; i += BATCH) {
      const puts: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(total, i + BATCH); j++) puts.push(db.put(`b/${j}`, value(j)));
      await Promise.all([...puts, root.flushed]);
    }
    const writeBatchedMBps = (total * MiB) / (Number(process.hrtime.bigint() - start) / 1e9) / 1e6;

    // Reads: warm once, then read everything round and round for readMs.
    for (let i = 0; i < total; i++) db.get(`s/${i}`);
    let bytes = 0;
    start = process.hrtime.bigint();
    const until = Date.now() + readMs;
    while (Date.now() < until) {
      for (let i = 0; i < total; i++) bytes += db.get(`s/${i}`)!.length;
    }
    const readMBps = bytes / (Number(process.hrtime.bigint() - start) / 1e9) / 1e6;

    const small = randomBytes(4096);
    let commits = 0;
    start = process.hrtime.bigint();
    const commitUntil = Date.now() + commitMs;
    while (Date.now() < commitUntil || commits < 10) await writeDurably(root, () => void db.put(`c/${commits++ % 64}`, small));
    const durableCommitsPerSec = commits / (Number(process.hrtime.bigint() - start) / 1e9);
    return { valueBytes: MiB, writeSyncMBps: Math.round(writeSyncMBps), writeCpuMBps: Math.round(writeCpuMBps), writeBatchedMBps: Math.round(writeBatchedMBps), readMBps: Math.round(readMBps), durableCommitsPerSec: Math.round(durableCommitsPerSec) };
  } finally {
    await root.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await benchLmdb({ totalMiB: Number(process.argv[2] ?? 128) })));
}
