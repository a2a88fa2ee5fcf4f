#!/usr/bin/env node
/**
 * The `cairn` command: cluster (supervisor), provider, client, init, verify.
 * Errors end the command with their code and message, never a stack trace for a user mistake.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CairnError } from './errors.js';
import { actorFlags, checkFlags, loadConfig, loadConfigWithSources, parseArgs, type Config } from './config/config.js';
import { takeLock } from './dir-lock.js';
import { initCluster, readClusterFile, writeClusterFile } from './config/cluster-file.js';
import { freePorts } from './config/free-ports.js';
import { READY_PREFIX, type ActorReady, type ActorSpec } from './supervisor/actor.js';
import { ProcessHost, SUPERVISED_ENV } from './supervisor/process-host.js';
import { ThreadHost } from './supervisor/thread-host.js';
import { DEFAULT_SUPERVISION, Supervisor } from './supervisor/supervisor.js';
import { applyHeapFlagsToNewIsolates } from './supervisor/heap-flags.js';
import { startRole } from './supervisor/roles.js';
import { repairCommand } from './repair-command.js';
import { verifyCommand } from './verify-command.js';
import { manageHeapWhenIdle } from './idle.js';

const USAGE = `usage:
  cairn cluster [--data-dir D] [--providers N] [--clients N] [--provider-base-port P] [--client-base-port P]
                [--lane-base-port P] [--k K] [--m M] [--isolation thread|process] [--pool-max-threads N] …
  cairn provider --id ID --port P [--lane-port P] --data-dir D --cluster FILE
  cairn client --port P --cluster FILE
  cairn init --providers host:port,… --out FILE [--k K] [--m M]
  cairn verify [--cluster FILE | --data-dir D]
  cairn repair [--cluster FILE | --data-dir D] [--wait-ms MS]`;

/** Ports for each group: base, base+1, … or, for a base of 0, free ones distinct across all groups. */
async function ports(host: string, ...groups: { base: number; count: number }[]): Promise<number[][]> {
  const free = await freePorts(groups.reduce((n, g) => n + (g.base === 0 ? g.count : 0), 0), host);
  return groups.map((g) => Array.from({ length: g.count }, (_, i) => (g.base === 0 ? free.shift()! : g.base + i)));
}

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`cairn: ${signal} received, stopping…`);
    stop().then(
      () => process.exit(0),
      (err: Error) => {
        console.error(`cairn: stop failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
  // An actor in a process of its own has a channel to its supervisor: when the supervisor is
  // gone (even by kill -9), so is the reason to run, and an orphan would keep its ports and LMDB.
  if (process.channel) {
    process.channel.unref();
    process.once('disconnect', () => handler('supervisor gone'));
  }
}

/**
 * The config of `cairn cluster`. A cluster that exists keeps its number of SPs (restarting one of
 * five needs no --providers 5), and the shape checks (k + m against the SPs, port ranges) run
 * with that number.
 */
function loadClusterConfig(flags: Map<string, string>): ReturnType<typeof loadConfigWithSources> {
  const first = loadConfigWithSources(flags, process.env, new Set(), { shape: false });
  if (!existsSync(first.config.cluster) || first.sources.has('providers')) return loadConfigWithSources(flags);
  const stored = String(readClusterFile(first.config.cluster).providers.length);
  const { config, sources } = loadConfigWithSources(new Map([...flags, ['providers', stored]]));
  sources.delete('providers'); // the cluster's own, not asked for
  return { config, sources };
}

/** Creates the cluster file, or checks this start's settings against the existing one and updates its addresses. */
function prepareClusterFile(config: Config, sources: Map<string, string>, addresses: string[]): void {
  if (!existsSync(config.cluster)) {
    initCluster({ out: config.cluster, keyDir: config.dataDir, addresses, k: config.k, m: config.m, segmentSize: config.segmentSize });
  } else {
    const file = readClusterFile(config.cluster);
    if (file.providers.length !== config.providers) {
      throw new CairnError('BAD_CONFIG', `${config.cluster} names ${file.providers.length} providers but --providers is ${config.providers}; use another --data-dir for a different cluster`);
    }
    for (const key of ['k', 'm', 'segmentSize'] as const) {
      const from = sources.get(key);
      if (from !== undefined && config[key] !== file[key]) {
        throw new CairnError('BAD_CONFIG', `${config.cluster} was created with ${key} ${file[key]}, but ${from} asks for ${config[key]}: a cluster's coding is fixed when it is created; leave the setting out, or use another --data-dir for a new cluster`);
      }
    }
    // Addresses are not part of the genesis, so they may follow the ports of this start.
    writeClusterFile(config.cluster, { ...file, providers: file.providers.map((p, i) => ({ id: p.id, address: addresses[i]! })) });
  }
}

async function cluster(flags: Map<string, string>): Promise<void> {
  const { config, sources } = loadClusterConfig(flags);
  const [providerPorts, clientPorts] = (await ports(
    config.host,
    { base: config.providerBasePort, count: config.providers },
    { base: config.clientBasePort, count: config.clients },
  )) as [number[], number[]];
  const addresses = providerPorts.map((p) => `${config.host}:${p}`);
  // Before the cluster file is touched: a second `cairn cluster` on this data dir would rewrite
  // the addresses the running one's actors read when they restart.
  const unlock = takeLock(join(config.dataDir, 'cluster.lock'), 'cairn cluster');
  try {
    prepareClusterFile(config, sources, addresses);
  } catch (err) {
    unlock();
    throw err;
  }
  const shared = actorFlags(config);
  const specs: ActorSpec[] = [
    ...providerPorts.map((port, i) => {
      const lane = config.laneBasePort === 0 ? [] : ['--lane-port', String(config.laneBasePort + i)];
      return { id: `sp${i + 1}`, role: 'provider' as const, argv: ['--id', `sp${i + 1}`, '--port', String(port), ...lane, ...shared] };
    }),
    ...clientPorts.map((port, i) => ({ id: `client${i + 1}`, role: 'client' as const, argv: ['--id', `client${i + 1}`, '--port', String(port), ...shared] })),
  ];
  const supervisor = new Supervisor({
    host: config.isolation === 'process' ? new ProcessHost() : new ThreadHost(),
    ...DEFAULT_SUPERVISION,
    log: (line) => console.error(`cairn: ${line}`),
  });
  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= supervisor.stop().finally(unlock));
  onSignals(stop);
  let ready: ActorReady[];
  try {
    ready = await supervisor.start(specs);
  } catch (err) {
    // An actor that cannot start (a port taken …), or a signal during start-up: the others are
    // stopped before this process exits, never left running on their own.
    await stop();
    throw err;
  }
  const clients = ready.filter((r) => r.role === 'client').map((r) => r.url);
  const providers = ready.filter((r) => r.role === 'provider').map((r) => r.url);
  if (clients[0]) await chainReady(clients[0]);
  for (const url of clients) console.log(`cairn: web client ready at ${url}`);
  console.log(`cairn: ${providers.length} storage providers at ${providers.join(', ')} (${config.isolation} isolation); data in ${config.dataDir}`);
  console.log(JSON.stringify({ event: 'ready', clients, providers }));
}

/** "Ready" means usable: wait (bounded) until the chain has a leader with a majority. */
async function chainReady(client: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await fetch(`${client}/healthz`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error(`cairn: the chain has no leader after ${timeoutMs / 1000} s; writes will fail until a majority of providers is up`);
}

async function role(argv: string[]): Promise<void> {
  // A supervisor gone while this actor starts: nobody will stop it later, so it ends now (what it
  // locked is taken over as stale). Checked again once started, in case it went in between.
  // (After a disconnect the channel is gone, so whether there was one comes from the supervisor.)
  const supervised = process.env[SUPERVISED_ENV] === 'process';
  const orphaned = () => process.exit(1);
  if (supervised) {
    if (!process.connected) orphaned();
    process.once('disconnect', orphaned);
  }
  const running = await startRole(argv);
  process.off('disconnect', orphaned);
  if (supervised && !process.connected) {
    await running.role.stop();
    process.exit(1);
  }
  onSignals(() => running.role.stop());
  console.log(`${READY_PREFIX}${JSON.stringify(running.ready)}`);
}

async function init(flags: Map<string, string>): Promise<void> {
  checkFlags(flags, ['providers', 'out', 'k', 'm', 'segment-size'], 'cairn init');
  const providers = flags.get('providers');
  const out = flags.get('out');
  if (!providers || !out) throw new CairnError('BAD_CONFIG', 'cairn init needs --providers host:port,… and --out FILE');
  const addresses = providers.split(',');
  // Checked against the SPs named here (k + m must not exceed them), not the default count.
  const config = loadConfig(new Map([...[...flags].filter(([k]) => ['k', 'm', 'segment-size'].includes(k)), ['providers', String(addresses.length)]]));
  const file = initCluster({ out, keyDir: dirname(out), addresses, k: config.k, m: config.m, segmentSize: config.segmentSize });
  console.log(`cairn: wrote ${out} (chain ${file.genesis.chainId}, ${file.providers.length} providers); node keys under ${join(dirname(out), '<sp-id>')}`);
}

async function main(): Promise<void> {
  applyHeapFlagsToNewIsolates();
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'cluster' || command === 'provider' || command === 'client') manageHeapWhenIdle();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const { positional, flags } = parseArgs(rest);
  if (positional.length > 0) throw new CairnError('BAD_CONFIG', `unexpected argument ${JSON.stringify(positional[0])}: options are written --name value`);
  switch (command) {
    case 'cluster':
      return cluster(flags);
    case 'provider':
    case 'client':
      return role([command, ...rest]);
    case 'init':
      return init(flags);
    case 'verify':
      process.exitCode = await verifyCommand(flags);
      return;
    case 'repair':
      process.exitCode = await repairCommand(flags);
      return;
    default:
      console.error(USAGE);
      process.exitCode = command === undefined || command === 'help' || command === '--help' ? 0 : 2;
  }
}

main().catch((err: unknown) => {
  const fs = err as { code?: unknown; path?: unknown; syscall?: unknown };
  if (err instanceof CairnError) console.error(`cairn: ${err.code}: ${err.message}`);
  // A path that is not a folder, not writable, on a read-only disk …: the user's to fix, no stack.
  else if (typeof fs.code === 'string' && typeof fs.path === 'string' && typeof fs.syscall === 'string') console.error(`cairn: BAD_CONFIG: cannot ${fs.syscall} ${fs.path} (${fs.code}): check --data-dir, --cluster and --out`);
  else console.error(`cairn: unexpected error: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
