/**
 * The benchmark's scenarios against one running cluster, through the HTTP API of client1.
 */
import { randomBytes } from 'node:crypto';
import { KEEP_WARM_MS } from '../../src/idle.js';
import type { BenchCluster } from './bench-cluster.js';
import { percentile } from './chain-bench.js';
import { ChildUploader } from './child-uploader.js';
import { ContentChecker, HttpApi, newTag, smallContent, type UploadOutcome } from './http-load.js';
import { cpuBetween, cpuSnapshot, round1, round2, waitQuiet, rssSnapshot, watchRss, type CpuUse, type RssSeen, type RssSnapshot } from './procs.js';

const MiB = 1024 * 1024;
const SETTLE_SAMPLE_MS = 500;
const STABLE_SAMPLES = 3;
const SETTLE_SLACK_MIB = 2;
const MAX_SETTLE_MS = 15_000;

export type Report = (fraction: number, note: string) => void;

export interface TransferFigures {
  MBps: number;
  seconds: number;
  rss: RssSeen;
  cpu: CpuUse;
  /** CPU seconds per GiB moved, all processes of the cluster (not the benchmark). */
  clusterCpuSecondsPerGiB: number;
}

export interface LargeFileResult {
  sizeMiB: number;
  upload: TransferFigures;
  download: TransferFigures & { headersMs: number; firstByteMs: number; verified: boolean };
}

export interface TtfbResult {
  sizeMiB: number;
  probes: number;
  firstByteMsMedian: number;
  firstByteMsMin: number;
  firstByteMsMax: number;
  headersMsMedian: number;
}

export interface SmallFilesResult {
  concurrency: number;
  fileBytes: number;
  uploads: number;
  uploadErrors: number;
  uploadsPerSec: number;
  uploadP50Ms: number;
  uploadP99Ms: number;
  downloads: number;
  downloadErrors: number;
  downloadsPerSec: number;
  downloadP50Ms: number;
  downloadP99Ms: number;
  clientPeakRssMiB: number;
  /**
   * The cluster's CPU (not the load generator's) per upload while uploading, in ms, net of what
   * the idle cluster spends anyway (heartbeats, probes; `idleCores`, measured just before).
   */
  uploadCpuMsPerUpload: number;
  idleCores: number;
  /** Blocks the chain grew by while uploading, and uploads per block. */
  blocks: number;
  txPerBlock: number;
  firstError?: string;
}

export interface ConcurrentUploadsResult {
  requests: number;
  sizeMiB: number;
  errors: number;
  seconds: number;
  aggregateMBps: number;
  fastestSeconds: number;
  slowestSeconds: number;
  fastestMBps: number;
  slowestMBps: number;
  rss: RssSeen;
  cpu: CpuUse;
}

export class Session {
  readonly api: HttpApi;
  readonly username = `bench${randomBytes(4).toString('hex')}`;
  readonly password = `bench password ${randomBytes(6).toString('hex')}`;
  constructor(readonly cluster: BenchCluster) {
    this.api = new HttpApi(cluster.clients[0]!);
  }
  async signUp(): Promise<void> {
    await this.api.signUp(this.username, this.password);
  }
  close(): void {
    this.api.close();
  }
}

/** CPU seconds of every process of the cluster: not the benchmark's own. */
function clusterSeconds(use: CpuUse): number {
  return use.clientSeconds + use.providersSeconds + use.supervisorSeconds;
}

function transfer(bytes: number, seconds: number, rss: RssSeen, cpu: CpuUse): TransferFigures {
  const clusterCpu = clusterSeconds(cpu);
  return {
    MBps: Math.round(bytes / seconds / 1e6),
    seconds: Math.round(seconds * 1000) / 1000,
    rss,
    cpu,
    clusterCpuSecondsPerGiB: Math.round((clusterCpu / (bytes / 1024 ** 3)) * 100) / 100,
  };
}

/** Uploads then downloads (checking every byte) one generated file of sizeMiB. */
export async function largeFile(s: Session, sizeMiB: number, report: Report): Promise<LargeFileResult & { id: string }> {
  const size = sizeMiB * MiB;
  const tag = newTag();
  const procs = s.cluster.procs;
  let watch = watchRss(procs);
  let cpu0 = cpuSnapshot(procs);
  const up = await s.api.uploadGenerated(`large-${sizeMiB}MiB.bin`, size, tag, (b) => report((b / size) * 0.5, `up ${Math.round(b / MiB)}/${sizeMiB} MiB`));
  let cpu1 = cpuSnapshot(procs);
  const upRss = watch.stop();
  if (up.status !== 201 || !up.id) throw new Error(`upload of ${sizeMiB} MiB failed: ${up.status} ${up.error ?? ''}`);
  const upload = transfer(size, up.seconds, upRss, cpuBetween(cpu0, cpu1));

  watch = watchRss(procs);
  cpu0 = cpuSnapshot(procs);
  const check = new ContentChecker(tag, size);
  const down = await s.api.downloadLean(up.id, { check, onProgress: (b) => report(0.5 + (b / size) * 0.5, `down ${Math.round(b / MiB)}/${sizeMiB} MiB`) });
  cpu1 = cpuSnapshot(procs);
  const downRss = watch.stop();
  if (down.status !== 200 || !down.ok) throw new Error(`download of ${sizeMiB} MiB failed or differs: ${down.status} ${down.error ?? ''} (${down.bytes} bytes)`);
  return {
    id: up.id,
    sizeMiB,
    upload,
    download: {
      ...transfer(size, down.seconds, downRss, cpuBetween(cpu0, cpu1)),
      headersMs: round1(down.headersMs),
      firstByteMs: round1(down.firstByteMs),
      verified: check.ok,
    },
  };
}

/** Time to first byte of a download of a stored file: `probes` requests abandoned after their first bytes. */
export async function timeToFirstByte(s: Session, id: string, sizeMiB: number, probes: number): Promise<TtfbResult> {
  const first: number[] = [];
  const headers: number[] = [];
  for (let i = 0; i < probes; i++) {
    const r = await s.api.download(id, { stopAfterFirstByte: true });
    if (r.status !== 200 || r.bytes === 0) throw new Error(`first-byte probe failed: ${r.status} ${r.error ?? ''}`);
    first.push(r.firstByteMs);
    headers.push(r.headersMs);
    await waitQuiet(s.cluster.procs, 3_000); // the abandoned download's prefetch winds down first
  }
  first.sort((a, b) => a - b);
  headers.sort((a, b) => a - b);
  return {
    sizeMiB,
    probes,
    firstByteMsMedian: round1(percentile(first, 50)),
    firstByteMsMin: round1(first[0]!),
    firstByteMsMax: round1(first[first.length - 1]!),
    headersMsMedian: round1(percentile(headers, 50)),
  };
}

const IDLE_SAMPLE_MS = 1_000;

/** What the cluster spends with nothing to do (heartbeats, probes, timers), in cores: a second's sample once the last work has wound down. */
async function idleCpu(s: Session): Promise<number> {
  await waitQuiet(s.cluster.procs, 5_000);
  const before = cpuSnapshot(s.cluster.procs);
  await new Promise((r) => setTimeout(r, IDLE_SAMPLE_MS));
  const after = cpuSnapshot(s.cluster.procs);
  return clusterSeconds(cpuBetween(before, after)) / ((after.at - before.at) / 1000);
}

/** The chain's final height as the web client sees it. */
async function chainHeight(s: Session): Promise<number> {
  const r = await s.api.json<{ height: number }>('GET', '/api/v1/chain');
  if (r.status !== 200 || typeof r.body?.height !== 'number') throw new Error(`GET /api/v1/chain answered ${r.status}`);
  return r.body.height;
}

/** Small files at a concurrency: uploads (bounded by count and time), then downloads of them. */
export async function smallFiles(s: Session, concurrency: number, opts: { count: number; seconds: number; fileBytes: number }, report: Report): Promise<SmallFilesResult> {
  const watch = watchRss(s.cluster.procs);
  const ids: { id: string; tag: bigint }[] = [];
  const upLat: number[] = [];
  let uploadErrors = 0;
  let firstError: string | undefined;
  let taken = 0;
  const idleCores = await idleCpu(s);
  const height0 = await chainHeight(s);
  const cpu0 = cpuSnapshot(s.cluster.procs);
  let started = performance.now();
  let until = started + opts.seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (taken < opts.count && performance.now() < until) {
        const n = taken++;
        const tag = newTag();
        const r = await s.api.uploadSmall(`small-${n}.bin`, smallContent(tag, opts.fileBytes));
        if (r.status === 201 && r.id) {
          ids.push({ id: r.id, tag });
          upLat.push(r.seconds * 1000);
        } else {
          uploadErrors += 1;
          firstError ??= `upload: ${r.status} ${r.error ?? ''}`;
        }
        report(0.5 * Math.max(taken / opts.count, (performance.now() - started) / (opts.seconds * 1000)), `c${concurrency} ${ids.length} up`);
      }
    }),
  );
  const upSeconds = (performance.now() - started) / 1000;
  const upCpu = cpuBetween(cpu0, cpuSnapshot(s.cluster.procs));
  const blocks = (await chainHeight(s)) - height0;

  const downLat: number[] = [];
  let downloadErrors = 0;
  let done = 0;
  taken = 0;
  started = performance.now();
  until = started + opts.seconds * 1000;
  const target = Math.min(opts.count, Math.max(ids.length, 1) * 4); // each file read up to 4 times
  if (ids.length > 0) {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (taken < target && performance.now() < until) {
          const f = ids[taken++ % ids.length]!;
          const check = new ContentChecker(f.tag, opts.fileBytes);
          const r = await s.api.download(f.id, { check });
          if (r.status === 200 && r.ok) downLat.push(r.seconds * 1000);
          else {
            downloadErrors += 1;
            firstError ??= `download: ${r.status} ${r.error ?? 'content differs'}`;
          }
          done += 1;
          report(0.5 + 0.5 * Math.max(done / target, (performance.now() - started) / (opts.seconds * 1000)), `c${concurrency} ${downLat.length} down`);
        }
      }),
    );
  }
  const downSeconds = (performance.now() - started) / 1000;
  const rss = watch.stop();
  upLat.sort((a, b) => a - b);
  downLat.sort((a, b) => a - b);
  const result: SmallFilesResult = {
    concurrency,
    fileBytes: opts.fileBytes,
    uploads: upLat.length,
    uploadErrors,
    uploadsPerSec: Math.round(upLat.length / upSeconds),
    uploadP50Ms: round1(percentile(upLat, 50)),
    uploadP99Ms: round1(percentile(upLat, 99)),
    downloads: downLat.length,
    downloadErrors,
    downloadsPerSec: Math.round(downLat.length / downSeconds),
    downloadP50Ms: round1(percentile(downLat, 50)),
    downloadP99Ms: round1(percentile(downLat, 99)),
    clientPeakRssMiB: rss.clientPeakMiB,
    uploadCpuMsPerUpload: upLat.length > 0 ? round2((Math.max(0, clusterSeconds(upCpu) - idleCores * upSeconds) * 1000) / upLat.length) : 0,
    idleCores: round2(idleCores),
    blocks,
    txPerBlock: blocks > 0 ? round1(upLat.length / blocks) : 0,
  };
  if (firstError !== undefined) result.firstError = firstError;
  return result;
}

/** `requests` uploads of sizeMiB each, all at once, each from its own process started beforehand. */
export async function concurrentUploads(s: Session, requests: number, sizeMiB: number, report: Report): Promise<ConcurrentUploadsResult> {
  const size = sizeMiB * MiB;
  let finished = 0;
  const children = Array.from({ length: requests }, (_, i) => new ChildUploader(s.cluster.clients[0]!, s.api.token ?? '', `concurrent-${i}.bin`, size));
  try {
    await Promise.all(children.map((c) => c.ready));
  } catch (err) {
    for (const c of children) c.stop();
    throw err;
  }
  const watch = watchRss(s.cluster.procs);
  const cpu0 = cpuSnapshot(s.cluster.procs);
  const started = performance.now();
  const outcomes = await Promise.all(
    children.map(async (child) => {
      const outcome = await child.go().catch((err: Error): UploadOutcome => ({ status: 0, id: undefined, block: undefined, bytes: size, seconds: 0, error: err.message }));
      report(++finished / requests, `${requests}× ${sizeMiB} MiB`);
      // From the common start: a request that could not even begin counts as waiting.
      return { ...outcome, seconds: (performance.now() - started) / 1000 };
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuBetween(cpu0, cpuSnapshot(s.cluster.procs));
  const rss = watch.stop();
  const ok = outcomes.filter((o) => o.status === 201);
  const times = ok.map((o) => o.seconds).sort((a, b) => a - b);
  const fastest = times[0] ?? 0;
  const slowest = times[times.length - 1] ?? 0;
  const errors = outcomes.length - ok.length;
  if (errors === outcomes.length) throw new Error(`every concurrent upload failed: ${outcomes[0]?.status} ${outcomes[0]?.error ?? ''}`);
  return {
    requests,
    sizeMiB,
    errors,
    seconds: Math.round(seconds * 1000) / 1000,
    aggregateMBps: Math.round((ok.length * size) / seconds / 1e6),
    fastestSeconds: Math.round(fastest * 1000) / 1000,
    slowestSeconds: Math.round(slowest * 1000) / 1000,
    fastestMBps: fastest > 0 ? Math.round(size / fastest / 1e6) : 0,
    slowestMBps: slowest > 0 ? Math.round(size / slowest / 1e6) : 0,
    rss,
    cpu,
  };
}

/**
 * The cluster's idle RSS: after KEEP_WARM_MS and settleMs of quiet, sampled until it has stopped
 * falling for STABLE_SAMPLES samples in a row (bounded by MAX_SETTLE_MS). The processes give
 * memory back a second or so after KEEP_WARM_MS without work (src/idle.ts), later on a slow
 * stretch; a fixed wait sometimes sampled before that (one run read 564 MiB where the others read
 * 410-432).
 */
export async function idleRss(cluster: BenchCluster, settleMs: number): Promise<RssSnapshot> {
  await new Promise((r) => setTimeout(r, KEEP_WARM_MS + settleMs));
  const deadline = Date.now() + MAX_SETTLE_MS;
  let last = rssSnapshot(cluster.procs);
  let low = last.totalMiB;
  for (let stable = 0; stable < STABLE_SAMPLES && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, SETTLE_SAMPLE_MS));
    last = rssSnapshot(cluster.procs);
    stable = last.totalMiB < low - SETTLE_SLACK_MIB ? 0 : stable + 1;
    low = Math.min(low, last.totalMiB);
  }
  return last; // the latest sample, not the lowest: a rise after settling counts
}
