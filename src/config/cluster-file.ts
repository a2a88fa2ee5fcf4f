/**
 * The cluster file (`cairn init`): the genesis, where each SP listens, and the erasure-coding
 * defaults. Beside it, mode 0600, the cluster key that authenticates mailbox connections; and in
 * each SP's folder its node key. Written once; later starts only update addresses.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError } from '../errors.js';
import * as v from '../validate.js';
import { genesisP, type Genesis } from '../chain/genesis.js';
import { newSigningSeed, signingKeyFromSeed, type SigningKey } from '../crypto/keys.js';

const ADDRESS = /^[^\s:]+:(6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})$/; // host:1..65535

export const clusterFileP = v.object({
  version: v.literal(1),
  genesis: genesisP,
  providers: v.array(v.object({ id: v.str({ min: 1, max: 64 }), address: v.str({ min: 3, max: 255, pattern: ADDRESS }) }), { min: 1, max: 64 }),
  k: v.int({ min: 1, max: 16 }),
  m: v.int({ min: 0, max: 16 }),
  segmentSize: v.int({ min: 64 * 1024, max: 64 * 1024 * 1024 }),
});
export type ClusterFile = v.Parsed<typeof clusterFileP>;

export function clusterKeyPath(clusterFile: string): string {
  return join(dirname(clusterFile), 'cluster.key');
}

export function nodeKeyPath(dataDir: string, spId: string): string {
  return join(dataDir, spId, 'node.key');
}

function writeAtomic(path: string, data: string | Buffer, mode: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** A key file, never over another: 'wx' fails if the path exists. */
function writeKey(path: string, hex: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${hex}\n`, { mode: 0o600, flag: 'wx' });
}

export function readClusterFile(path: string): ClusterFile {
  if (!existsSync(path)) {
    throw new CairnError('BAD_CONFIG', `cluster file ${path} does not exist; create one with \`cairn init\` or start \`cairn cluster\``);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CairnError('BAD_CONFIG', `cluster file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const file = v.parseWith(clusterFileP, raw, 'BAD_CONFIG', 'cluster');
  const ids = file.genesis.validators.map((val) => val.id).join(',');
  if (file.providers.map((p) => p.id).join(',') !== ids) {
    throw new CairnError('BAD_CONFIG', `cluster file ${path}: providers must list the genesis validators (${ids}) in order`);
  }
  return file;
}

export function writeClusterFile(path: string, file: ClusterFile): void {
  writeAtomic(path, `${JSON.stringify(file, null, 2)}\n`, 0o644);
}

export function readClusterKey(clusterFile: string): Buffer {
  const path = clusterKeyPath(clusterFile);
  if (!existsSync(path)) throw new CairnError('BAD_CONFIG', `cluster key ${path} is missing (it is written by \`cairn init\`)`);
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'hex');
  if (key.length !== 32) throw new CairnError('BAD_CONFIG', `cluster key ${path} must hold 64 hex characters`);
  return key;
}

export function readNodeKey(dataDir: string, spId: string): SigningKey {
  const path = nodeKeyPath(dataDir, spId);
  if (!existsSync(path)) throw new CairnError('BAD_CONFIG', `node key ${path} is missing (it is written by \`cairn init\`)`);
  const seed = Buffer.from(readFileSync(path, 'utf8').trim(), 'hex');
  if (seed.length !== 32) throw new CairnError('BAD_CONFIG', `node key ${path} must hold 64 hex characters`);
  return signingKeyFromSeed(seed);
}

/**
 * Creates a new cluster: a node key per SP (in keyDir/<id>/node.key), the cluster key and the
 * cluster file. Refuses to overwrite an existing cluster file, because that would orphan its chain.
 */
export function initCluster(opts: {
  out: string;
  keyDir: string;
  addresses: string[];
  k: number;
  m: number;
  segmentSize: number;
}): ClusterFile {
  if (existsSync(opts.out)) throw new CairnError('CONFLICT', `cluster file ${opts.out} already exists; refusing to overwrite it`);
  for (const a of opts.addresses) {
    if (!ADDRESS.test(a)) throw new CairnError('BAD_CONFIG', `provider address ${JSON.stringify(a)} must look like host:port`);
  }
  if (opts.k + opts.m > opts.addresses.length) {
    throw new CairnError('BAD_CONFIG', `k + m (${opts.k}+${opts.m}) needs at least that many providers; got ${opts.addresses.length}`);
  }
  // Keys of another cluster, or an SP's data, where this one would write its keys: replacing
  // them would leave that cluster unable to start, ever (its genesis names the old keys).
  const taken = [clusterKeyPath(opts.out), ...opts.addresses.flatMap((_, i) => [nodeKeyPath(opts.keyDir, `sp${i + 1}`), join(opts.keyDir, `sp${i + 1}`, 'lmdb')])].find((path) => existsSync(path));
  if (taken !== undefined) {
    throw new CairnError('CONFLICT', `${taken} already exists: it belongs to another cluster, which a new one here would make unusable; use an empty directory (or did you mean --cluster with that cluster's file?)`);
  }
  const providers = opts.addresses.map((address, i) => ({ id: `sp${i + 1}`, address }));
  const validators = providers.map((p) => {
    const seed = newSigningSeed();
    writeKey(nodeKeyPath(opts.keyDir, p.id), seed.toString('hex'));
    return { id: p.id, signKey: signingKeyFromSeed(seed).publicKey };
  });
  const genesis: Genesis = { chainId: `cairn-${randomBytes(6).toString('hex')}`, time: Date.now(), validators };
  const file: ClusterFile = { version: 1, genesis, providers, k: opts.k, m: opts.m, segmentSize: opts.segmentSize };
  writeKey(clusterKeyPath(opts.out), randomBytes(32).toString('hex'));
  writeClusterFile(opts.out, file);
  return file;
}
