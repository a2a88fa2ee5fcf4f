/**
 * The web client's budget of segments being coded and stored at once, shared by every upload.
 * Each upload also keeps its own window, but without a shared bound memory grew with the number
 * of concurrent uploads (8 × 64 MiB uploads: ~570 MiB client RSS) while the two cores did no more
 * work. Slots are handed out first come, first served, so no upload is starved by the others.
 */
import { invariant } from '../errors.js';

export class SegmentSlots {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly limit: number) {
    invariant(Number.isSafeInteger(limit) && limit >= 1, 'a slot budget is a positive integer');
    this.#free = limit;
  }

  /** Resolves with a release function once a slot is free; call it exactly once. */
  async acquire(): Promise<() => void> {
    if (this.#free > 0) this.#free -= 1;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return this.#releaser();
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      invariant(!released, 'a segment slot is released once');
      released = true;
      const next = this.#waiting.shift();
      if (next) next(); // the slot passes straight to the longest waiter
      else this.#free += 1;
      invariant(this.#free <= this.limit, 'no more slots free than the budget');
    };
  }

  /** A slot's release function if one is free now; null (nothing taken) if not. */
  tryAcquire(): (() => void) | null {
    if (this.#free === 0) return null;
    this.#free -= 1;
    return this.#releaser();
  }

  stats(): { limit: number; inUse: number; waiting: number } {
    return { limit: this.limit, inUse: this.limit - this.#free, waiting: this.#waiting.length };
  }
}
