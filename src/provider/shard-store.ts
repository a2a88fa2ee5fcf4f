/**
 * Shards at rest. A shard is accepted only if its bytes hash to the hash the writer claims, and
 * is served only if it still does (a rotten shard is reported, never returned as good).
 */
import { sha256Hex } from '../crypto/hash.js';
import { CairnError } from '../errors.js';
import type { ProviderDbs, ShardMeta } from './store.js';

export const SHARD_KEY = /^[0-9a-f]{32}\/\d{1,6}\/\d{1,3}$/;

export function shardKey(fileId: string, segment: number, shard: number): string {
  return `${fileId}/${segment}/${shard}`;
}

export interface ShardStats {
  shards: number;
  bytes: number;
}

export class ShardStore {
  #stats: ShardStats = { shards: 0, bytes: 0 };

  constructor(private readonly dbs: ProviderDbs) {
    for (const { value } of dbs.shardMeta.getRange()) {
      this.#stats.shards += 1;
      this.#stats.bytes += value.size;
    }
  }

  /** Verifies, then writes; resolves once LMDB has committed (a process kill after this keeps it). */
  async put(key: string, bytes: Uint8Array, hash: string): Promise<void> {
    if (!SHARD_KEY.test(key)) throw new CairnError('BAD_REQUEST', `invalid shard key ${key}`);
    if (bytes.length === 0) throw new CairnError('BAD_REQUEST', 'a shard is never empty');
    if (sha256Hex(bytes) !== hash) throw new CairnError('HASH_MISMATCH', `shard ${key} does not match its hash`);
    const previous = this.dbs.shardMeta.get(key);
    const meta: ShardMeta = { hash, size: bytes.length, storedAt: Date.now() };
    await this.dbs.root.transaction(() => {
      this.dbs.shards.put(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      this.dbs.shardMeta.put(key, meta);
    });
    if (previous) this.#stats.bytes -= previous.size;
    else this.#stats.shards += 1;
    this.#stats.bytes += bytes.length;
  }

  /** Returns the bytes only if they still match the hash recorded when they were stored. */
  get(key: string): { bytes: Buffer; hash: string } {
    const meta = this.dbs.shardMeta.get(key);
    // get() copies; getBinaryFast's reused buffer returned wrong bytes past ~2 MiB (FACTS.md).
    const bytes = meta ? this.dbs.shards.get(key) : undefined;
    if (!meta || !bytes) throw new CairnError('SHARD_MISSING', `shard ${key} is not stored here`);
    if (sha256Hex(bytes) !== meta.hash) throw new CairnError('HASH_MISMATCH', `shard ${key} failed its hash check (rot)`);
    return { bytes, hash: meta.hash };
  }

  has(key: string): boolean {
    return this.dbs.shardMeta.doesExist(key);
  }

  async delete(key: string): Promise<boolean> {
    const meta = this.dbs.shardMeta.get(key);
    if (!meta) return false;
    await this.dbs.root.transaction(() => {
      this.dbs.shards.remove(key);
      this.dbs.shardMeta.remove(key);
    });
    this.#stats.shards -= 1;
    this.#stats.bytes -= meta.size;
    return true;
  }

  /** Shard keys of one file, for deletion after a file.delete is final. */
  keysOf(fileId: string): string[] {
    return [...this.dbs.shardMeta.getKeys({ start: `${fileId}/`, end: `${fileId}0` })];
  }

  stats(): ShardStats {
    return { ...this.#stats };
  }
}
