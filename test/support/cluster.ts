/**
 * Starts a real cairn cluster (`cairn cluster` in a child process) on free ports in a temp dir,
 * waits for its ready line with a deadline, and stops it. Tests talk to it only through its
 * public surfaces: HTTP, mailbox ports, processes and the data directory.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readClusterKey } from '../../src/config/cluster-file.js';
import { MailboxClient } from '../../src/mailbox/client.js';
import { tlsPskTransport } from '../../src/mailbox/transport.js';

export const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

export interface ClusterHandle {
  dataDir: string;
  clients: string[];
  providers: string[];
  child: ChildProcess;
  output: string[];
  stop(): Promise<void>;
}

export async function startCluster(opts: { isolation?: 'thread' | 'process'; args?: string[]; dataDir?: string; timeoutMs?: number } = {}): Promise<ClusterHandle> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'cairn-test-'));
  const args = [CLI, 'cluster', '--data-dir', dataDir, '--provider-base-port', '0', '--client-base-port', '0', '--isolation', opts.isolation ?? 'thread', ...(opts.args ?? [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAIRN_CONFIG: '' } });
  const output: string[] = [];
  const keep = (line: string) => {
    output.push(line);
    if (output.length > 2000) output.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const ready = await readyLine(child, keep, output, opts.timeoutMs ?? 60_000);
  let stopped = false;
  return {
    dataDir,
    ...ready,
    child,
    output,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      // Process-isolated actors are children of the supervisor; make sure none outlives the test.
      for (const pid of actorPids(dataDir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Waits for the `{"event":"ready",…}` line of `cairn cluster`, failing with its last output. */
export function readyLine(child: ChildProcess, keep: (line: string) => void, output: string[], timeoutMs: number): Promise<{ clients: string[]; providers: string[] }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cluster not ready within ${timeoutMs} ms:\n${output.slice(-40).join('\n')}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      if (!line.startsWith('{')) return;
      try {
        const msg = JSON.parse(line) as { event?: string; clients: string[]; providers: string[] };
        if (msg.event === 'ready') {
          clearTimeout(timer);
          resolve(msg);
        }
      } catch {
        /* not the ready line */
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cluster exited with ${code} before it was ready:\n${output.slice(-40).join('\n')}`));
    });
  });
}

/** PIDs of process-isolated actors of the cluster in dataDir (their command line names it). */
export function actorPids(dataDir: string, match = ''): number[] {
  try {
    const out = execFileSync('pgrep', ['-f', `${match}.*--data-dir ${dataDir}`], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).map(Number).filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A mailbox client per SP (`sp1`, `sp2`, …), holding the cluster key as a web client does; close them after. */
export function spClients(cluster: ClusterHandle): Map<string, MailboxClient> {
  const transport = tlsPskTransport(readClusterKey(join(cluster.dataDir, 'cluster.json')));
  return new Map(cluster.providers.map((address, i) => [`sp${i + 1}`, new MailboxClient({ id: 'test', address, transport, requestTimeoutMs: 10_000 })]));
}
