/**
 * A cluster for the benchmark: `cairn cluster --isolation process` in a child process on free
 * ports, in a fresh temp data dir. Unlike the test harness it cleans up on every path — a start
 * that fails or times out kills the supervisor and every actor of that data dir and removes the
 * dir — and every started cluster is tracked so a signal or a crash of the benchmark stops them all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { clusterProcs, pgrep, type ClusterProcs } from './procs.js';
import { readyLine } from '../support/cluster.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

export interface BenchCluster {
  dataDir: string;
  clients: string[];
  providers: string[];
  child: ChildProcess;
  procs: ClusterProcs;
  args: string[];
  output: string[];
  stop(): Promise<void>;
}

const live = new Set<BenchCluster>();
const starting = new Map<ChildProcess, string>();
let shuttingDown = false;

/** Stops every cluster still running or starting (on a signal or a failure); no new one starts after. */
export async function stopAll(): Promise<void> {
  shuttingDown = true;
  for (const [child, dataDir] of starting) {
    killTree(child, dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  }
  await Promise.allSettled([...live].map((c) => c.stop()));
}

function killTree(child: ChildProcess, dataDir: string): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const pid of pgrep(`--data-dir ${dataDir} `)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export async function startBenchCluster(opts: { args?: string[]; env?: NodeJS.ProcessEnv; timeoutMs?: number; keepDir?: boolean } = {}): Promise<BenchCluster> {
  if (shuttingDown) throw new Error('the benchmark is stopping');
  const dataDir = mkdtempSync(join(tmpdir(), 'cairn-bench-'));
  const args = ['cluster', '--data-dir', dataDir, '--provider-base-port', '0', '--client-base-port', '0', '--isolation', 'process', ...(opts.args ?? [])];
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CAIRN_CONFIG: '', ...(opts.env ?? {}) },
  });
  starting.set(child, dataDir);
  const output: string[] = [];
  const keep = (line: string) => {
    output.push(line);
    if (output.length > 500) output.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const timeoutMs = opts.timeoutMs ?? 90_000;
  let ready: { clients: string[]; providers: string[] };
  try {
    ready = await readyLine(child, keep, output, timeoutMs);
    if (shuttingDown) throw new Error('the benchmark is stopping');
  } catch (err) {
    starting.delete(child);
    killTree(child, dataDir);
    if (!opts.keepDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  starting.delete(child);
  let stopping: Promise<void> | undefined;
  const cluster: BenchCluster = {
    dataDir,
    ...ready,
    child,
    procs: clusterProcs(child.pid!, dataDir),
    args,
    output,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
          await exited;
          clearTimeout(timer);
        }
        // The supervisor stops its actors; whatever is left of this data dir is killed.
        killTree(child, dataDir);
        if (!opts.keepDir) rmSync(dataDir, { recursive: true, force: true });
        live.delete(cluster);
      })();
      return stopping;
    },
  };
  live.add(cluster);
  return cluster;
}
