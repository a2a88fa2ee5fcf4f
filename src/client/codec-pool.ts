/**
 * The client's worker pool for the CPU work of a segment (seal, encode, hash; verify, decode,
 * open). Settings come from the configuration; inputs are transferred to the workers, not copied.
 */
import { Piscina } from 'piscina';
import type { PoolSettings } from '../config/config.js';
import { CairnError } from '../errors.js';
import { BufferPool, type BufferPoolStats } from '../codec/buffer-pool.js';
import {
  decodeBufferBytes,
  decodeSegment,
  encodeBufferBytes,
  encodeSegment,
  encodeResultViews,
  makeDecodeTask,
  makeEncodeTask,
  unwrapOutcome,
  type CodecOutcome,
  type DecodeResult,
  type EncodeResult,
  type SegmentRef,
} from '../codec/segment-codec.js';
import { TAG_BYTES } from '../codec/segment-seal.js';

const WORKER = new URL('../../workers/codec.js', import.meta.url).href;

/**
 * Below this many bytes a segment is cheaper to code right here than to hand to a worker
 * (FACTS.md: the pool loses to the main thread at 64 KiB and wins from about 1 MiB).
 */
export const INLINE_BELOW_BYTES = 64 * 1024;

/** Free segment and shard buffers kept for reuse (one 4 MiB segment in flight uses ~10 MiB; a few free ones cover a transfer). */
const RECYCLED_BYTES = 32 * 1024 * 1024;

/** A segment's plaintext; `release` hands its memory back once nothing reads it (the socket has sent it). */
export interface DecodedSegment {
  plaintext: Uint8Array;
  release(): void;
}

/** Gives `buffer` back to `pool` on the first call only. */
function releaser(pool: BufferPool, buffer: ArrayBuffer): () => void {
  let released = false;
  return () => {
    if (!released) pool.give(buffer);
    released = true;
  };
}

/** One segment's shards and hashes; `release` hands their memory back once nothing reads them. */
export interface EncodedShards {
  shards: Uint8Array[];
  hashes: Buffer[];
  sealedLength: number;
  release(): void;
}

export interface PoolStats {
  settings: PoolSettings;
  threads: number;
  queueSize: number;
  completed: number;
  inline: number;
  utilization: number; // 0..1 since start
  buffers: BufferPoolStats;
  runTimeP50Ms: number;
  waitTimeP50Ms: number;
}

export class CodecPool {
  readonly #pool: Piscina;
  readonly #buffers = new BufferPool(RECYCLED_BYTES);
  /** Buffers handed out by segmentBuffer: a view of one's start may move it whole to a worker. */
  readonly #lent = new WeakSet<ArrayBuffer>();
  #inline = 0; // small segments coded on the main thread

  constructor(readonly settings: PoolSettings) {
    this.#pool = new Piscina({
      filename: WORKER,
      minThreads: settings.minThreads,
      maxThreads: settings.maxThreads,
      idleTimeout: settings.idleTimeoutMs,
      maxQueue: settings.maxQueue,
      concurrentTasksPerWorker: settings.concurrentTasksPerWorker,
    });
  }

  /**
   * A buffer for a segment's plaintext: pass it to encode (which moves it to a worker and recycles
   * it), or give it back with recycle() if it is not used.
   */
  segmentBuffer(bytes: number): Buffer {
    const buffer = this.#buffers.take(bytes);
    this.#lent.add(buffer);
    return Buffer.from(buffer);
  }

  /** Gives back a buffer from segmentBuffer, also through a view of its start; any other is left to GC. */
  recycle(buffer: Uint8Array): void {
    const whole = this.#lentWhole(buffer);
    if (whole) this.#buffers.give(whole);
  }

  #lentWhole(view: Uint8Array): ArrayBuffer | undefined {
    return view.byteOffset === 0 && view.buffer instanceof ArrayBuffer && this.#lent.has(view.buffer) ? view.buffer : undefined;
  }

  /**
   * Seals, erasure-codes and hashes one segment; the plaintext's buffer is moved to the worker. A
   * short segment (a file's last) in a buffer from segmentBuffer moves with it whole and is coded
   * into a buffer of the full segment's size class: no odd-sized memory for the last segment.
   */
  async encode(ref: SegmentRef, plaintext: Uint8Array): Promise<EncodedShards> {
    const whole = this.#lentWhole(plaintext);
    if (plaintext.length < INLINE_BELOW_BYTES) {
      const { shards, hashes, sealedLength } = encodeSegment({ ...ref, plaintext });
      if (whole) this.#buffers.give(whole);
      this.#inline += 1;
      return { shards, hashes, sealedLength, release: () => undefined };
    }
    const into = this.#buffers.take(encodeBufferBytes(whole ? whole.byteLength : plaintext.length, ref.k, ref.m));
    const { task, transferList } = makeEncodeTask(ref, plaintext, into, whole !== undefined);
    const result = await this.#run<EncodeResult>('encode', task, transferList);
    if (result.spent) this.#buffers.give(result.spent);
    return { ...encodeResultViews(result), sealedLength: result.sealedLength, release: releaser(this.#buffers, result.buffer) };
  }

  /**
   * Verifies, rebuilds and opens one segment from whichever shards are present (null = missing).
   * The plaintext lands in a recycled buffer: a fresh one per segment, made in a worker and moved
   * here, cost page faults there and a full garbage collection here every ~12 MiB downloaded
   * (measured: 256 MiB down took 22 major GCs with fresh buffers, 13 without, and ran ~13 % faster).
   */
  async decode(ref: SegmentRef & { sealedLength: number }, shards: (Uint8Array | null)[], hashes: Uint8Array[]): Promise<DecodedSegment> {
    if (ref.sealedLength < INLINE_BELOW_BYTES) {
      this.#inline += 1;
      // decodeSegment may rebuild into the shard slots it is given: hand it copies.
      const plaintext = decodeSegment({ ...ref, shards: shards.map((s) => (s ? Uint8Array.from(s) : null)), hashes });
      return { plaintext, release: () => undefined };
    }
    const into = this.#buffers.take(decodeBufferBytes(ref));
    const out = this.#buffers.take(ref.sealedLength - TAG_BYTES);
    const { task, transferList } = makeDecodeTask(ref, shards, hashes, into, out);
    const { plaintext, spent } = await this.#run<DecodeResult>('decode', task, transferList);
    this.#buffers.give(spent);
    return { plaintext, release: releaser(this.#buffers, plaintext.buffer as ArrayBuffer) };
  }

  async #run<R>(name: string, task: object, transferList: ArrayBuffer[]): Promise<R> {
    let outcome: CodecOutcome<R>;
    try {
      outcome = (await this.#pool.run(task, { name, transferList })) as CodecOutcome<R>;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // Piscina 5's words for a task refused because maxQueue tasks are waiting already.
      if (/task queue is at limit/i.test(message)) throw new CairnError('OVERLOADED', 'the worker pool queue is full; retry shortly');
      throw new CairnError('INTERNAL', `worker task ${name} failed: ${message}`, { cause: err });
    }
    return unwrapOutcome(outcome);
  }

  stats(): PoolStats {
    const p = this.#pool;
    return {
      settings: this.settings,
      threads: p.threads.length,
      queueSize: p.queueSize,
      completed: p.completed,
      inline: this.#inline,
      utilization: p.utilization,
      buffers: this.#buffers.stats(),
      runTimeP50Ms: p.histogram.runTime.p50,
      waitTimeP50Ms: p.histogram.waitTime.p50,
    };
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
