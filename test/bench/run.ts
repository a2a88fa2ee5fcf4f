/**
 * `npm run bench` — cairn's benchmark suite.
 *
 * Starts its own cluster (`cairn cluster --isolation process`, free ports, a temp data dir), drives
 * it through client1's HTTP API and reports each figure beside the same run's machine limits:
 *   - one large file up and down (64 MiB, 256 MiB, 1 GiB; --quick: 16 MiB) with MB/s, the web
 *     client's peak RSS and RSS growth (VmRSS sampled every 100 ms), CPU per GiB per role;
 *   - time to first byte of a download of the largest file;
 *   - 8 concurrent uploads (64 MiB each; --quick: 8 MiB) — aggregate MB/s, fastest and slowest;
 *   - 4 KiB files at concurrency 8 and 64 (full also 1 and 16): uploads/s, downloads/s, p50/p99;
 *   - chain finality with 1, 16 and 64 submitters (see chain-bench.ts for how);
 *   - the whole cluster's RSS idle, after start and after the scenarios;
 *   - sweeps (full mode, or --sweep): worker-pool size 1–4, segment size 1–16 MiB, k+m 2+1/4+2/8+4,
 *     each on a fresh cluster.
 * Writes bench-results/<timestamp>/result.json, report.md and SVG charts, and copies them to
 * bench-results/latest.json and latest.md. A progress bar goes to stderr on a terminal.
 *
 *   npm run bench [-- --quick] [--sweep | --no-sweep] [--out DIR] [--cpu-prof]
 *
 * --cpu-prof runs one more cluster with V8's CPU profiler in every process (cpu-prof-preload.ts)
 * for one large upload and download and summarises where each process spent its CPU (profiles are
 * kept in the result dir; open them in Chrome DevTools or speedscope for flame graphs).
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startBenchCluster, stopAll, type BenchCluster } from './bench-cluster.js';
import { benchFinality, type FinalityResult } from './chain-bench.js';
import { measureLimits, type Limits } from './limits.js';
import { writePreload } from './cpu-prof-preload.js';
import { summariseDir, type ProfileSummary } from './profile.js';
import { Progress } from './progress.js';
import { charts, markdown, type SweepPoint } from './report.js';
import {
  Session,
  concurrentUploads,
  idleRss,
  largeFile,
  smallFiles,
  timeToFirstByte,
  type ConcurrentUploadsResult,
  type LargeFileResult,
  type SmallFilesResult,
  type TtfbResult,
} from './scenarios.js';
import type { RssSnapshot } from './procs.js';

const MiB = 1024 * 1024;

export interface Target {
  what: string;
  target: string;
  measured: string;
  limit: string;
  ratio: string;
  met: boolean;
}

export interface BenchResult {
  version: 1;
  mode: 'quick' | 'full';
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: { cpus: number; cpuModel: string; node: string; platform: string; totalMemMiB: number; loadAverageStart: number[]; loadAverageEnd: number[] };
  config: { k: number; m: number; segmentMiB: number; poolMaxThreads: number; poolMinThreads: number; providers: number; clients: number; isolation: 'process'; dataDir: string };
  limits: Limits;
  idleRss: { fresh: RssSnapshot; after: RssSnapshot };
  /** The default configuration (`npm start`: every actor a thread of one process), idle after start and after a transfer. */
  idleRssThreads: { fresh: RssSnapshot; afterTransfer: RssSnapshot; transferMiB: number };
  largeFiles: LargeFileResult[];
  timeToFirstByte: TtfbResult;
  concurrentUploads: ConcurrentUploadsResult;
  smallFiles: SmallFilesResult[];
  finality: FinalityResult;
  sweeps: { fileMiB: number; runs: number; poolSize: SweepPoint[]; segmentSize: SweepPoint[]; erasure: SweepPoint[] } | null;
  profile: { note: string; processes: ProfileSummary[] } | null;
  targets: Target[];
}

interface Plan {
  quick: boolean;
  largeMiB: number[];
  warmupMiB: number;
  ttfbProbes: number;
  concurrent: { requests: number; sizeMiB: number };
  small: { levels: number[]; count: number; seconds: number; fileBytes: number };
  finality: { levels: number[]; secondsPerLevel: number; maxTxPerLevel: number };
  settleMs: number;
  /** Each point: a fresh cluster, then `runs` uploads and downloads of fileMiB; the median counts. */
  sweep: null | { fileMiB: number; runs: number; pool: number[]; segmentMiB: number[]; erasure: [number, number][] };
  cpuProf: null | { fileMiB: number };
}

function plan(argv: string[]): { plan: Plan; out: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      sweep: { type: 'boolean' },
      'no-sweep': { type: 'boolean', default: false },
      out: { type: 'string', default: 'bench-results' },
      'cpu-prof': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const quick = values.quick === true;
  const sweep = values['no-sweep'] ? false : (values.sweep ?? !quick);
  const p: Plan = quick
    ? {
        quick,
        largeMiB: [16],
        warmupMiB: 4,
        ttfbProbes: 3,
        concurrent: { requests: 8, sizeMiB: 8 },
        small: { levels: [8, 64], count: 300, seconds: 4, fileBytes: 4096 },
        finality: { levels: [1, 16, 64], secondsPerLevel: 1.5, maxTxPerLevel: 1500 },
        settleMs: 1000,
        sweep: sweep ? { fileMiB: 16, runs: 1, pool: [1, 2, 3, 4], segmentMiB: [1, 2, 4, 8, 16], erasure: [[2, 1], [4, 2], [8, 4]] } : null,
        cpuProf: values['cpu-prof'] ? { fileMiB: 64 } : null,
      }
    : {
        quick,
        largeMiB: [64, 256, 1024],
        warmupMiB: 8,
        ttfbProbes: 5,
        concurrent: { requests: 8, sizeMiB: 64 },
        small: { levels: [1, 8, 16, 64], count: 3000, seconds: 10, fileBytes: 4096 },
        finality: { levels: [1, 16, 64], secondsPerLevel: 8, maxTxPerLevel: 12000 },
        settleMs: 3000,
        sweep: sweep ? { fileMiB: 256, runs: 3, pool: [1, 2, 3, 4], segmentMiB: [1, 2, 4, 8, 16], erasure: [[2, 1], [4, 2], [8, 4]] } : null,
        cpuProf: values['cpu-prof'] ? { fileMiB: 512 } : null,
      };
  return { plan: p, out: resolve(values.out!) };
}

function actorFlag(cluster: BenchCluster, id: string, flag: string): string | undefined {
  const pid = cluster.procs.actors.get(id);
  if (pid === undefined) return undefined;
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

function timestamp(d: Date): string {
  return d.toISOString().replace(/[:]/g, '-').replace(/\..*$/, '');
}

async function sweepPoint(p: Plan, args: string[], k: number, m: number, value: number, limits: Limits, note: (f: number, s: string) => void): Promise<SweepPoint> {
  const fileMiB = p.sweep!.fileMiB;
  const point: SweepPoint = {
    value,
    k,
    m,
    uploadMBps: 0,
    downloadMBps: 0,
    uploadRunsMBps: [],
    downloadRunsMBps: [],
    uploadLimitMBps: limits.floors.upload[`${k}+${m}`]?.limitMBps ?? 0,
    clientPeakRssMiB: 0,
    clusterIdleRssMiB: 0,
  };
  let cluster: BenchCluster | undefined;
  let s: Session | undefined;
  try {
    cluster = await startBenchCluster({ args: ['--clients', '1', ...args], timeoutMs: 120_000 });
    s = new Session(cluster);
    await s.signUp();
    await largeFile(s, Math.min(4, fileMiB), () => undefined); // warm the pool and connections
    point.clusterIdleRssMiB = (await idleRss(cluster, 500)).totalMiB;
    const runs = p.sweep!.runs;
    for (let i = 0; i < runs; i++) {
      const r = await largeFile(s, fileMiB, (f, text) => note((i + f) / runs, text));
      point.uploadRunsMBps.push(r.upload.MBps);
      point.downloadRunsMBps.push(r.download.MBps);
      point.clientPeakRssMiB = Math.max(point.clientPeakRssMiB, r.upload.rss.clientPeakMiB, r.download.rss.clientPeakMiB);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    point.uploadMBps = median(point.uploadRunsMBps);
    point.downloadMBps = median(point.downloadRunsMBps);
  } catch (err) {
    point.error = (err as Error).message.split('\n')[0]!.slice(0, 200);
  } finally {
    s?.close();
    await cluster?.stop();
  }
  return point;
}

function targets(r: Omit<BenchResult, 'targets'>): Target[] {
  const km = `${r.config.k}+${r.config.m}`;
  const upLimit = r.limits.floors.upload[km]?.limitMBps ?? 0;
  const downLimit = r.limits.floors.download['2+1']!.limitMBps;
  const ratio = (a: number, b: number) => (b > 0 ? `${Math.round((a / b) * 100)} %` : '–');
  // A floor below the target says no pipeline could meet it on this machine in this run.
  const floor = (limit: number, target: number) => `${limit} MB/s${limit < target ? ', below the target: out of reach on this machine in this run' : ''}`;
  const biggest = r.largeFiles[r.largeFiles.length - 1]!;
  const sizeNote = biggest.sizeMiB === 1024 ? '1 GiB' : `${biggest.sizeMiB} MiB file, quick mode`;
  const small = (c: number) => r.smallFiles.find((s) => s.concurrency === c);
  const s8 = small(8);
  const s64 = small(64);
  const c = r.concurrentUploads;
  const growth = Math.max(biggest.upload.rss.clientGrowthMiB, biggest.download.rss.clientGrowthMiB);
  const out: Target[] = [
    { what: 'upload, one 1 GiB file', target: '≥ 225 MB/s', measured: `${biggest.upload.MBps} MB/s (${sizeNote})`, limit: floor(upLimit, 225), ratio: ratio(biggest.upload.MBps, upLimit), met: biggest.upload.MBps >= 225 },
    { what: 'download, one 1 GiB file', target: '≥ 400 MB/s', measured: `${biggest.download.MBps} MB/s (${sizeNote})`, limit: floor(downLimit, 400), ratio: ratio(biggest.download.MBps, downLimit), met: biggest.download.MBps >= 400 },
  ];
  const mbox = `mailbox TLS-PSK ${r.limits.mailbox.tlsPsk.smallRequestsPerSec} small req/s; disk ${r.limits.lmdb.durableCommitsPerSec} durable commits/s`;
  if (s8) out.push({ what: '4 KiB uploads, concurrency 8', target: '≥ 500 /s', measured: `${s8.uploadsPerSec} /s`, limit: mbox, ratio: '–', met: s8.uploadsPerSec >= 500 });
  if (s64) out.push({ what: '4 KiB uploads, concurrency 64', target: '≥ 1,500 /s', measured: `${s64.uploadsPerSec} /s`, limit: mbox, ratio: '–', met: s64.uploadsPerSec >= 1500 });
  if (s8) out.push({ what: '4 KiB downloads, concurrency 8', target: '≥ 1,500 /s', measured: `${s8.downloadsPerSec} /s`, limit: mbox, ratio: '–', met: s8.downloadsPerSec >= 1500 });
  if (s64) out.push({ what: '4 KiB downloads, concurrency 64', target: '≥ 1,500 /s', measured: `${s64.downloadsPerSec} /s`, limit: mbox, ratio: '–', met: s64.downloadsPerSec >= 1500 });
  out.push({
    what: `${c.requests} concurrent ${c.sizeMiB} MiB uploads`,
    target: '≥ 225 MB/s aggregate, none starved (slowest ≤ 2× fastest, no errors)',
    measured: `${c.aggregateMBps} MB/s; fastest ${c.fastestSeconds} s, slowest ${c.slowestSeconds} s; ${c.errors} errors`,
    limit: floor(upLimit, 225),
    ratio: ratio(c.aggregateMBps, upLimit),
    met: c.aggregateMBps >= 225 && c.errors === 0 && c.slowestSeconds <= 2 * c.fastestSeconds,
  });
  const t = r.idleRssThreads;
  out.push({
    what: 'whole cluster RSS idle (3 SPs + 2 clients + supervisor)',
    target: '≤ 400 MiB',
    measured: `default thread isolation: ${t.fresh.totalMiB} MiB after start; after ${t.transferMiB} MiB up and down ${t.afterTransfer.totalMiB} MiB, of which ${t.afterTransfer.anonMiB} MiB not LMDB's mapped file pages; process isolation: ${r.idleRss.fresh.totalMiB} MiB after start, ${r.idleRss.after.anonMiB} MiB (without file pages) after the scenarios`,
    limit: '–',
    ratio: '–',
    met: t.fresh.totalMiB <= 400 && t.afterTransfer.anonMiB <= 400,
  });
  out.push({ what: `client RSS growth during a 1 GiB transfer`, target: '< 100 MiB', measured: `${growth} MiB (${sizeNote}; peak ${Math.max(biggest.upload.rss.clientPeakMiB, biggest.download.rss.clientPeakMiB)} MiB)`, limit: '–', ratio: '–', met: growth < 100 });
  out.push({ what: 'time to first byte of a download of a 1 GiB file', target: '≤ 20 ms', measured: `${r.timeToFirstByte.firstByteMsMedian} ms median (${r.timeToFirstByte.sizeMiB} MiB file)`, limit: '–', ratio: '–', met: r.timeToFirstByte.firstByteMsMedian <= 20 });
  const f256 = r.largeFiles.find((f) => f.sizeMiB === 256);
  if (f256) {
    const peak = Math.max(f256.upload.rss.clientPeakMiB, f256.download.rss.clientPeakMiB);
    out.push({ what: '256 MiB up and down, client RSS (issue 2)', target: '< 300 MiB', measured: `${peak} MiB peak (${f256.upload.MBps} / ${f256.download.MBps} MB/s)`, limit: '–', ratio: '–', met: peak < 300 });
  }
  return out;
}

async function main(): Promise<void> {
  const { plan: p, out } = plan(process.argv.slice(2));
  const startedAt = new Date();
  const dir = join(out, timestamp(startedAt));
  mkdirSync(dir, { recursive: true });
  const loadAverageStart = loadavg().map((x) => Math.round(x * 100) / 100);

  const sweepCount = p.sweep ? p.sweep.pool.length + p.sweep.segmentMiB.length + p.sweep.erasure.length : 0;
  const steps = 1 + 2 + p.largeMiB.length + 1 + 1 + p.small.levels.length + 1 + 1 + 1 + sweepCount + (p.cpuProf ? 1 : 0);
  const progress = new Progress(steps);
  const step = (name: string) => {
    if (exiting) throw new Error('interrupted');
    progress.step(name);
  };
  const note = (f: number, s: string) => progress.update(f, s);

  step('machine limits');
  const limits = await measureLimits(p.quick, (what) => progress.update(0, what));
  progress.done(`AES ${limits.aes256GcmMBps}, SHA-256 ${limits.sha256MBps}, shard hash ${limits.shardHashMBps}, RS 2+1 ${limits.codec.rsEncode2p1}, TLS-PSK ${limits.mailbox.tlsPsk.uploadMBps}, LMDB w ${limits.lmdb.writeSyncMBps} MB/s; floors up ${limits.floors.upload['2+1']!.limitMBps} / down ${limits.floors.download['2+1']!.limitMBps} MB/s`);

  step('start cluster (3 SPs, 2 clients, process isolation)');
  const cluster = await startBenchCluster({ timeoutMs: 120_000 });
  let result: Omit<BenchResult, 'targets' | 'sweeps' | 'profile' | 'finishedAt' | 'durationSeconds' | 'machine' | 'idleRssThreads'> | undefined;
  const s = new Session(cluster);
  try {
    const clusterFile = JSON.parse(readFileSync(join(cluster.dataDir, 'cluster.json'), 'utf8')) as { k: number; m: number; segmentSize: number; providers: unknown[] };
    const config: BenchResult['config'] = {
      k: clusterFile.k,
      m: clusterFile.m,
      segmentMiB: clusterFile.segmentSize / MiB,
      poolMaxThreads: Number(actorFlag(cluster, 'client1', '--pool-max-threads') ?? 0),
      poolMinThreads: Number(actorFlag(cluster, 'client1', '--pool-min-threads') ?? 0),
      providers: clusterFile.providers.length,
      clients: cluster.clients.length,
      isolation: 'process',
      dataDir: cluster.dataDir,
    };
    await s.signUp();
    const fresh = await idleRss(cluster, p.settleMs);
    progress.done(`${cluster.clients.length} clients, idle RSS ${fresh.totalMiB} MiB`);

    step(`warm-up (${p.warmupMiB} MiB up and down)`);
    await largeFile(s, p.warmupMiB, note);
    progress.done('ok');

    const large: (LargeFileResult & { id: string })[] = [];
    for (const size of p.largeMiB) {
      step(`large file ${size} MiB`);
      const r = await largeFile(s, size, note);
      large.push(r);
      progress.done(`up ${r.upload.MBps} MB/s, down ${r.download.MBps} MB/s, client RSS peak ${Math.max(r.upload.rss.clientPeakMiB, r.download.rss.clientPeakMiB)} MiB, growth ${Math.max(r.upload.rss.clientGrowthMiB, r.download.rss.clientGrowthMiB)} MiB`);
    }
    const biggest = large[large.length - 1]!;

    step(`time to first byte (${biggest.sizeMiB} MiB file)`);
    const ttfb = await timeToFirstByte(s, biggest.id, biggest.sizeMiB, p.ttfbProbes);
    progress.done(`median ${ttfb.firstByteMsMedian} ms`);

    step(`${p.concurrent.requests} concurrent ${p.concurrent.sizeMiB} MiB uploads`);
    const conc = await concurrentUploads(s, p.concurrent.requests, p.concurrent.sizeMiB, note);
    progress.done(`aggregate ${conc.aggregateMBps} MB/s, fastest ${conc.fastestSeconds} s, slowest ${conc.slowestSeconds} s, ${conc.errors} errors`);

    const small: SmallFilesResult[] = [];
    for (const c of p.small.levels) {
      step(`${p.small.fileBytes} B files at concurrency ${c}`);
      const r = await smallFiles(s, c, p.small, note);
      small.push(r);
      progress.done(`${r.uploadsPerSec} up/s (p99 ${r.uploadP99Ms} ms), ${r.downloadsPerSec} down/s (p99 ${r.downloadP99Ms} ms), errors ${r.uploadErrors}/${r.downloadErrors}`);
    }

    step(`chain finality (${p.finality.levels.join(', ')} submitters)`);
    const finality = await benchFinality(cluster.dataDir, { ...p.finality, onProgress: note });
    progress.done(finality.levels.map((l) => `${l.submitters}: ${l.txPerSec} tx/s p50 ${l.p50Ms} p99 ${l.p99Ms} ms`).join('; '));

    step('idle cluster after the scenarios');
    const after = await idleRss(cluster, p.settleMs);
    progress.done(`${after.totalMiB} MiB`);

    result = {
      version: 1,
      mode: p.quick ? 'quick' : 'full',
      startedAt: startedAt.toISOString(),
      config,
      limits,
      idleRss: { fresh, after },
      largeFiles: large.map(({ id: _id, ...rest }) => rest),
      timeToFirstByte: ttfb,
      concurrentUploads: conc,
      smallFiles: small,
      finality,
    };
  } finally {
    s.close();
    await cluster.stop();
  }

  // The memory target is about the cluster as `npm start` runs it: actors as threads of one process.
  step('idle RSS in the default thread isolation');
  const transferMiB = p.quick ? 8 : 64;
  const threaded = await startBenchCluster({ args: ['--isolation', 'thread'], timeoutMs: 120_000 });
  const ts = new Session(threaded);
  let idleRssThreads: BenchResult['idleRssThreads'];
  try {
    await ts.signUp();
    const fresh = await idleRss(threaded, p.settleMs);
    await largeFile(ts, transferMiB, note);
    idleRssThreads = { fresh, afterTransfer: await idleRss(threaded, p.settleMs), transferMiB };
    progress.done(`${fresh.totalMiB} MiB after start, ${idleRssThreads.afterTransfer.totalMiB} MiB after ${transferMiB} MiB up and down`);
  } finally {
    ts.close();
    await threaded.stop();
  }

  let sweeps: BenchResult['sweeps'] = null;
  if (p.sweep) {
    const sw = p.sweep;
    sweeps = { fileMiB: sw.fileMiB, runs: sw.runs, poolSize: [], segmentSize: [], erasure: [] };
    for (const n of sw.pool) {
      step(`sweep: worker pool ${n} threads`);
      const pt = await sweepPoint(p, ['--pool-min-threads', String(n), '--pool-max-threads', String(n)], 2, 1, n, limits, note);
      sweeps.poolSize.push(pt);
      progress.done(pt.error ?? `up ${pt.uploadMBps}, down ${pt.downloadMBps} MB/s (median; runs up ${pt.uploadRunsMBps.join('/')}, down ${pt.downloadRunsMBps.join('/')})`);
    }
    for (const seg of sw.segmentMiB) {
      step(`sweep: segment size ${seg} MiB`);
      const pt = await sweepPoint(p, ['--segment-size', String(seg * MiB)], 2, 1, seg, limits, note);
      sweeps.segmentSize.push(pt);
      progress.done(pt.error ?? `up ${pt.uploadMBps}, down ${pt.downloadMBps} MB/s (median; runs up ${pt.uploadRunsMBps.join('/')}, down ${pt.downloadRunsMBps.join('/')})`);
    }
    for (const [k, m] of sw.erasure) {
      step(`sweep: k+m ${k}+${m} on ${k + m} SPs`);
      const pt = await sweepPoint(p, ['--providers', String(k + m), '--k', String(k), '--m', String(m)], k, m, k, limits, note);
      sweeps.erasure.push(pt);
      progress.done(pt.error ?? `up ${pt.uploadMBps}, down ${pt.downloadMBps} MB/s (median; runs up ${pt.uploadRunsMBps.join('/')}, down ${pt.downloadRunsMBps.join('/')})`);
    }
  }

  let profile: BenchResult['profile'] = null;
  if (p.cpuProf) {
    step(`CPU profile of a ${p.cpuProf.fileMiB} MiB upload and download`);
    const profDir = join(dir, 'profiles');
    mkdirSync(profDir, { recursive: true });
    const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} ${writePreload(profDir)}`.trim();
    const pc = await startBenchCluster({ args: ['--clients', '1'], env: { NODE_OPTIONS: nodeOptions, CAIRN_BENCH_PROF_DIR: profDir }, timeoutMs: 120_000 });
    const roles = new Map<number, string>([[pc.procs.supervisor, 'supervisor'], ...[...pc.procs.actors].map(([id, pid]) => [pid, id] as [number, string])]);
    const ps = new Session(pc);
    let line = '';
    let resetAt = 0;
    try {
      await ps.signUp();
      await largeFile(ps, 8, () => undefined);
      // Discard what the profilers saw so far (start-up, sign-up, warm-up): profile the transfer.
      await new Promise((r) => setTimeout(r, 300)); // let idle workers write their warm-up slices
      resetAt = Date.now();
      for (const pid of [pc.procs.supervisor, ...pc.procs.actors.values()]) process.kill(pid, 'SIGUSR2');
      const r = await largeFile(ps, p.cpuProf.fileMiB, note);
      line = `up ${r.upload.MBps} MB/s, down ${r.download.MBps} MB/s under the profiler`;
    } finally {
      ps.close();
      await pc.stop();
    }
    const processes = summariseDir(profDir, (pid, tid) => `${roles.get(pid) ?? `pid ${pid}`}${tid === 0 ? ' main thread' : ` worker thread ${tid}`}`, 8, resetAt);
    profile = {
      note: `Self time by function, idle excluded, per process and thread, from one ${p.cpuProf.fileMiB} MiB upload and download on a fresh cluster (1 web client) after a warm-up, until the cluster stopped (${line}). Profiles (open in Chrome DevTools or speedscope): ${profDir}.`,
      processes,
    };
    progress.done(`${processes.length} profiles`);
  }
  progress.finish();

  const finishedAt = new Date();
  const partial: Omit<BenchResult, 'targets'> = {
    ...result!,
    idleRssThreads,
    finishedAt: finishedAt.toISOString(),
    durationSeconds: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
      node: process.versions.node,
      platform: `${process.platform} ${process.arch}`,
      totalMemMiB: Math.round(totalmem() / MiB),
      loadAverageStart,
      loadAverageEnd: loadavg().map((x) => Math.round(x * 100) / 100),
    },
    sweeps,
    profile,
  };
  const full: BenchResult = { ...partial, targets: targets(partial) };
  if (exiting) throw new Error('interrupted');
  const svgs = charts(full);
  for (const [name, svg] of Object.entries(svgs)) writeFileSync(join(dir, name), svg);
  writeFileSync(join(dir, 'result.json'), `${JSON.stringify(full, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), markdown(full, '', Object.keys(svgs)));
  copyFileSync(join(dir, 'result.json'), join(out, 'latest.json'));
  writeFileSync(join(out, 'latest.md'), markdown(full, `${timestamp(startedAt)}/`, Object.keys(svgs)));
  process.stderr.write(`\n${markdownSummary(full)}\nresults: ${dir}/report.md (also ${join(out, 'latest.md')}, latest.json)\n`);
}

function markdownSummary(r: BenchResult): string {
  const rows = r.targets.map((t) => `  ${t.met ? '✓' : '✗'} ${t.what}: ${t.measured} (target ${t.target}${t.limit !== '–' ? `; limit ${t.limit}, ${t.ratio}` : ''})`);
  return [`cairn benchmark (${r.mode}, ${Math.round(r.durationSeconds)} s):`, ...rows].join('\n');
}

let exiting = false;
let stopped: Promise<void> | undefined;
let exitCode = 0;
/** Stops every cluster (once), then exits with the code of the first reason to stop. */
async function bail(code: number, why: string): Promise<never> {
  if (!exiting) {
    exiting = true;
    exitCode = code;
    process.stderr.write(`\n${why}\nstopping the benchmark's clusters…\n`);
    stopped = stopAll();
  }
  await stopped;
  process.exit(exitCode);
}
process.on('SIGINT', () => void bail(130, 'interrupted'));
process.on('SIGTERM', () => void bail(143, 'terminated'));
process.on('SIGHUP', () => void bail(129, 'hung up'));

main().then(
  () => {
    if (!exiting) process.exit(0);
  },
  (err: Error) => void bail(1, `benchmark failed: ${err.stack ?? err.message}`),
);
