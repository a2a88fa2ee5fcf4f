/**
 * Configuration: built-in defaults ← config file ← CAIRN_* environment ← command-line flags.
 * One table describes every setting once (its flag, its variable, its bounds), so the four
 * sources cannot drift apart, and a bad value stops start-up with a message naming the key.
 */
import { readFileSync, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { LIMITS } from '../chain/tx.js';
import { TAG_BYTES } from '../codec/segment-seal.js';
import { CairnError } from '../errors.js';

export interface PoolSettings {
  minThreads: number;
  maxThreads: number;
  idleTimeoutMs: number;
  maxQueue: number;
  concurrentTasksPerWorker: number;
}

export interface Config {
  dataDir: string;
  cluster: string; // cluster file; default <dataDir>/cluster.json
  providers: number;
  clients: number;
  providerBasePort: number;
  clientBasePort: number;
  /** The SPs' lane ports (base, base+1, …); 0: any free one each, opened at the first lane. */
  laneBasePort: number;
  host: string;
  isolation: 'thread' | 'process';
  k: number;
  m: number;
  segmentSize: number;
  maxUploadBytes: number;
  /** An upload still unrecorded after this long fails, so its shards can be told from garbage. */
  maxUploadMs: number;
  /** Shards no final record names are deleted by repair once older than this (> maxUploadMs). */
  orphanGraceMs: number;
  /** An SP refuses new shards that would leave less free space than this on its disk: the chain keeps room to write. */
  diskReserveBytes: number;
  pipelineDepth: number;
  /** A web client closes a connection on which no byte moved this long (a stalled sender or reader). */
  httpIdleMs: number;
  /** Files up to this many bytes are stored inside their chain record instead of as shards (0: never). */
  inlineMaxBytes: number;
  pool: PoolSettings;
}

type Kind = 'int' | 'string' | 'isolation';
interface Setting {
  key: string; // dotted path in Config and the config file
  flag: string;
  kind: Kind;
  min?: number;
  max?: number;
  /** The cluster's shape, read by `cairn cluster` alone; every other setting reaches each actor it starts. */
  clusterOnly?: true;
}

const MiB = 1024 * 1024;
const HOUR_MS = 3_600_000;
const cores = availableParallelism();

export const DEFAULTS: Config = {
  dataDir: './data',
  cluster: '',
  providers: 3,
  clients: 2,
  providerBasePort: 7001,
  clientBasePort: 5000,
  laneBasePort: 0,
  host: '127.0.0.1',
  isolation: 'thread',
  k: 2,
  m: 1,
  segmentSize: 4 * MiB,
  maxUploadBytes: 16 * 1024 * MiB,
  maxUploadMs: 12 * HOUR_MS,
  orphanGraceMs: 24 * HOUR_MS,
  diskReserveBytes: 1024 * MiB,
  pipelineDepth: 4,
  httpIdleMs: 5 * 60_000,
  inlineMaxBytes: 8 * 1024,
  pool: {
    minThreads: 1,
    maxThreads: Math.max(1, Math.min(4, cores)),
    idleTimeoutMs: 30_000,
    maxQueue: 64,
    concurrentTasksPerWorker: 1,
  },
};

const SETTINGS: Setting[] = [
  { key: 'dataDir', flag: 'data-dir', kind: 'string' },
  { key: 'cluster', flag: 'cluster', kind: 'string' },
  { key: 'providers', flag: 'providers', kind: 'int', min: 1, max: 64, clusterOnly: true },
  { key: 'clients', flag: 'clients', kind: 'int', min: 0, max: 16, clusterOnly: true },
  { key: 'providerBasePort', flag: 'provider-base-port', kind: 'int', min: 0, max: 65535, clusterOnly: true },
  { key: 'clientBasePort', flag: 'client-base-port', kind: 'int', min: 0, max: 65535, clusterOnly: true },
  { key: 'laneBasePort', flag: 'lane-base-port', kind: 'int', min: 0, max: 65535, clusterOnly: true },
  { key: 'host', flag: 'host', kind: 'string' },
  { key: 'isolation', flag: 'isolation', kind: 'isolation', clusterOnly: true },
  { key: 'k', flag: 'k', kind: 'int', min: 1, max: 16, clusterOnly: true },
  { key: 'm', flag: 'm', kind: 'int', min: 0, max: 16, clusterOnly: true },
  { key: 'segmentSize', flag: 'segment-size', kind: 'int', min: 64 * 1024, max: 64 * MiB, clusterOnly: true },
  { key: 'maxUploadBytes', flag: 'max-upload-bytes', kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  { key: 'maxUploadMs', flag: 'max-upload-ms', kind: 'int', min: 1_000, max: 7 * 24 * HOUR_MS },
  { key: 'orphanGraceMs', flag: 'orphan-grace-ms', kind: 'int', min: 1_000, max: 365 * 24 * HOUR_MS },
  { key: 'diskReserveBytes', flag: 'disk-reserve-bytes', kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
  { key: 'pipelineDepth', flag: 'pipeline-depth', kind: 'int', min: 1, max: 32 },
  { key: 'httpIdleMs', flag: 'http-idle-ms', kind: 'int', min: 1_000, max: 24 * HOUR_MS },
  { key: 'inlineMaxBytes', flag: 'inline-max-bytes', kind: 'int', min: 0, max: LIMITS.maxInlineBytes - TAG_BYTES },
  { key: 'pool.minThreads', flag: 'pool-min-threads', kind: 'int', min: 0, max: 64 },
  { key: 'pool.maxThreads', flag: 'pool-max-threads', kind: 'int', min: 1, max: 64 },
  { key: 'pool.idleTimeoutMs', flag: 'pool-idle-timeout-ms', kind: 'int', min: 0, max: 3_600_000 },
  { key: 'pool.maxQueue', flag: 'pool-max-queue', kind: 'int', min: 1, max: 100_000 },
  { key: 'pool.concurrentTasksPerWorker', flag: 'pool-concurrent-tasks', kind: 'int', min: 1, max: 64 },
];

/** Every setting an actor reads, as flags: what `cairn cluster` passes to each actor it starts, so none is left behind. */
export function actorFlags(c: Config): string[] {
  const settings = SETTINGS.filter((s) => !s.clusterOnly).flatMap((s) => [`--${s.flag}`, String(getPath(c as unknown as Record<string, unknown>, s.key))]);
  // The supervisor read the environment and config files already; an actor reading them again
  // could find other ones (a cairn.config.json in its own working directory, CAIRN_* meant for the cluster's shape).
  return [...settings, '--config-sources', 'flags'];
}

export const CONFIG_FLAGS: ReadonlySet<string> = new Set(SETTINGS.map((s) => s.flag).concat('config'));

function envName(flag: string): string {
  return `CAIRN_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function coerce(setting: Setting, raw: unknown, source: string): unknown {
  const where = `${setting.key} (from ${source})`;
  if (setting.kind === 'string') {
    if (typeof raw !== 'string' || raw.length === 0) throw new CairnError('BAD_CONFIG', `${where} must be a non-empty string`);
    return raw;
  }
  if (setting.kind === 'isolation') {
    if (raw !== 'thread' && raw !== 'process') throw new CairnError('BAD_CONFIG', `${where} must be "thread" or "process", got ${JSON.stringify(raw)}`);
    return raw;
  }
  return wholeNumber(raw, where, setting.min!, setting.max!);
}

/** A setting's whole number (a number, or its digits as a flag or variable gives them) within [min, max]. */
export function wholeNumber(raw: unknown, where: string, min: number, max: number): number {
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new CairnError('BAD_CONFIG', `${where} must be a whole number, got ${JSON.stringify(raw)}`);
  if (n < min || n > max) throw new CairnError('BAD_CONFIG', `${where} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Each group's ports (base, base+1, …; 0: any free ones) must exist and not overlap another group's. */
function checkPortRanges(c: Config): void {
  const ranges = [
    { name: 'providerBasePort', what: "the providers' ports", base: c.providerBasePort, count: c.providers },
    { name: 'clientBasePort', what: "the web clients'", base: c.clientBasePort, count: c.clients },
    { name: 'laneBasePort', what: "the providers' lane ports", base: c.laneBasePort, count: c.providers },
  ].filter((r) => r.base !== 0 && r.count > 0);
  for (const r of ranges) {
    if (r.base + r.count - 1 > 65535) throw new CairnError('BAD_CONFIG', `${r.name} ${r.base} leaves no port for ${r.count} actors (the last would be ${r.base + r.count - 1}; ports end at 65535)`);
  }
  for (const [i, a] of ranges.entries()) {
    for (const b of ranges.slice(i + 1)) {
      if (a.base < b.base + b.count && b.base < a.base + a.count) {
        throw new CairnError('BAD_CONFIG', `${a.what} (${a.base}–${a.base + a.count - 1}) and ${b.what} (${b.base}–${b.base + b.count - 1}) overlap; move one base port`);
      }
    }
  }
}

/** Dotted paths in a config file's object that name no setting (a typo would be ignored silently). */
function unknownKeys(obj: Record<string, unknown>, prefix: string): string[] {
  return Object.entries(obj).flatMap(([k, value]) => {
    const path = `${prefix}${k}`;
    if (SETTINGS.some((x) => x.key === path)) return [];
    const isGroup = SETTINGS.some((x) => x.key.startsWith(`${path}.`));
    return isGroup && typeof value === 'object' && value !== null && !Array.isArray(value) ? unknownKeys(value as Record<string, unknown>, `${path}.`) : [path];
  });
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const p of parts.slice(0, -1)) node = node[p] as Record<string, unknown>;
  node[parts.at(-1)!] = value;
}

function getPath(source: Record<string, unknown>, path: string): unknown {
  let node: unknown = source;
  for (const p of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[p];
  }
  return node;
}

/** Refuses options a command does not take: a typo would otherwise act on defaults (e.g. verify ./data). */
export function checkFlags(flags: Map<string, string>, allowed: readonly string[], command: string): void {
  for (const flag of flags.keys()) {
    if (!allowed.includes(flag)) throw new CairnError('BAD_CONFIG', `unknown option --${flag} (${command} takes ${allowed.map((f) => `--${f}`).join(', ')})`);
  }
}

/** Parses `--name value` / `--name=value` flags; positional words are returned apart. */
export function parseArgs(argv: string[]): { positional: string[]; flags: Map<string, string> } {
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    if (eq > 0) flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    else {
      const next = argv[i + 1];
      // Every option takes a value: `--data-dir` alone must not start a cluster in ./true.
      if (next === undefined || next.startsWith('--')) throw new CairnError('BAD_CONFIG', `option ${arg} needs a value (${arg} VALUE or ${arg}=VALUE)`);
      flags.set(arg.slice(2), next);
      i++;
    }
  }
  return { positional, flags };
}

export function loadConfig(flags: Map<string, string>, env: NodeJS.ProcessEnv = process.env, allowedExtraFlags: ReadonlySet<string> = new Set()): Config {
  return loadConfigWithSources(flags, env, allowedExtraFlags).config;
}

/**
 * An actor's config: from its flags alone when `cairn cluster` started it (`--config-sources
 * flags`), else as any command's. The cluster's shape (k, m, providers) is the cluster file's
 * business, not an actor's, so it is not checked here.
 */
export function loadActorConfig(flags: Map<string, string>, env: NodeJS.ProcessEnv, extraFlags: ReadonlySet<string>): Config {
  const sources = flags.get('config-sources') ?? 'all';
  if (sources !== 'all' && sources !== 'flags') throw new CairnError('BAD_CONFIG', `--config-sources must be "all" or "flags", got ${JSON.stringify(sources)}`);
  const rest = new Map([...flags].filter(([k]) => k !== 'config-sources'));
  if (sources === 'flags') rest.set('config', ''); // no config file either
  return loadConfigWithSources(rest, sources === 'flags' ? {} : env, extraFlags, { shape: false }).config;
}

/** The config, and where each setting not left at its default came from (`--k`, `CAIRN_K` or a config file's path). */
export function loadConfigWithSources(
  flags: Map<string, string>,
  env: NodeJS.ProcessEnv = process.env,
  allowedExtraFlags: ReadonlySet<string> = new Set(),
  checks: { shape: boolean } = { shape: true },
): { config: Config; sources: Map<string, string> } {
  for (const flag of flags.keys()) {
    if (!CONFIG_FLAGS.has(flag) && !allowedExtraFlags.has(flag)) {
      throw new CairnError('BAD_CONFIG', `unknown option --${flag}`);
    }
  }
  const config = structuredClone(DEFAULTS) as unknown as Record<string, unknown>;
  const sources = new Map<string, string>();
  const set = (s: Setting, raw: unknown, source: string) => {
    setPath(config, s.key, coerce(s, raw, source));
    sources.set(s.key, source);
  };
  const file = flags.get('config') ?? env.CAIRN_CONFIG ?? (existsSync('cairn.config.json') ? 'cairn.config.json' : undefined);
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new CairnError('BAD_CONFIG', `config file ${file} could not be read as JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null) throw new CairnError('BAD_CONFIG', `config file ${file} must hold a JSON object`);
    const unknown = unknownKeys(parsed as Record<string, unknown>, '');
    if (unknown.length > 0) throw new CairnError('BAD_CONFIG', `config file ${file} has unknown keys: ${unknown.join(', ')} (known: ${SETTINGS.map((x) => x.key).join(', ')})`);
    for (const s of SETTINGS) {
      const raw = getPath(parsed as Record<string, unknown>, s.key);
      if (raw !== undefined) set(s, raw, file);
    }
  }
  for (const s of SETTINGS) {
    const raw = env[envName(s.flag)];
    if (raw !== undefined && raw !== '') set(s, raw, envName(s.flag));
  }
  for (const s of SETTINGS) {
    const raw = flags.get(s.flag);
    if (raw !== undefined) set(s, raw, `--${s.flag}`);
  }
  const c = config as unknown as Config;
  if (!c.cluster) c.cluster = `${c.dataDir}/cluster.json`;
  if (c.pool.minThreads > c.pool.maxThreads) {
    throw new CairnError('BAD_CONFIG', `pool.minThreads (${c.pool.minThreads}) must not exceed pool.maxThreads (${c.pool.maxThreads})`);
  }
  if (c.pool.maxQueue < 4 * c.pipelineDepth) {
    // A web client codes up to 2 × pipelineDepth segments for its uploads and as many for its
    // downloads at once (its segment budgets); the queue must take them all, or they fail OVERLOADED.
    throw new CairnError('BAD_CONFIG', `pool.maxQueue (${c.pool.maxQueue}) must be at least 4 × pipelineDepth (${4 * c.pipelineDepth})`);
  }
  if (c.orphanGraceMs <= c.maxUploadMs) {
    // Repair would delete the shards of an upload still allowed to finish.
    throw new CairnError('BAD_CONFIG', `orphanGraceMs (${c.orphanGraceMs}) must exceed maxUploadMs (${c.maxUploadMs}); the defaults leave 12 hours between them`);
  }
  if (checks.shape) checkPortRanges(c);
  if (checks.shape && c.k + c.m > c.providers) {
    throw new CairnError('BAD_CONFIG', `k + m (${c.k}+${c.m}) needs at least that many providers; providers is ${c.providers}`);
  }
  return { config: c, sources };
}
