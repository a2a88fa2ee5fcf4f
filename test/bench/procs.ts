/**
 * The processes of a process-isolated cluster and what they cost: resident memory (VmRSS from
 * /proc/<pid>/status, sampled every ~100 ms while a scenario runs) and CPU time (utime + stime
 * from /proc/<pid>/stat, read before and after). Linux only.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const MiB = 1024 * 1024;
const CLOCK_TICKS = 100; // USER_HZ on Linux

export interface ClusterProcs {
  supervisor: number;
  /** role id (sp1, client1, …) → pid */
  actors: Map<string, number>;
}

/** pgrep -f PATTERN, without our own pid. */
export function pgrep(pattern: string): number[] {
  try {
    const out = execFileSync('pgrep', ['-f', '--', pattern], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).map(Number).filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** Finds the supervisor (pid given) and every actor of the cluster whose data dir is dataDir. */
export function clusterProcs(supervisor: number, dataDir: string): ClusterProcs {
  const actors = new Map<string, number>();
  for (const pid of pgrep(`--data-dir ${dataDir} `)) {
    if (pid === supervisor) continue;
    const argv = cmdline(pid);
    const idAt = argv.indexOf('--id');
    if (idAt >= 0 && argv[idAt + 1]) actors.set(argv[idAt + 1]!, pid);
  }
  return { supervisor, actors };
}

/** The web client's pid, found as the brief says: `pgrep -f "client --id client1 .*--data-dir <dir>"`. */
export function clientPid(dataDir: string, id = 'client1'): number | undefined {
  return pgrep(`client --id ${id} .*--data-dir ${dataDir} `)[0];
}

function statusBytes(pid: number, field: 'VmRSS' | 'RssAnon'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)\\s+kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function rssBytes(pid: number): number {
  return statusBytes(pid, 'VmRSS');
}

/** The private part of RSS: heaps and buffers, not file pages such as LMDB's mapped data (which the kernel can drop). */
export function anonRssBytes(pid: number): number {
  return statusBytes(pid, 'RssAnon');
}

/** CPU seconds (user + system) a process has used so far, all its threads. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

export function allPids(p: ClusterProcs): number[] {
  return [p.supervisor, ...p.actors.values()];
}

export interface RssSnapshot {
  totalMiB: number;
  /** RssAnon of every process together: RSS without mapped file pages. */
  anonMiB: number;
  supervisorMiB: number;
  providersMiB: number;
  clientsMiB: number;
  perProcessMiB: Record<string, number>;
}

export function rssSnapshot(p: ClusterProcs): RssSnapshot {
  const per: Record<string, number> = { supervisor: round1(rssBytes(p.supervisor) / MiB) };
  let providers = 0;
  let clients = 0;
  for (const [id, pid] of p.actors) {
    const r = rssBytes(pid) / MiB;
    per[id] = round1(r);
    if (id.startsWith('client')) clients += r;
    else providers += r;
  }
  const supervisor = per.supervisor!;
  const anon = allPids(p).reduce((sum, pid) => sum + anonRssBytes(pid), 0) / MiB;
  return { totalMiB: round1(supervisor + providers + clients), anonMiB: round1(anon), supervisorMiB: supervisor, providersMiB: round1(providers), clientsMiB: round1(clients), perProcessMiB: per };
}

/** /proc's CPU times tick every 10 ms: a tenth of a second tells 0.2 cores from busy. */
const QUIET_SAMPLE_MS = 100;

export interface CpuSnapshot {
  at: number;
  byId: Map<string, number>;
  bench: number;
}

export function cpuSnapshot(p: ClusterProcs): CpuSnapshot {
  const byId = new Map<string, number>([['supervisor', cpuSeconds(p.supervisor)]]);
  for (const [id, pid] of p.actors) byId.set(id, cpuSeconds(pid));
  const u = process.cpuUsage();
  return { at: performance.now(), byId, bench: (u.user + u.system) / 1e6 };
}

export interface CpuUse {
  /** CPU seconds used in the interval by each role. */
  clientSeconds: number;
  providersSeconds: number;
  supervisorSeconds: number;
  benchSeconds: number;
  /** All of them together divided by wall time: how many cores were busy on average. */
  coresBusy: number;
}

/**
 * Resolves once the cluster used at most `maxCores` of CPU over one QUIET_SAMPLE_MS interval, or
 * after maxWaitMs: what is left of earlier work (an abandoned download's prefetch) is done.
 */
export async function waitQuiet(p: ClusterProcs, maxWaitMs: number, maxCores = 0.2): Promise<void> {
  const deadline = Date.now() + maxWaitMs;
  let before = cpuSnapshot(p);
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, QUIET_SAMPLE_MS));
    const now = cpuSnapshot(p);
    const use = cpuBetween(before, now);
    const cores = (use.clientSeconds + use.providersSeconds + use.supervisorSeconds) / ((now.at - before.at) / 1000);
    if (cores <= maxCores) return;
    before = now;
  }
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuUse {
  let client = 0;
  let providers = 0;
  for (const [id, after] of b.byId) {
    if (id === 'supervisor') continue;
    const d = Math.max(0, after - (a.byId.get(id) ?? after));
    if (id.startsWith('client')) client += d;
    else providers += d;
  }
  const supervisor = Math.max(0, (b.byId.get('supervisor') ?? 0) - (a.byId.get('supervisor') ?? 0));
  const bench = b.bench - a.bench;
  const wall = (b.at - a.at) / 1000;
  return {
    clientSeconds: round2(client),
    providersSeconds: round2(providers),
    supervisorSeconds: round2(supervisor),
    benchSeconds: round2(bench),
    coresBusy: wall > 0 ? round2((client + providers + supervisor + bench) / wall) : 0,
  };
}

export interface RssWatch {
  /** Stops sampling and returns what was seen. */
  stop(): RssSeen;
}

export interface RssSeen {
  clientStartMiB: number;
  clientPeakMiB: number;
  clientEndMiB: number;
  clientGrowthMiB: number;
  clusterPeakMiB: number;
  samples: number;
}

/** Samples the client's RSS (and the whole cluster's) every intervalMs until stopped. */
export function watchRss(p: ClusterProcs, clientId = 'client1', intervalMs = 100): RssWatch {
  const client = p.actors.get(clientId);
  const pids = allPids(p);
  const clientNow = () => (client === undefined ? 0 : rssBytes(client));
  const start = clientNow();
  let peak = start;
  let clusterPeak = 0;
  let samples = 0;
  const sample = () => {
    const c = clientNow();
    if (c > peak) peak = c;
    let total = 0;
    for (const pid of pids) total += pid === client ? c : rssBytes(pid);
    if (total > clusterPeak) clusterPeak = total;
    samples += 1;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const end = clientNow();
      return {
        clientStartMiB: round1(start / MiB),
        clientPeakMiB: round1(peak / MiB),
        clientEndMiB: round1(end / MiB),
        clientGrowthMiB: round1((peak - start) / MiB),
        clusterPeakMiB: round1(clusterPeak / MiB),
        samples,
      };
    },
  };
}

export function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
