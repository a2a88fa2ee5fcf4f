/**
 * One SP's LMDB environment: its shards, its chain (blocks, Raft hard state) and the state
 * derived from final blocks. One environment so the chain can update state and its applied
 * height in one write transaction.
 */
import { open, type Database, type RootDatabase } from 'lmdb';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ShardHashAlg } from '../crypto/shard-hash.js';

export interface ProviderDbs {
  root: RootDatabase;
  shards: Database<Buffer, string>;
  shardMeta: Database<ShardMeta, string>;
  blocks: Database<unknown, number>;
  state: Database<unknown, string>;
  meta: Database<unknown, string>;
}

export interface ShardMeta {
  hash: string; // hex, of the shard bytes
  /** Absent: SHA-256 (shards stored before the hash was named). */
  hashAlg?: ShardHashAlg;
  size: number;
  storedAt: number;
}

/** An SP's LMDB lives in <dataDir>/<sp-id>/lmdb, beside (not mixed with) its node key. */
export function lmdbDir(dataDir: string, spId: string): string {
  return join(dataDir, spId, 'lmdb');
}

export function openProviderDbs(dir: string): ProviderDbs {
  mkdirSync(dir, { recursive: true });
  // 64 GiB of address space is only a reservation; the file grows with what is stored.
  const root = open({ path: dir, maxDbs: 8, mapSize: 64 * 1024 ** 3, compression: false });
  return {
    root,
    shards: root.openDB<Buffer, string>({ name: 'shards', encoding: 'binary' }),
    shardMeta: root.openDB<ShardMeta, string>({ name: 'shard-meta' }),
    blocks: root.openDB<unknown, number>({ name: 'blocks', keyEncoding: 'uint32' }),
    state: root.openDB<unknown, string>({ name: 'state' }),
    meta: root.openDB<unknown, string>({ name: 'meta' }),
  };
}
