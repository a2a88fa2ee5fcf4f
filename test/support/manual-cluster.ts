/**
 * A cluster whose every actor is a process of its own started by the test (`cairn init`, then
 * `cairn provider …` and `cairn client …`), so a test can stop, kill -9, edit the disk of and
 * restart one SP while the rest keep running.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { clusterKeyPath, readClusterFile, writeClusterFile } from '../../src/config/cluster-file.js';
import { freePorts } from '../../src/config/free-ports.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLI, waitFor } from './cluster.js';

const READY = '@@cairn-actor-ready ';

interface Actor {
  argv: string[];
  proc: ChildProcess | null;
}

export class ManualCluster {
  readonly output: string[] = [];
  readonly providers = new Map<string, Actor & { address: string }>();
  readonly clients: (Actor & { url: string })[] = [];

  private constructor(readonly dataDir: string) {}

  get clusterFile(): string {
    return join(this.dataDir, 'cluster.json');
  }

  /**
   * @param opts.via  where web clients reach each SP instead of its own address (a test's proxy):
   *   the clients then read a copy of the cluster file with those addresses; SPs still reach each other directly.
   * @param opts.args  for `cairn init`; `providerArgs` and `clientArgs` for each actor of that role (settings of its own host).
   */
  static async create(
    opts: { providers?: number; clients?: number; args?: string[]; providerArgs?: string[]; clientArgs?: string[]; via?: (id: string, address: string, clusterFile: string) => Promise<string> } = {},
  ): Promise<ManualCluster> {
    const c = new ManualCluster(mkdtempSync(join(tmpdir(), 'cairn-manual-')));
    const n = opts.providers ?? 3;
    const clientCount = opts.clients ?? 1;
    const all = await freePorts(n + clientCount, '127.0.0.1');
    const ports = all.slice(0, n);
    const clientPorts = all.slice(n);
    execFileSync(process.execPath, [CLI, 'init', '--providers', ports.map((p) => `127.0.0.1:${p}`).join(','), '--out', c.clusterFile, ...(opts.args ?? [])], { stdio: 'pipe' });
    ports.forEach((port, i) => {
      const id = `sp${i + 1}`;
      c.providers.set(id, { address: `127.0.0.1:${port}`, proc: null, argv: ['provider', '--id', id, '--port', String(port), '--data-dir', c.dataDir, '--cluster', c.clusterFile, ...(opts.providerArgs ?? [])] });
    });
    await Promise.all([...c.providers.keys()].map((id) => c.startProvider(id)));
    const clientsCluster = opts.via ? await c.#clusterFileVia(opts.via) : c.clusterFile;
    for (let i = 0; i < clientCount; i++) {
      const port = clientPorts[i]!;
      c.clients.push({ url: `http://127.0.0.1:${port}`, proc: null, argv: ['client', '--id', `client${i + 1}`, '--port', String(port), '--cluster', clientsCluster, '--data-dir', c.dataDir, ...(opts.clientArgs ?? [])] });
      await c.#start(c.clients[i]!, `client${i + 1}`);
    }
    // Usable means the chain has a leader: wait for it, as `cairn cluster` does before its ready line.
    if (c.clients[0]) await waitFor('a chain leader', async () => (await fetch(`${c.clients[0]!.url}/healthz`)).ok, 30_000);
    return c;
  }

  async #clusterFileVia(via: (id: string, address: string, clusterFile: string) => Promise<string>): Promise<string> {
    const dir = join(this.dataDir, 'clients-view');
    mkdirSync(dir);
    const file = readClusterFile(this.clusterFile);
    const providers = await Promise.all(file.providers.map(async (p) => ({ id: p.id, address: await via(p.id, p.address, this.clusterFile) })));
    writeClusterFile(join(dir, 'cluster.json'), { ...file, providers });
    copyFileSync(clusterKeyPath(this.clusterFile), clusterKeyPath(join(dir, 'cluster.json')));
    return join(dir, 'cluster.json');
  }

  async #start(actor: Actor, name: string): Promise<void> {
    const proc = spawn(process.execPath, [CLI, ...actor.argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAIRN_CONFIG: '' } });
    actor.proc = proc;
    const keep = (line: string) => {
      this.output.push(`[${name}] ${line}`);
      if (this.output.length > 3000) this.output.shift();
    };
    createInterface({ input: proc.stderr! }).on('line', keep);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready in 30 s:\n${this.output.slice(-30).join('\n')}`)), 30_000);
      createInterface({ input: proc.stdout! }).on('line', (line) => {
        keep(line);
        if (line.startsWith(READY)) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before ready:\n${this.output.slice(-30).join('\n')}`));
      });
    });
  }

  startProvider(id: string): Promise<void> {
    return this.#start(this.providers.get(id)!, id);
  }

  pid(id: string): number {
    const pid = this.providers.get(id)?.proc?.pid;
    if (pid === undefined) throw new Error(`${id} is not running`);
    return pid;
  }

  async #end(actor: Actor, signal: NodeJS.Signals): Promise<void> {
    const proc = actor.proc;
    actor.proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  stopProvider(id: string): Promise<void> {
    return this.#end(this.providers.get(id)!, 'SIGTERM');
  }

  killProvider(id: string): Promise<void> {
    return this.#end(this.providers.get(id)!, 'SIGKILL');
  }

  /** SIGSTOP: the SP keeps its sockets but answers nothing — a stalled, slow provider. */
  pauseProvider(id: string): void {
    process.kill(this.pid(id), 'SIGSTOP');
  }

  resumeProvider(id: string): void {
    process.kill(this.pid(id), 'SIGCONT');
  }

  verify(): { code: number; out: string } {
    try {
      return { code: 0, out: execFileSync(process.execPath, [CLI, 'verify', '--data-dir', this.dataDir], { encoding: 'utf8' }) };
    } catch (err) {
      const e = err as { status: number; stdout: string };
      return { code: e.status, out: e.stdout };
    }
  }

  /** `cairn repair --data-dir D [args]`, run as an operator would; killed if it has not ended within `deadlineMs`. */
  async repair(args: string[] = [], deadlineMs = 120_000): Promise<{ code: number; out: string }> {
    const child = spawn(process.execPath, [CLI, 'repair', '--data-dir', this.dataDir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    if (code === null) throw new Error(`cairn repair ${args.join(' ')} did not end within ${deadlineMs} ms:\n${out}`);
    return { code, out };
  }

  async stop(): Promise<void> {
    for (const p of this.providers.values()) {
      try {
        if (p.proc?.pid) process.kill(p.proc.pid, 'SIGCONT'); // a paused SP could not stop
      } catch {
        /* already gone */
      }
    }
    await Promise.all([...this.clients.map((c) => this.#end(c, 'SIGTERM')), ...[...this.providers.values()].map((p) => this.#end(p, 'SIGTERM'))]);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
