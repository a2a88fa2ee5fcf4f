/**
 * One cluster per data dir, and no orphans: two processes writing one SP's LMDB corrupt its chain
 * on every replica, and keys written over another cluster's leave it unable to start. A second
 * `cairn cluster` or `cairn provider` on a data dir in use is refused, `cairn init` will not write
 * over another cluster's keys, and the actors of a supervisor killed -9 stop on their own, so the
 * next start takes over their stale locks and finds every file.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { startProvider } from '../src/provider/provider.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { actorPids, CLI, startCluster, waitFor, type ClusterHandle } from './support/cluster.js';
import { Api } from './support/http.js';

const env = { ...process.env, CAIRN_CONFIG: '' };

/** Runs a cairn command expected to end on its own; its exit code and all it printed. */
function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cairn ${args.join(' ')} did not end within 60 s:\n${out}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('a data dir in use', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cairn-datadir-'));
  let first: ClusterHandle;
  let second: ClusterHandle | undefined;
  let fileId = '';
  const bytes = randomBytes(300_000);

  before(async () => {
    first = await startCluster({ isolation: 'process', dataDir, args: ['--clients', '1'] });
    const api = new Api(first.clients[0]!);
    assert.equal((await api.register('keeper', 'data dir password')).status, 201);
    assert.equal((await api.signIn('keeper', 'data dir password')).status, 200);
    const up = await api.upload([{ name: 'kept.bin', bytes }]);
    assert.equal(up.status, 201);
    fileId = up.body[0].id;
  });
  after(async () => {
    await first?.stop();
    await second?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a second cluster, a provider by hand and a new cluster over its keys, changing nothing', async () => {
    const clusterFile = readFileSync(join(dataDir, 'cluster.json'), 'utf8');
    const again = await run(['cluster', '--data-dir', dataDir, '--provider-base-port', '0', '--client-base-port', '0', '--clients', '1']);
    assert.notEqual(again.code, 0);
    assert.match(again.out, /BAD_CONFIG: .* is in use by process \d+ \(cairn cluster/);
    const sp1 = await run(['provider', '--id', 'sp1', '--port', '0', '--data-dir', dataDir, '--cluster', join(dataDir, 'cluster.json')]);
    assert.notEqual(sp1.code, 0);
    assert.match(sp1.out, /sp1 is in use by process \d+ \(storage provider sp1/);
    const init = await run(['init', '--providers', '127.0.0.1:1,127.0.0.1:2,127.0.0.1:3', '--out', join(dataDir, 'other.json')]);
    assert.notEqual(init.code, 0);
    assert.match(init.out, /CONFLICT: .*cluster\.key already exists: it belongs to another cluster/);
    assert.equal(readFileSync(join(dataDir, 'cluster.json'), 'utf8'), clusterFile, 'the running cluster file is untouched');
    const api = new Api(first.clients[0]!);
    assert.equal((await api.signIn('keeper', 'data dir password')).status, 200);
    assert.ok((await api.download(fileId)).bytes.equals(bytes), 'the running cluster serves on');
  });

  it('stops its actors when the supervisor is killed -9, and the next start takes over', async () => {
    const actors = actorPids(dataDir).filter((pid) => pid !== first.child.pid);
    assert.equal(actors.length, 4, `three SPs and a client in processes of their own: ${actors}`);
    first.child.kill('SIGKILL');
    await waitFor('every actor of the killed supervisor to stop', () => actorPids(dataDir).length === 0, 30_000);
    second = await startCluster({ isolation: 'process', dataDir, args: ['--clients', '1'] });
    const api = new Api(second.clients[0]!);
    assert.equal((await api.signIn('keeper', 'data dir password')).status, 200);
    assert.ok((await api.download(fileId)).bytes.equals(bytes));
    assert.equal(execFileSync(process.execPath, [CLI, 'verify', '--cluster', join(dataDir, 'cluster.json')], { encoding: 'utf8', env }).includes('FAIL'), false);
  });
});

describe('a start that does not complete', () => {
  it('leaves no actor running when the supervisor is killed while its actors start, and the next start takes over', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-killed-start-'));
    try {
      const child = spawn(process.execPath, [CLI, 'cluster', '--data-dir', dir, '--isolation', 'process', '--provider-base-port', '0', '--client-base-port', '0', '--clients', '1'], { stdio: 'ignore', env });
      // Killed as soon as its actors exist, before they are ready (an actor that started hears of it
      // later through its channel; one still starting had no way to).
      await waitFor('the actors to be started', () => actorPids(dir).filter((pid) => pid !== child.pid).length >= 4, 30_000, 20);
      child.kill('SIGKILL');
      await waitFor('every actor to stop on its own', () => actorPids(dir).length === 0, 30_000);
      const next = await startCluster({ isolation: 'process', dataDir: dir, args: ['--clients', '1'] });
      await next.stop();
    } finally {
      for (const pid of actorPids(dir)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('releases its lock when an SP cannot start (a port taken)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-failed-sp-'));
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      execFileSync(process.execPath, [CLI, 'init', '--providers', `127.0.0.1:${port},127.0.0.1:1,127.0.0.1:2`, '--out', join(dir, 'cluster.json'), '--k', '1', '--m', '0'], { stdio: 'pipe', env });
      await assert.rejects(
        startProvider({ id: 'sp1', port, host: '127.0.0.1', dataDir: dir, clusterFile: join(dir, 'cluster.json'), orphanGraceMs: 60_000, diskReserveBytes: 0, log: () => undefined }),
        (err: unknown) => /cannot listen/.test((err as Error).message),
      );
      assert.equal(existsSync(join(dir, 'sp1', 'provider.lock')), false, 'the lock went with the failed start');
    } finally {
      taken.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
