/**
 * Smoke test of the benchmark suite: `npm run bench -- --quick` (as a child process, into a temp
 * output dir) completes, and its JSON has every figure — numbers, positive where a figure must be.
 * No timing assertions: the machine may be slow or shared.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from './bench/run.js';
import { pgrep } from './bench/procs.js';

const RUN = fileURLToPath(new URL('./bench/run.js', import.meta.url));
const TIMEOUT_MS = 8 * 60_000;

function positive(value: unknown, what: string): void {
  assert.equal(typeof value, 'number', `${what} is a number (got ${JSON.stringify(value)})`);
  assert.ok(Number.isFinite(value as number) && (value as number) > 0, `${what} > 0 (got ${value})`);
}

function nonNegative(value: unknown, what: string): void {
  assert.equal(typeof value, 'number', `${what} is a number (got ${JSON.stringify(value)})`);
  assert.ok(Number.isFinite(value as number) && (value as number) >= 0, `${what} >= 0 (got ${value})`);
}

describe('benchmark --quick', () => {
  let out: string;
  let code: number | null = null;
  let stderr = '';
  let result: BenchResult;

  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'cairn-bench-smoke-'));
    const child = spawn(process.execPath, [RUN, '--quick', '--no-sweep', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
      if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), TIMEOUT_MS);
    code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
  });

  after(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('completes and writes its JSON, report and chart', () => {
    assert.equal(code, 0, `benchmark exited with ${code}:\n${stderr.slice(-4000)}`);
    assert.ok(existsSync(join(out, 'latest.json')), 'latest.json written');
    assert.ok(existsSync(join(out, 'latest.md')), 'latest.md written');
    const runs = readdirSync(out).filter((f) => !f.startsWith('latest'));
    assert.equal(runs.length, 1, 'one timestamped result dir');
    const files = readdirSync(join(out, runs[0]!));
    for (const f of ['result.json', 'report.md', 'throughput-vs-size.svg']) assert.ok(files.includes(f), `${f} in the result dir`);
    assert.match(readFileSync(join(out, runs[0]!, 'throughput-vs-size.svg'), 'utf8'), /^<svg [^]*<\/svg>\s*$/);
    const md = readFileSync(join(out, 'latest.md'), 'utf8');
    assert.match(md, /\| what \| target \| measured \|/);
    result = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as BenchResult;
    assert.equal(result.mode, 'quick');
  });

  it('stopped its cluster and removed its data dir', () => {
    const dir = result.config.dataDir;
    assert.ok(dir.includes('cairn-bench-'), dir);
    assert.deepEqual(pgrep(`--data-dir ${dir} `), [], 'no process of the bench cluster is left');
    assert.equal(existsSync(dir), false, 'temp data dir removed');
  });

  it('has the machine limits and the floors computed from them', () => {
    const l = result.limits;
    positive(l.cores, 'cores');
    positive(l.aes256GcmMBps, 'AES-256-GCM');
    positive(l.sha256MBps, 'SHA-256');
    positive(l.shardHashMBps, 'shard hash');
    for (const [k, v] of Object.entries(l.codec)) positive(v, `codec.${k}`);
    for (const t of [l.mailbox.tcp, l.mailbox.tlsPsk]) {
      positive(t.uploadMBps, `${t.transport} up`);
      positive(t.downloadMBps, `${t.transport} down`);
      positive(t.smallRequestsPerSec, `${t.transport} small`);
    }
    positive(l.lmdb.writeSyncMBps, 'LMDB write sync');
    positive(l.lmdb.writeCpuMBps, 'LMDB write per CPU-second');
    positive(l.lmdb.writeBatchedMBps, 'LMDB write batched');
    positive(l.lmdb.readMBps, 'LMDB read');
    positive(l.lmdb.durableCommitsPerSec, 'LMDB durable commits');
    for (const km of ['2+1', '4+2', '8+4']) {
      for (const side of ['upload', 'download'] as const) {
        const f = l.floors[side][km]!;
        positive(f.computeMBps, `${side} ${km} compute floor`);
        positive(f.withTransportMBps, `${side} ${km} floor with transport`);
        positive(f.limitMBps, `${side} ${km} limit`);
        positive(f.cpuSecondsPerGB, `${side} ${km} CPU-s per GB`);
      }
    }
  });

  it('has the large-file figures, checked content, RSS and CPU', () => {
    assert.ok(result.largeFiles.length >= 1);
    for (const f of result.largeFiles) {
      positive(f.sizeMiB, 'size');
      for (const side of ['upload', 'download'] as const) {
        const x = f[side];
        positive(x.MBps, `${f.sizeMiB} MiB ${side} MB/s`);
        positive(x.seconds, `${side} seconds`);
        positive(x.rss.clientPeakMiB, `${side} client peak RSS`);
        positive(x.rss.clusterPeakMiB, `${side} cluster peak RSS`);
        nonNegative(x.rss.clientGrowthMiB, `${side} client RSS growth`);
        positive(x.rss.samples, `${side} RSS samples`);
        positive(x.cpu.clientSeconds + x.cpu.providersSeconds, `${side} cluster CPU seconds`);
        positive(x.clusterCpuSecondsPerGiB, `${side} CPU-s per GiB`);
      }
      assert.equal(f.download.verified, true, 'downloaded bytes equal the uploaded ones');
      positive(f.download.firstByteMs, 'first byte of the download');
    }
    positive(result.timeToFirstByte.firstByteMsMedian, 'time to first byte');
    positive(result.timeToFirstByte.headersMsMedian, 'time to headers');
  });

  it('has the concurrent-upload and small-file figures', () => {
    const c = result.concurrentUploads;
    assert.equal(c.requests, 8);
    positive(c.aggregateMBps, 'aggregate MB/s');
    positive(c.fastestSeconds, 'fastest');
    positive(c.slowestSeconds, 'slowest');
    positive(c.fastestMBps, 'fastest MB/s');
    positive(c.slowestMBps, 'slowest MB/s');
    nonNegative(c.errors, 'errors');
    assert.deepEqual(
      result.smallFiles.map((s) => s.concurrency),
      [8, 64],
    );
    for (const s of result.smallFiles) {
      positive(s.uploadsPerSec, `c${s.concurrency} uploads/s`);
      positive(s.downloadsPerSec, `c${s.concurrency} downloads/s`);
      positive(s.uploadP50Ms, 'upload p50');
      positive(s.uploadP99Ms, 'upload p99');
      positive(s.downloadP50Ms, 'download p50');
      positive(s.downloadP99Ms, 'download p99');
      assert.ok(s.uploadP99Ms >= s.uploadP50Ms && s.downloadP99Ms >= s.downloadP50Ms);
      positive(s.clientPeakRssMiB, 'client RSS');
      positive(s.uploadCpuMsPerUpload, 'cluster CPU per upload');
      nonNegative(s.idleCores, 'idle cluster cores');
      positive(s.blocks, 'blocks made while uploading');
      positive(s.txPerBlock, 'uploads per block');
    }
  });

  it('has chain finality at 1, 16 and 64 submitters', () => {
    assert.deepEqual(
      result.finality.levels.map((l) => l.submitters),
      [1, 16, 64],
    );
    assert.ok(result.finality.leader);
    for (const l of result.finality.levels) {
      positive(l.final, `${l.submitters} submitters: final transactions`);
      positive(l.txPerSec, `${l.submitters} submitters: tx/s`);
      positive(l.p50Ms, 'p50');
      positive(l.p99Ms, 'p99');
      assert.ok(l.p99Ms >= l.p50Ms);
      positive(l.blocks, 'blocks');
      assert.equal(l.rejected, 0, 'every registration was accepted');
    }
  });

  it('has the idle memory of the cluster and every target with a figure', () => {
    for (const snap of [result.idleRss.fresh, result.idleRss.after]) {
      positive(snap.totalMiB, 'cluster RSS');
      positive(snap.supervisorMiB, 'supervisor RSS');
      positive(snap.providersMiB, 'SPs RSS');
      positive(snap.clientsMiB, 'clients RSS');
      assert.equal(Object.keys(snap.perProcessMiB).length, 6, 'supervisor + 3 SPs + 2 clients');
    }
    for (const snap of [result.idleRssThreads.fresh, result.idleRssThreads.afterTransfer]) {
      positive(snap.totalMiB, 'thread-isolated cluster RSS');
      positive(snap.anonMiB, 'thread-isolated cluster RssAnon');
      assert.ok(snap.anonMiB <= snap.totalMiB);
      assert.equal(snap.totalMiB, snap.supervisorMiB, 'in thread isolation the supervisor process is the whole cluster');
    }
    assert.ok(result.targets.length >= 9);
    for (const t of result.targets) {
      assert.ok(t.what && t.target && t.measured, JSON.stringify(t));
      assert.equal(typeof t.met, 'boolean');
    }
    assert.equal(result.sweeps, null, '--no-sweep');
  });
});
