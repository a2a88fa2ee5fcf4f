/**
 * Recycled segment and shard-set buffers. A multi-megabyte ArrayBuffer is costly to make: fresh
 * pages are faulted in and zeroed, and every 64 MiB of new external memory makes V8 run a full
 * mark-compact of the whole heap (measured: the web client spent ~40 % of its CPU in GC during a
 * download before recycling). Buffers handed back here are reused for the next segment of the same
 * size, and they travel to workers and back by transfer, which costs neither.
 *
 * A buffer may be given back only once nothing reads or writes it any more. Free buffers are freed
 * once the pool has not been used for a second (src/idle.ts): an idle cluster keeps no transfer's
 * worth of them.
 */
import { invariant } from '../errors.js';
import { freeBuffers, releaseWhenIdle, type IdleReleasable } from '../idle.js';

export interface BufferPoolStats {
  pooledBytes: number;
  reused: number;
  created: number;
}

export class BufferPool implements IdleReleasable {
  /** byteLength → free buffers of exactly that size, oldest size class first (Map order). */
  readonly #free = new Map<number, ArrayBuffer[]>();
  #pooledBytes = 0;
  #reused = 0;
  #created = 0;
  #lastUsed = performance.now();

  /** @param maxBytes  free buffers kept at most; past it, given-back buffers are left to GC. */
  constructor(readonly maxBytes: number) {
    invariant(Number.isSafeInteger(maxBytes) && maxBytes >= 0, 'buffer pool bound is a non-negative integer');
    releaseWhenIdle(this);
  }

  /** A buffer of exactly `bytes` bytes, contents undefined. */
  take(bytes: number): ArrayBuffer {
    this.#lastUsed = performance.now();
    const list = this.#free.get(bytes);
    const reused = list?.pop();
    if (reused !== undefined) {
      if (list!.length === 0) this.#free.delete(bytes);
      this.#pooledBytes -= bytes;
      this.#reused += 1;
      return reused;
    }
    this.#created += 1;
    return new ArrayBuffer(bytes);
  }

  /** Hands a buffer back for reuse. Detached (transferred-away) buffers are ignored. */
  give(buffer: ArrayBuffer): void {
    const bytes = buffer.byteLength;
    if (bytes === 0 || bytes > this.maxBytes) return;
    // Make room by dropping the size classes not used for longest (a changed segment size).
    for (const [size, list] of this.#free) {
      if (this.#pooledBytes + bytes <= this.maxBytes) break;
      while (list.length > 0 && this.#pooledBytes + bytes > this.maxBytes) {
        list.pop();
        this.#pooledBytes -= size;
      }
      if (list.length === 0) this.#free.delete(size);
    }
    const list = this.#free.get(bytes);
    invariant(list === undefined || !list.includes(buffer), 'a buffer is given back to the pool once');
    if (list) list.push(buffer);
    else this.#free.set(bytes, [buffer]);
    this.#pooledBytes += bytes;
  }

  lastUsed(): number {
    return this.#lastUsed;
  }

  /** Frees every free buffer now (the next take makes new ones). */
  releaseIdle(): void {
    freeBuffers([...this.#free.values()].flat());
    this.#free.clear();
    this.#pooledBytes = 0;
  }

  stats(): BufferPoolStats {
    return { pooledBytes: this.#pooledBytes, reused: this.#reused, created: this.#created };
  }
}
