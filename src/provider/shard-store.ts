/**
 * Shards at rest. A shard is accepted only if its bytes hash to the hash the writer claims; at rest
 * it is re-hashed by the scrubber and on a reader's report (`check`), and a rotten one is removed.
 */
import { statfsSync } from 'node:fs';
import { hashAlgOf, isShardHashAlg, shardHashHex, type ShardHashAlg } from '../crypto/shard-hash.js';
import { CairnError } from '../errors.js';
import { writeDurably } from '../lmdb-durable.js';
import type { ProviderDbs, ShardMeta } from './store.js';

export const SHARD_KEY = /^[0-9a-f]{32}\/\d{1,6}\/\d{1,3}$/;

export function shardKey(fileId: string, segment: number, shard: number): string {
  return `${fileId}/${segment}/${shard}`;
}

export interface ShardStats {
  shards: number;
  bytes: number;
  quarantined: number; // shards found rotten and removed since start
}

export type ShardCheck = 'ok' | 'missing' | 'bad';

function conflict(key: string, where: string): CairnError {
  return new CairnError('CONFLICT', `shard ${key} is ${where} with another hash; a shard's bytes never change`);
}

/** Bytes an unprivileged writer may still use on the filesystem holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

export interface ShardStoreOptions {
  /** The store's directory, whose filesystem's free space is checked before each put. */
  dir: string;
  /** Free bytes a put must leave (the chain's room to write). */
  reserveBytes: number;
  /** The hash a final record gives the shard at `key`, if one does: what a stored shard must hash to. */
  recordedHash: (key: string) => string | undefined;
}

export class ShardStore {
  #stats: ShardStats = { shards: 0, bytes: 0, quarantined: 0 };

  constructor(
    private readonly dbs: ProviderDbs,
    private readonly opts: ShardStoreOptions,
  ) {
    for (const { value } of dbs.shardMeta.getRange()) {
      this.#stats.shards += 1;
      this.#stats.bytes += value.size;
    }
  }

  /**
   * Verifies, then writes; resolves once the shard is on disk (a power cut after this keeps it).
   * A shard's bytes never change: a put under a key already stored, or recorded, with another hash
   * is refused, so no peer can swap a stored shard for other bytes that match a hash of its own.
   */
  async put(key: string, bytes: Uint8Array, hash: string, alg: ShardHashAlg): Promise<void> {
    if (!SHARD_KEY.test(key)) throw new CairnError('BAD_REQUEST', `invalid shard key ${key}`);
    if (bytes.length === 0) throw new CairnError('BAD_REQUEST', 'a shard is never empty');
    if (shardHashHex(alg, bytes) !== hash) throw new CairnError('HASH_MISMATCH', `shard ${key} does not match its ${alg} hash`);
    const recorded = this.opts.recordedHash(key);
    if (recorded !== undefined && recorded !== hash) throw conflict(key, 'recorded on the chain');
    const free = freeBytes(this.opts.dir);
    if (free - bytes.length < this.opts.reserveBytes) {
      throw new CairnError('STORAGE_FULL', `this SP's disk has ${free} bytes free and keeps ${this.opts.reserveBytes} for its chain (disk-reserve-bytes); free space or add an SP`);
    }
    const meta: ShardMeta = { hash, hashAlg: alg, size: bytes.length, storedAt: Date.now() };
    let previous = undefined as ShardMeta | undefined;
    await writeDurably(this.dbs.root, () => {
      // Read inside the write: a delete, sweep or other put of the same key may come first.
      previous = this.dbs.shardMeta.get(key);
      if (previous && previous.hash !== hash) return;
      void this.dbs.shards.put(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      void this.dbs.shardMeta.put(key, meta);
    });
    if (previous && previous.hash !== hash) throw conflict(key, 'stored here');
    if (previous) this.#stats.bytes -= previous.size;
    else this.#stats.shards += 1;
    this.#stats.bytes += bytes.length;
  }

  /**
   * The stored bytes and the hash recorded with them, not re-hashed here: every reader verifies
   * them anyway (the web client by the segment's GCM tag, and by the hash on the chain when that
   * fails; repair by the hash before rebuilding), so hashing again before sending would only add
   * work per byte read. Rot is still found: by the scrubber, and by `check` when a reader reports
   * a shard that failed its hash.
   */
  read(key: string): { bytes: Buffer; hash: string } {
    const meta = this.dbs.shardMeta.get(key);
    // get() copies; getBinaryFast's reused buffer returned wrong bytes past ~2 MiB (FACTS.md).
    const bytes = meta ? this.dbs.shards.get(key) : undefined;
    if (!meta || !bytes) throw new CairnError('SHARD_MISSING', `shard ${key} is not stored here`);
    return { bytes, hash: meta.hash };
  }

  /**
   * Re-hashes one stored shard (scrub, or a reader's report) against the hash its record gives
   * it (the one it was stored with, while unrecorded); a rotten or wrong one is removed.
   */
  async check(key: string): Promise<ShardCheck> {
    const meta = this.dbs.shardMeta.get(key);
    const bytes = meta ? this.dbs.shards.get(key) : undefined;
    if (!meta || !bytes) return 'missing';
    // Stored by a later build under a hash this one does not know (a rollback): not ours to judge.
    if (meta.hashAlg !== undefined && !isShardHashAlg(meta.hashAlg)) return 'ok';
    if (meta.hash === (this.opts.recordedHash(key) ?? meta.hash) && shardHashHex(hashAlgOf(meta.hashAlg), bytes) === meta.hash) return 'ok';
    // Only the copy that was read: the shard may have been stored again since (repair).
    if ((await this.#remove([key], (now) => now.storedAt === meta.storedAt && now.hash === meta.hash)) === 1) this.#stats.quarantined += 1;
    return 'bad';
  }

  /** Keys in order after `after` (exclusive), at most `limit` of them. */
  keysAfter(after: string | undefined, limit: number): string[] {
    const out: string[] = [];
    for (const key of this.dbs.shardMeta.getKeys(after === undefined ? { limit } : { start: `${after}\u0000`, limit })) out.push(key);
    return out;
  }

  sizeOf(key: string): number | undefined {
    return this.dbs.shardMeta.get(key)?.size;
  }

  has(key: string): boolean {
    return this.dbs.shardMeta.doesExist(key);
  }

  async delete(key: string): Promise<boolean> {
    return (await this.#remove([key], () => true)) === 1;
  }

  /**
   * Deletes those of `keys` stored at or before `storedBy` (repair's sweep of shards no final
   * record names: age is the guard against deleting a shard whose upload may still be recorded).
   * Returns how many went.
   */
  deleteStoredBy(keys: readonly string[], storedBy: number): Promise<number> {
    return this.#remove(keys, (meta) => meta.storedAt <= storedBy);
  }

  /** Removes those of `keys` that are stored and pass `which`, judged inside the write (a shard stored again meanwhile is judged anew). */
  async #remove(keys: readonly string[], which: (meta: ShardMeta) => boolean): Promise<number> {
    const sizes: number[] = [];
    // Durable, as puts are: a delete answered must not come back after a power cut.
    await writeDurably(this.dbs.root, () => {
      for (const key of keys) {
        const meta = this.dbs.shardMeta.get(key);
        if (!meta || !which(meta)) continue;
        this.dbs.shards.remove(key);
        this.dbs.shardMeta.remove(key);
        sizes.push(meta.size);
      }
    });
    for (const size of sizes) {
      this.#stats.shards -= 1;
      this.#stats.bytes -= size;
    }
    return sizes.length;
  }

  /** Shard keys of one file, for deletion after a file.delete is final. */
  keysOf(fileId: string): string[] {
    return [...this.dbs.shardMeta.getKeys({ start: `${fileId}/`, end: `${fileId}0` })];
  }

  stats(): ShardStats {
    return { ...this.#stats };
  }
}
