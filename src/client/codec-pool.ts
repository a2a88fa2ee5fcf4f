/**
 * The client's worker pool for the CPU work of a segment (seal, encode, hash; verify, decode,
 * open). Settings come from the configuration; inputs are transferred to the workers, not copied.
 */
import { Piscina } from 'piscina';
import type { PoolSettings } from '../config/config.js';
import { CairnError } from '../errors.js';
import type { DecodeSegmentInput as DecodeTask, EncodedSegment as EncodeResult, EncodeSegmentInput as EncodeTask } from '../codec/segment-codec.js';

const WORKER = new URL('../../workers/codec.js', import.meta.url).href;

export interface PoolStats {
  settings: PoolSettings;
  threads: number;
  queueSize: number;
  completed: number;
  utilization: number; // 0..1 since start
  runTimeP50Ms: number;
  waitTimeP50Ms: number;
}

export class CodecPool {
  readonly #pool: Piscina;

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

  async encode(task: EncodeTask): Promise<EncodeResult> {
    return this.#run<EncodeResult>('encode', task, [task.plaintext.buffer as ArrayBuffer]);
  }

  async decode(task: DecodeTask): Promise<Uint8Array> {
    const transfer = new Set<ArrayBuffer>();
    for (const s of task.shards) if (s && s.byteOffset === 0 && s.byteLength === s.buffer.byteLength) transfer.add(s.buffer as ArrayBuffer);
    return this.#run<Uint8Array>('decode', task, [...transfer]);
  }

  async #run<R>(name: string, task: object, transferList: ArrayBuffer[]): Promise<R> {
    try {
      return (await this.#pool.run(task, { name, transferList })) as R;
    } catch (err) {
      if (err instanceof CairnError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      if (/queue is full/i.test(message)) throw new CairnError('OVERLOADED', 'the worker pool queue is full; retry shortly');
      // Errors thrown in a worker arrive as plain Errors; keep their code where one was set.
      const code = (err as { code?: string }).code;
      if (code === 'INTEGRITY' || code === 'HASH_MISMATCH' || code === 'BAD_REQUEST') throw new CairnError(code, message);
      throw new CairnError('INTERNAL', `worker task ${name} failed: ${message}`, { cause: err });
    }
  }

  stats(): PoolStats {
    const p = this.#pool;
    return {
      settings: this.settings,
      threads: p.threads.length,
      queueSize: p.queueSize,
      completed: p.completed,
      utilization: p.utilization,
      runTimeP50Ms: p.histogram.runTime.p50,
      waitTimeP50Ms: p.histogram.waitTime.p50,
    };
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
