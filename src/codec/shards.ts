/**
 * How a sealed segment lies in memory as shards: k data shards then m parity shards, consecutive
 * slots of one ArrayBuffer, optionally followed by a trailer (the codec puts shard hashes there).
 * Because the data shards are consecutive, splitting the sealed segment is just writing it at the
 * start of the buffer, and joining is a view: no copies, and the whole set moves between threads
 * as one transfer.
 */
import { CairnError, invariant } from '../errors.js';

/** Shard sizes are multiples of 8 so every shard view is word-aligned for the coder. */
export const SHARD_ALIGN = 8;

/** ceil(L / k) rounded up to SHARD_ALIGN, and never 0: a zero-length shard is a footgun downstream. */
export function shardSize(sealedLength: number, k: number): number {
  if (!Number.isSafeInteger(sealedLength) || sealedLength < 0) {
    throw new CairnError('BAD_REQUEST', `sealed length must be a non-negative integer, got ${sealedLength}`);
  }
  if (!Number.isInteger(k) || k < 1) throw new CairnError('BAD_REQUEST', `k must be a positive integer, got ${k}`);
  return Math.max(SHARD_ALIGN, Math.ceil(sealedLength / k / SHARD_ALIGN) * SHARD_ALIGN);
}

export interface ShardSet {
  readonly buffer: ArrayBuffer;
  readonly shardSize: number;
  /** k data shards then m parity shards. */
  readonly shards: Uint8Array[];
  /** The first sealedLength bytes of the data shards: where the sealed segment is to be written. */
  readonly sealed: Uint8Array;
  /** trailerBytes after the last shard, for the caller's use. */
  readonly trailer: Uint8Array;
}

/**
 * Lays out a shard set for a sealed segment of sealedLength bytes. With `reuse` large enough, its
 * memory is used instead of a new allocation; the padding after the sealed bytes is zeroed either way,
 * everything else is for the caller to fill (sealed bytes, then parity by encoding).
 */
export function layoutShards(sealedLength: number, k: number, m: number, trailerBytes = 0, reuse?: ArrayBuffer): ShardSet {
  const size = shardSize(sealedLength, k);
  const n = k + m;
  const total = n * size + trailerBytes;
  const fresh = reuse === undefined || reuse.byteLength < total;
  const buffer = fresh ? new ArrayBuffer(total) : reuse;
  if (!fresh) new Uint8Array(buffer, sealedLength, k * size - sealedLength).fill(0);
  return {
    buffer,
    shardSize: size,
    shards: shardViews(buffer, 0, n, size),
    sealed: new Uint8Array(buffer, 0, sealedLength),
    trailer: new Uint8Array(buffer, n * size, trailerBytes),
  };
}

/** `count` consecutive views of `size` bytes starting at byteOffset. */
export function shardViews(buffer: ArrayBuffer, byteOffset: number, count: number, size: number): Uint8Array[] {
  invariant(byteOffset + count * size <= buffer.byteLength, 'shard views run past the buffer');
  return Array.from({ length: count }, (_, i) => new Uint8Array(buffer, byteOffset + i * size, size));
}

/** True when the shards are consecutive, equally sized slots of one buffer, as layoutShards makes them. */
export function areConsecutive(shards: readonly Uint8Array[]): boolean {
  const first = shards[0];
  if (first === undefined) return false;
  return shards.every(
    (s, i) => s.buffer === first.buffer && s.length === first.length && s.byteOffset === first.byteOffset + i * first.length,
  );
}

/** The sealed segment from its data shards: a view when they are consecutive, otherwise a copy. */
export function joinShards(dataShards: readonly Uint8Array[], sealedLength: number): Uint8Array {
  const size = dataShards[0]?.length ?? 0;
  if (sealedLength > size * dataShards.length) {
    throw new CairnError('BAD_REQUEST', `${dataShards.length} shards of ${size} bytes cannot hold ${sealedLength} bytes`);
  }
  if (areConsecutive(dataShards)) return new Uint8Array(dataShards[0]!.buffer, dataShards[0]!.byteOffset, sealedLength);
  const out = new Uint8Array(sealedLength);
  for (let i = 0, at = 0; at < sealedLength; i++, at += size) {
    out.set(dataShards[i]!.subarray(0, Math.min(size, sealedLength - at)), at);
  }
  return out;
}
