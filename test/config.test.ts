/** Configuration layering and validation, and the supervisor's crash-loop limit on real processes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { actorFlags, DEFAULTS, loadActorConfig, loadConfig, parseArgs } from '../src/config/config.js';
import { CairnError } from '../src/errors.js';
import { readClusterFile } from '../src/config/cluster-file.js';
import { freePorts } from '../src/config/free-ports.js';
import { actorPids, CLI, startCluster } from './support/cluster.js';
import { ProcessHost } from '../src/supervisor/process-host.js';
import { Supervisor } from '../src/supervisor/supervisor.js';

describe('configuration', () => {
  it('layers defaults ← file ← environment ← flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-config-'));
    try {
      const file = join(dir, 'c.json');
      writeFileSync(file, JSON.stringify({ providers: 5, pool: { maxThreads: 3, maxQueue: 10 }, k: 3 }));
      const c = loadConfig(parseArgs(['--config', file, '--pool-max-queue', '20']).flags, { CAIRN_POOL_MAX_THREADS: '2', CAIRN_K: '4' });
      assert.equal(c.providers, 5); // file
      assert.equal(c.pool.maxThreads, 2); // environment over file
      assert.equal(c.k, 4);
      assert.equal(c.pool.maxQueue, 20); // flag over file
      assert.equal(c.pool.idleTimeoutMs, DEFAULTS.pool.idleTimeoutMs); // default
      assert.equal(c.cluster, './data/cluster.json');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hands every setting an actor reads to the actors of a cluster, and none of the cluster\'s shape', () => {
    const given = loadConfig(parseArgs(['--http-idle-ms', '7000', '--max-upload-ms', '5000', '--orphan-grace-ms', '9000', '--pool-max-queue', '99', '--pipeline-depth', '3', '--providers', '5', '--k', '3']).flags, {});
    const flags = actorFlags(given);
    assert.ok(!flags.includes('--providers') && !flags.includes('--k') && !flags.includes('--isolation'), flags.join(' '));
    // Whatever the environment holds (here a shape no 3-SP default fits, and another depth), and
    // whatever config file lies in the actor's working directory: the flags alone count.
    const actor = loadActorConfig(parseArgs(flags).flags, { CAIRN_K: '3', CAIRN_M: '2', CAIRN_PIPELINE_DEPTH: '9', CAIRN_CONFIG: '/nonexistent.json' }, new Set());
    assert.equal(actor.pipelineDepth, 3);
    // An actor started with those flags reads what the supervisor read, but for the cluster's shape.
    const shape = ['providers', 'clients', 'providerBasePort', 'clientBasePort', 'isolation', 'k', 'm', 'segmentSize'] as const;
    const without = (c: typeof given) => Object.fromEntries(Object.entries(c).filter(([k]) => !(shape as readonly string[]).includes(k)));
    assert.deepEqual(without(actor), without(given));
    assert.equal(actor.httpIdleMs, 7000);
  });

  it('stops with a message that names the bad key', () => {
    const typo = join(mkdtempSync(join(tmpdir(), 'cairn-config-')), 'typo.json');
    writeFileSync(typo, JSON.stringify({ pool: { maxThread: 9, maxQueue: 80 }, bogusKey: 1, k: 2 }));
    const bad: [string[], Record<string, string>, RegExp][] = [
      [['--pool-max-threads', 'lots'], {}, /pool\.maxThreads \(from --pool-max-threads\) must be a whole number/],
      [[], { CAIRN_PROVIDERS: '0' }, /providers \(from CAIRN_PROVIDERS\) must be between 1 and 64/],
      [['--isolation', 'vm'], {}, /isolation .* must be "thread" or "process"/],
      [['--k', '3', '--m', '1'], {}, /k \+ m \(3\+1\) needs at least that many providers/],
      [['--pool-min-threads', '5', '--pool-max-threads', '2'], {}, /pool\.minThreads \(5\) must not exceed pool\.maxThreads \(2\)/],
      [['--colour', 'blue'], {}, /unknown option --colour/],
      // Repair would delete the shards of an upload still allowed to be recorded.
      [['--max-upload-ms', '60000', '--orphan-grace-ms', '60000'], {}, /orphanGraceMs \(60000\) must exceed maxUploadMs \(60000\)/],
      [['--pipeline-depth', '17'], {}, /pool.maxQueue \(64\) must be at least 4 × pipelineDepth \(68\)/],
      [[], { CAIRN_POOL_MAX_QUEUE: '15' }, /pool.maxQueue \(15\) must be at least 4 × pipelineDepth \(16\)/],
      [[], { CAIRN_ORPHAN_GRACE_MS: '3600000' }, /orphanGraceMs \(3600000\) must exceed maxUploadMs \(43200000\)/],
      [[], { CAIRN_CONFIG: typo }, /config file .* has unknown keys: pool\.maxThread, bogusKey/],
      [['--provider-base-port', '65534'], {}, /providerBasePort 65534 leaves no port for 3 actors/],
      [['--provider-base-port', '17201', '--client-base-port', '17202'], {}, /ports \(17201–17203\) and the web clients' \(17202–17203\) overlap/],
      [['--provider-base-port', '17201', '--lane-base-port', '17203'], {}, /providers' ports \(17201–17203\) and the providers' lane ports \(17203–17205\) overlap/],
      [['--lane-base-port', '65535'], {}, /laneBasePort 65535 leaves no port for 3 actors/],
    ];
    for (const [argv, env, message] of bad) {
      assert.throws(() => loadConfig(parseArgs(argv).flags, env), (err: unknown) => err instanceof CairnError && err.code === 'BAD_CONFIG' && message.test(err.message));
    }
    // An option with no value is refused, not taken as "true" (`--data-dir` alone started a cluster in ./true).
    assert.throws(() => parseArgs(['--data-dir']), /option --data-dir needs a value/);
    assert.throws(() => parseArgs(['--data-dir', '--k', '2']), /option --data-dir needs a value/);
    // Commands with options of their own refuse others: `verify --datadir d2` checked ./data and said ok.
    assert.throws(() => execFileSync(process.execPath, [CLI, 'verify', '--datadir', '/nonexistent'], { stdio: 'pipe', env: { ...process.env, CAIRN_CONFIG: '' } }), /unknown option --datadir \(cairn verify takes --cluster, --data-dir\)/);
    assert.throws(() => execFileSync(process.execPath, [CLI, 'cluster', '-providers', '5'], { stdio: 'pipe', env: { ...process.env, CAIRN_CONFIG: '' } }), /unexpected argument "-providers"/);
    // cairn repair's own option is read as every setting is, before any SP is asked.
    for (const bad of ['10', '1e4', 'soon']) {
      assert.throws(() => execFileSync(process.execPath, [CLI, 'repair', '--data-dir', '/nonexistent', '--wait-ms', bad], { stdio: 'pipe', env: { ...process.env, CAIRN_CONFIG: '' } }), (err: { stderr?: Buffer }) => /BAD_CONFIG: --wait-ms \(milliseconds\) must be (a whole number|between 1000 and 86400000)/.test(String(err.stderr)));
    }
    // A data dir that is a file: said so, without a stack.
    const aFile = join(mkdtempSync(join(tmpdir(), 'cairn-config-')), 'a-file');
    writeFileSync(aFile, 'not a folder');
    assert.throws(() => execFileSync(process.execPath, [CLI, 'cluster', '--data-dir', aFile, '--provider-base-port', '0', '--client-base-port', '0'], { stdio: 'pipe', env: { ...process.env, CAIRN_CONFIG: '' } }), (err: { stderr?: Buffer }) => /BAD_CONFIG: cannot mkdir .*a-file.* \((ENOTDIR|EEXIST)\)/.test(String(err.stderr)) && !/\n\s+at /.test(String(err.stderr)));
  });
});

describe('supervisor', () => {
  it('restarts a crashing actor with backoff and gives up on a crash loop', async () => {
    const lines: string[] = [];
    const supervisor = new Supervisor({
      host: new ProcessHost(),
      maxRestarts: 3,
      windowMs: 60_000,
      backoffMs: 20,
      maxBackoffMs: 100,
      stopGraceMs: 2_000,
      log: (l) => lines.push(l),
    });
    const gaveUp = new Promise<string>((resolve) => supervisor.once('gave-up', resolve));
    // A provider of a cluster that does not exist: a real process that fails at start, every time.
    await assert.rejects(supervisor.start([{ id: 'sp1', role: 'provider', argv: ['--id', 'sp1', '--cluster', '/nonexistent/cluster.json', '--data-dir', '/nonexistent'] }]));
    assert.equal(await gaveUp, 'sp1');
    const status = supervisor.status()[0]!;
    assert.equal(status.restarts, 3);
    assert.equal(status.gaveUp, true);
    assert.ok(lines.some((l) => /restarting in \d+ ms/.test(l)));
    assert.ok(lines.some((l) => /crash loop/.test(l)));
    await supervisor.stop();
  });

  const cases = [
    { isolation: 'process', actor: 'sp2' },
    { isolation: 'thread', actor: 'sp2' },
    { isolation: 'process', actor: 'client1' },
  ] as const;
  for (const { isolation, actor } of cases) {
    it(`stops every actor it started when one cannot start, leaving none running on its own, and says why without a stack (${actor}'s port taken, ${isolation} isolation)`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'cairn-failed-start-'));
      const [base] = await freePorts(1, '127.0.0.1');
      // One actor's port is taken (sp2's, or the web client's): it cannot start; the others start
      // (in processes of their own, or threads).
      const takenPort = actor === 'sp2' ? base! + 1 : base!;
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(takenPort, '127.0.0.1', resolve));
      try {
        const ports = actor === 'sp2' ? ['--provider-base-port', String(base), '--client-base-port', '0'] : ['--provider-base-port', '0', '--client-base-port', String(base)];
        const child = spawn(process.execPath, [CLI, 'cluster', '--data-dir', dataDir, '--isolation', isolation, ...ports, '--clients', '1'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAIRN_CONFIG: '' } });
        let err = '';
        child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        const code = await new Promise<number | null>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`cairn cluster did not give up within 60 s:\n${err}`)), 60_000);
          child.once('exit', (c) => {
            clearTimeout(timer);
            resolve(c);
          });
        });
        assert.notEqual(code, 0, err);
        assert.deepEqual(actorPids(dataDir), [], `no actor of that cluster is left running:\n${err}`);
        assert.match(err, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${takenPort}: listen EADDRINUSE`), 'the taken port is named');
        assert.match(err, new RegExp(`${actor} (could not start|exited)`), 'the actor is named');
        assert.doesNotMatch(err, /unexpected error|\n\s+at /, `a user's mistake, told without a stack:\n${err}`);
      } finally {
        taken.close();
        for (const pid of actorPids(dataDir)) process.kill(pid, 'SIGKILL');
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});

describe('cairn init', () => {
  it('writes a cluster of as many SPs as it is given, k + m checked against them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-init-'));
    try {
      const addresses = ['127.0.0.1:7101', '127.0.0.1:7102', '127.0.0.1:7103', '127.0.0.1:7104', '127.0.0.1:7105'];
      const out = join(dir, 'cluster.json');
      execFileSync(process.execPath, [CLI, 'init', '--providers', addresses.join(','), '--out', out, '--k', '3', '--m', '2'], { stdio: 'pipe', env: { ...process.env, CAIRN_CONFIG: '' } });
      const file = readClusterFile(out);
      assert.deepEqual([file.providers.length, file.k, file.m], [5, 3, 2]);
      assert.throws(() => execFileSync(process.execPath, [CLI, 'init', '--providers', addresses.slice(0, 4).join(','), '--out', join(dir, 'four.json'), '--k', '3', '--m', '2'], { stdio: 'pipe', env: { ...process.env, CAIRN_CONFIG: '' } }), /k \+ m \(3\+2\) needs at least that many providers; providers is 4/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cairn cluster on an existing data dir', () => {
  it("refuses a coding setting that differs from the cluster's, from a flag or the environment, and leaves the cluster file as it was", () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-existing-'));
    try {
      const out = join(dir, 'cluster.json');
      const env = { ...process.env, CAIRN_CONFIG: '' };
      // Four SPs and 3+1: a restart without --providers takes the cluster's four (it was refused as
      // not the default three), and its own k and m pass the shape check against them.
      execFileSync(process.execPath, [CLI, 'init', '--providers', '127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103,127.0.0.1:7104', '--out', out, '--k', '3', '--m', '1'], { stdio: 'pipe', env });
      const before = readFileSync(out, 'utf8');
      const start = (args: string[], extraEnv: Record<string, string> = {}) =>
        execFileSync(process.execPath, [CLI, 'cluster', '--data-dir', dir, '--provider-base-port', '0', '--client-base-port', '0', ...args], { stdio: 'pipe', env: { ...env, ...extraEnv }, timeout: 30_000 });
      assert.throws(() => start(['--k', '1']), /cluster\.json was created with k 3, but --k asks for 1: a cluster's coding is fixed/);
      assert.throws(() => start(['--m', '2', '--k', '1']), /created with k 3, but --k asks for 1/);
      assert.throws(() => start([], { CAIRN_SEGMENT_SIZE: String(1024 * 1024) }), /created with segmentSize 4194304, but CAIRN_SEGMENT_SIZE asks for 1048576/);
      // Its own k and m, given again, are no error (the segment size below is, and it is checked last).
      assert.throws(() => start(['--k', '3', '--m', '1', '--segment-size', '65536']), /created with segmentSize 4194304, but --segment-size asks for 65536/);
      assert.equal(readFileSync(out, 'utf8'), before, 'the cluster file is untouched');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cairn cluster --lane-base-port', () => {
  it("gives each SP the lane port base + its index, open from the start", async () => {
    // Three free ports in a row, so the test asks for exactly the ones it checks.
    let base = 0;
    for (let tries = 0; tries < 20 && base === 0; tries++) {
      const [p] = await freePorts(1, '127.0.0.1');
      const row = await Promise.all([p!, p! + 1, p! + 2].map((port) => portIsFree(port)));
      if (row.every(Boolean)) base = p!;
    }
    assert.ok(base > 0, 'three free ports in a row');
    const cluster = await startCluster({ args: ['--lane-base-port', String(base), '--clients', '1'] });
    try {
      for (const port of [base, base + 1, base + 2]) assert.equal(await portIsFree(port), false, `an SP listens for lanes on ${port}`);
    } finally {
      await cluster.stop();
    }
  });
});

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}
