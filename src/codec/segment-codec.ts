/**
 * The per-segment pipeline as pure functions: seal → erasure-code → hash on the way up, and
 * verify → rebuild → open on the way down. The Piscina worker (workers/codec.ts) runs these; the
 * task/result types and the helpers that pack them for the thread boundary live here so the client
 * and the worker share one definition.
 */
import { SHARD_HASH_BYTES, shardHash, type ShardHashAlg } from '../crypto/shard-hash.js';
import { CairnError, invariant, isCairnError, type ErrorCode, toCairnError } from '../errors.js';
import { ReedSolomon } from './reed-solomon.js';
import { openSegment, sealSegmentInto, sealedLength as sealedLengthOf } from './segment-seal.js';
import { areConsecutive, joinShards, layoutShards, shardSize as shardSizeFor, shardViews } from './shards.js';

export const HASH_BYTES = SHARD_HASH_BYTES;

/** Identifies a segment and how it is coded; every field is bound into the seal or the layout. */
export interface SegmentRef {
  /** The file's 32-byte AES-256-GCM key. */
  key: Uint8Array;
  fileId: string;
  index: number;
  last: boolean;
  k: number;
  m: number;
  /** The hash the file's record knows its shards by. */
  hashAlg: ShardHashAlg;
}

export interface EncodeSegmentInput extends SegmentRef {
  plaintext: Uint8Array;
  /** Memory to reuse for the shard set if it is large enough (e.g. a buffer from an earlier result). */
  into?: ArrayBuffer;
}

export interface EncodedSegment {
  /** Holds the k+m shards and then their hashes. */
  buffer: ArrayBuffer;
  shardSize: number;
  /** k data shards then m parity shards, views into buffer. */
  shards: Uint8Array[];
  /** Each shard's hash (the ref's hashAlg), views into buffer. */
  hashes: Buffer[];
  sealedLength: number;
}

export interface DecodeSegmentInput extends SegmentRef {
  sealedLength: number;
  /** k+m slots; null for a shard that could not be fetched. */
  shards: (Uint8Array | null)[];
  /** The recorded hash of each shard (the ref's hashAlg). */
  hashes: readonly Uint8Array[];
  /** Where the plaintext goes (at least sealedLength − tag bytes) instead of new memory. */
  out?: Uint8Array;
}

const MAX_CODERS = 16;
const coders = new Map<string, ReedSolomon>();

function coder(k: number, m: number): ReedSolomon {
  const key = `${k}+${m}`;
  let rs = coders.get(key);
  if (rs === undefined) {
    rs = new ReedSolomon(k, m);
    if (coders.size >= MAX_CODERS) coders.delete(coders.keys().next().value!);
    coders.set(key, rs);
  }
  return rs;
}

function isShard(s: Uint8Array | null | undefined): s is Uint8Array {
  return s !== null && s !== undefined;
}

export function verifyShard(alg: ShardHashAlg, bytes: Uint8Array, hash: Uint8Array): boolean {
  return hash.length === HASH_BYTES && shardHash(alg, bytes).equals(hash);
}

export function encodeSegment(input: EncodeSegmentInput): EncodedSegment {
  const { key, fileId, index, last, k, m, plaintext } = input;
  const rs = coder(k, m);
  const n = k + m;
  const length = sealedLengthOf(plaintext.length);
  const set = layoutShards(length, k, m, n * HASH_BYTES, input.into);
  sealSegmentInto(key, fileId, index, last, plaintext, set.sealed);
  rs.encode(set.shards);
  const hashes = set.shards.map((shard, i) => {
    const slot = Buffer.from(set.buffer, set.trailer.byteOffset + i * HASH_BYTES, HASH_BYTES);
    slot.set(shardHash(input.hashAlg, shard));
    return slot;
  });
  return { buffer: set.buffer, shardSize: set.shardSize, shards: set.shards, hashes, sealedLength: length };
}

/**
 * Whether the data shards hold zeros past the sealed bytes, as the encoder leaves them. The GCM tag
 * covers only the sealed bytes; checking the padding too makes data shards that authenticate byte
 * for byte the ones encoded, so a reader still finds rot there (it would corrupt a rebuild).
 */
function zeroPadded(dataShards: readonly Uint8Array[], sealedLength: number): boolean {
  for (const [i, shard] of dataShards.entries()) {
    for (let at = Math.max(0, sealedLength - i * shard.length); at < shard.length; at++) if (shard[at] !== 0) return false;
  }
  return true;
}

/**
 * The segment's plaintext from any k intact shards. When every data shard is there (and zero past
 * the sealed bytes), the segment is opened straight from them: its GCM tag authenticates those bytes
 * end to end (no SP holds the key), so hashing them first would only repeat the proof at the price
 * of a hash pass over the segment. Only if that fails are shards hashed, to find the bad ones:
 * a shard that is missing, has the wrong size or fails its hash counts as missing; parity shards
 * are hashed only when a data shard is not intact. When the data shards are consecutive slots of
 * one buffer (as makeDecodeTask packs them), a data shard that failed its check is overwritten in
 * place with the rebuilt bytes.
 * Throws INTEGRITY when fewer than k shards are intact or the segment fails authentication.
 */
export function decodeSegment(input: DecodeSegmentInput): Buffer {
  const { k, m, index, shards, hashes } = input;
  const rs = coder(k, m);
  const n = k + m;
  const size = shardSizeFor(input.sealedLength, k);
  if (shards.length !== n || hashes.length !== n) {
    throw new CairnError('BAD_REQUEST', `segment ${index}: expected ${n} shards and hashes, got ${shards.length} and ${hashes.length}`);
  }
  const dataShards = shards.slice(0, k);
  if (dataShards.every((s): s is Uint8Array => isShard(s) && s.length === size) && zeroPadded(dataShards, input.sealedLength)) {
    try {
      return openSegment(input.key, input.fileId, index, input.last, joinShards(dataShards, input.sealedLength), input.out);
    } catch (err) {
      if (!isCairnError(err, 'INTEGRITY')) throw err;
    }
  }
  const intact = new Array<boolean>(n).fill(false);
  let intactCount = 0;
  const check = (i: number): void => {
    const shard = shards[i];
    intact[i] = isShard(shard) && shard.length === size && verifyShard(input.hashAlg, shard, hashes[i]!);
    if (intact[i]) intactCount++;
  };
  for (let i = 0; i < k; i++) check(i);
  for (let i = k; i < n && intactCount < k; i++) check(i);
  if (intactCount < k) {
    const bad = intact.flatMap((ok, i) => (ok ? [] : [i]));
    throw new CairnError(
      'INTEGRITY',
      `segment ${index}: only ${intactCount} of ${k} shards needed are intact (missing or failing their hash: ${bad.join(', ')})`,
    );
  }

  let data: Uint8Array[];
  if (dataShards.every(isShard) && dataShards.every((s) => s.length === size) && (intact.slice(0, k).every(Boolean) || areConsecutive(dataShards))) {
    data = dataShards;
  } else {
    data = layoutShards(input.sealedLength, k, 0).shards;
    for (let i = 0; i < k; i++) if (intact[i]) data[i]!.set(dataShards[i]!);
  }
  if (intact.slice(0, k).some((ok) => !ok)) {
    rs.reconstruct([...data, ...shards.slice(k)], size, false, intact);
  }
  return openSegment(input.key, input.fileId, index, input.last, joinShards(data, input.sealedLength), input.out);
}

// ---- Crossing the worker-thread boundary ----
//
// Errors thrown in a Piscina worker arrive as plain Errors without their code, so the worker returns
// failures as data (CodecOutcome) and unwrapOutcome turns them back into a CairnError.
// Typed-array views are structured-cloned with their whole backing ArrayBuffer, so the helpers below
// hand the worker buffers it may own outright and list them for transfer.

export type CodecOutcome<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; message: string };

export function failure(err: unknown): CodecOutcome<never> {
  const e = toCairnError(err);
  return { ok: false, code: e.code, message: e.message };
}

export function unwrapOutcome<T>(outcome: CodecOutcome<T>): T {
  if (!outcome.ok) throw new CairnError(outcome.code, outcome.message);
  return outcome.value;
}

export type EncodeTask = EncodeSegmentInput;

/** The shard set as it leaves the worker: one transferred buffer and where each shard and hash lies in it. */
export interface EncodeResult {
  buffer: ArrayBuffer;
  /** The plaintext's buffer, sent back (when the task owned it) so the caller can reuse it. */
  spent?: ArrayBuffer;
  shardSize: number;
  sealedLength: number;
  shardOffsets: number[];
  hashOffsets: number[];
}

/** The k+m shard slots (slot i at i·shardSize; undefined bytes when absent) followed by the k+m recorded hashes. */
export interface DecodeTask extends SegmentRef {
  sealedLength: number;
  shardSize: number;
  buffer: ArrayBuffer;
  present: boolean[];
  /** Memory for the plaintext (sent back with it), e.g. a recycled buffer. */
  out?: ArrayBuffer;
}

/**
 * The plaintext (a view at the start of the task's `out`, or else owning its ArrayBuffer; transferred
 * either way) and the task's buffer sent back for reuse.
 */
export interface DecodeResult {
  plaintext: Uint8Array;
  spent: ArrayBuffer;
}

export interface PackedTask<T> {
  task: T;
  transferList: ArrayBuffer[];
}

/** Whether transferring view.buffer moves exactly this view's bytes and nothing else. */
export function ownsBuffer(view: Uint8Array): view is Uint8Array & { buffer: ArrayBuffer } {
  return view.buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === view.buffer.byteLength;
}

/**
 * An encode task ready for pool.run(task, { name: 'encode', transferList }). When the plaintext owns
 * its ArrayBuffer that buffer is transferred (and detached here); otherwise it is copied. `into` (e.g.
 * an earlier result's buffer) is transferred too and reused: pass it only once nothing reads its views.
 * `lentWhole` says the caller owns all of plaintext.buffer (a pooled buffer the plaintext fills only
 * in part, as a file's last segment does): it is transferred whole instead of copied.
 */
export function makeEncodeTask(ref: SegmentRef, plaintext: Uint8Array, into?: ArrayBuffer, lentWhole = false): PackedTask<EncodeTask> {
  invariant(!lentWhole || (plaintext.buffer instanceof ArrayBuffer && plaintext.byteOffset === 0), 'a lent buffer starts with the plaintext');
  const owned = lentWhole || ownsBuffer(plaintext) ? (plaintext as Uint8Array & { buffer: ArrayBuffer }) : new Uint8Array(plaintext);
  const task: EncodeTask = { ...ref, key: new Uint8Array(ref.key), plaintext: owned };
  const transferList = [owned.buffer];
  if (into !== undefined) {
    task.into = into;
    transferList.push(into);
  }
  return { task, transferList };
}

export function toEncodeResult(segment: EncodedSegment, spent?: ArrayBuffer): EncodeResult {
  return {
    buffer: segment.buffer,
    ...(spent !== undefined && spent !== segment.buffer ? { spent } : {}),
    shardSize: segment.shardSize,
    sealedLength: segment.sealedLength,
    shardOffsets: segment.shards.map((s) => s.byteOffset),
    hashOffsets: segment.hashes.map((h) => h.byteOffset),
  };
}

export function encodeResultViews(result: EncodeResult): { shards: Uint8Array[]; hashes: Buffer[] } {
  return {
    shards: result.shardOffsets.map((at) => new Uint8Array(result.buffer, at, result.shardSize)),
    hashes: result.hashOffsets.map((at) => Buffer.from(result.buffer, at, HASH_BYTES)),
  };
}

/** Bytes of the shard set (shards, then hashes) that encodeSegment makes for a plaintext of this length. */
export function encodeBufferBytes(plaintextLength: number, k: number, m: number): number {
  return (k + m) * (shardSizeFor(sealedLengthOf(plaintextLength), k) + HASH_BYTES);
}

/** Bytes of the buffer makeDecodeTask packs a segment's shards and hashes into. */
export function decodeBufferBytes(ref: { sealedLength: number; k: number; m: number }): number {
  return (ref.k + ref.m) * (shardSizeFor(ref.sealedLength, ref.k) + HASH_BYTES);
}

/**
 * A decode task for pool.run(task, { name: 'decode', transferList }); copies shards and hashes into
 * one buffer: `into` when it is exactly decodeBufferBytes(ref) long (a recycled one), else a new one.
 * `out`, if given, is transferred too and receives the plaintext.
 */
export function makeDecodeTask(
  ref: SegmentRef & { sealedLength: number },
  shards: readonly (Uint8Array | null)[],
  hashes: readonly Uint8Array[],
  into?: ArrayBuffer,
  out?: ArrayBuffer,
): PackedTask<DecodeTask> {
  const n = ref.k + ref.m;
  if (shards.length !== n || hashes.length !== n) {
    throw new CairnError('BAD_REQUEST', `segment ${ref.index}: expected ${n} shards and hashes, got ${shards.length} and ${hashes.length}`);
  }
  const size = shardSizeFor(ref.sealedLength, ref.k);
  const bytesNeeded = decodeBufferBytes(ref);
  const buffer = into !== undefined && into.byteLength === bytesNeeded ? into : new ArrayBuffer(bytesNeeded);
  const bytes = new Uint8Array(buffer);
  // A shard of the wrong size cannot be the one recorded; leaving it out is the same as failing its hash.
  const present = shards.map((s) => s !== null && s.length === size);
  for (let i = 0; i < n; i++) if (present[i]) bytes.set(shards[i]!, i * size);
  hashes.forEach((h, i) => {
    if (h.length !== HASH_BYTES) throw new CairnError('BAD_REQUEST', `segment ${ref.index}: hash ${i} is not ${HASH_BYTES} bytes`);
    bytes.set(h, n * size + i * HASH_BYTES);
  });
  const task: DecodeTask = { ...ref, key: new Uint8Array(ref.key), shardSize: size, buffer, present };
  if (out === undefined) return { task, transferList: [buffer] };
  task.out = out;
  return { task, transferList: [buffer, out] };
}

export function decodeInputFromTask(task: DecodeTask): DecodeSegmentInput {
  const n = task.k + task.m;
  const { buffer, shardSize, present } = task;
  const expected = shardSizeFor(task.sealedLength, task.k);
  if (shardSize !== expected || present.length !== n || buffer.byteLength !== n * (shardSize + HASH_BYTES)) {
    throw new CairnError('BAD_REQUEST', `segment ${task.index}: decode task buffer does not match k=${task.k}, m=${task.m}`);
  }
  const slots = shardViews(buffer, 0, n, shardSize);
  return {
    key: task.key,
    fileId: task.fileId,
    index: task.index,
    last: task.last,
    k: task.k,
    m: task.m,
    hashAlg: task.hashAlg,
    sealedLength: task.sealedLength,
    shards: slots.map((s, i) => (present[i] ? s : null)),
    hashes: shardViews(buffer, n * shardSize, n, HASH_BYTES),
    ...(task.out ? { out: new Uint8Array(task.out) } : {}),
  };
}
