/**
 * The hash a shard is known by: in its file record, in an SP's check of every put and its scrub,
 * in repair, and in a reader's search for a bad shard. It is the one hash taken over every stored
 * byte (twice per upload: the web client makes it, the SP checks it), so its speed bounds uploads:
 * BLAKE3 runs at ~6.4 GB/s on one core here against SHA-256's ~1.8 (with SHA-NI), and cut 1 GiB
 * uploads from 11.2 to 10.2 CPU-s. Everything else on the chain (transaction ids, blocks, Merkle
 * roots, over these hashes too) stays SHA-256.
 *
 * A record names its shards' hash (`hashAlg`); records, puts and stored shards from before it was
 * named have none, and theirs is SHA-256, so they are read, scrubbed and repaired as they were made.
 */
import { createHash } from 'node:crypto';
import { blake3 } from '@napi-rs/blake-hash';

export const SHARD_HASH_ALGS = ['sha256', 'blake3'] as const;
export type ShardHashAlg = (typeof SHARD_HASH_ALGS)[number];

/** What new records use. */
export const NEW_SHARD_HASH: ShardHashAlg = 'blake3';

/** Both digests are 32 bytes. */
export const SHARD_HASH_BYTES = 32;

export function isShardHashAlg(name: unknown): name is ShardHashAlg {
  return (SHARD_HASH_ALGS as readonly unknown[]).includes(name);
}

/** The hash of a record, put or stored shard that names none: SHA-256, the only one before. */
export function hashAlgOf(named: ShardHashAlg | undefined): ShardHashAlg {
  return named ?? 'sha256';
}

export function shardHash(alg: ShardHashAlg, bytes: Uint8Array): Buffer {
  if (alg === 'sha256') return createHash('sha256').update(bytes).digest();
  // A Buffer view of the same memory (the binding's typings take Buffers, not Uint8Arrays): no copy.
  return blake3(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

export function shardHashHex(alg: ShardHashAlg, bytes: Uint8Array): string {
  return shardHash(alg, bytes).toString('hex');
}
