/**
 * The client's worker pool for the CPU work of a segment (seal, encode, hash; verify, decode,
 * open). Settings come from the configuration; inputs are transferred to the workers, not copied.
 */
import { Piscina } from 'piscina';
import type { PoolSettings } from '../config/config.js';
import { CairnError } from '../errors.js';
import {
  decodeSegment,
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

const WORKER = new URL('../../workers/codec.js', import.meta.url).href;

/**
 * Below this many bytes a segment is cheaper to code right here than to hand to a worker
 * (FACTS.md: the pool loses to the main thread at 64 KiB and wins from about 1 MiB).
 */
export const INLINE_BELOW_BYTES = 64 * 1024;

export interface PoolStats {
  settings: PoolSettings;
  threads: number;
  queueSize: number;
  completed: number;
  inline: number;
  utilization: number; // 0..1 since start
  runTimeP50Ms: number;
  waitTimeP50Ms: number;
}

export class CodecPool {
  readonly #pool: Piscina;
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

  /** Seals, erasure-codes and hashes one segment; the plaintext's buffer is moved to the worker. */
  async encode(ref: SegmentRef, plaintext: Uint8Array): Promise<{ shards: Uint8Array[]; hashes: Buffer[]; sealedLength: number }> {
    if (plaintext.length < INLINE_BELOW_BYTES) {
      const { shards, hashes, sealedLength } = encodeSegment({ ...ref, plaintext });
      this.#inline += 1;
      return { shards, hashes, sealedLength };
    }
    const { task, transferList } = makeEncodeTask(ref, plaintext);
    const result = await this.#run<EncodeResult>('encode', task, transferList);
    return { ...encodeResultViews(result), sealedLength: result.sealedLength };
  }

  /** Verifies, rebuilds and opens one segment from whichever shards are present (null = missing). */
  async decode(ref: SegmentRef & { sealedLength: number }, shards: (Uint8Array | null)[], hashes: Uint8Array[]): Promise<Uint8Array> {
    if (ref.sealedLength < INLINE_BELOW_BYTES) {
      this.#inline += 1;
      // decodeSegment may rebuild into the shard slots it is given: hand it copies.
      return decodeSegment({ ...ref, shards: shards.map((s) => (s ? Uint8Array.from(s) : null)), hashes });
    }
    const { task, transferList } = makeDecodeTask(ref, shards, hashes);
    return this.#run<DecodeResult>('decode', task, transferList);
  }

  async #run<R>(name: string, task: object, transferList: ArrayBuffer[]): Promise<R> {
    let outcome: CodecOutcome<R>;
    try {
      outcome = (await this.#pool.run(task, { name, transferList })) as CodecOutcome<R>;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (/queue is full/i.test(message)) throw new CairnError('OVERLOADED', 'the worker pool queue is full; retry shortly');
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
      runTimeP50Ms: p.histogram.runTime.p50,
      waitTimeP50Ms: p.histogram.waitTime.p50,
    };
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
