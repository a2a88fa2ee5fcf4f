/**
 * Slows down password guessing: after a few failures for a key (username and address), each
 * further attempt must wait twice as long as the last, up to a cap. Bounded memory: the oldest
 * keys are forgotten first.
 */
import { CairnError } from '../errors.js';

interface Entry {
  failures: number;
  lockedUntil: number;
}

export class FailureLimiter {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly freeFailures = 3,
    private readonly baseDelayMs = 1_000,
    private readonly maxDelayMs = 5 * 60_000,
    private readonly maxKeys = 50_000,
  ) {}

  check(key: string, now = Date.now()): void {
    const e = this.#entries.get(key);
    if (e && e.lockedUntil > now) {
      const seconds = Math.ceil((e.lockedUntil - now) / 1000);
      throw new CairnError('RATE_LIMITED', `too many failed sign-ins; try again in ${seconds} s`);
    }
  }

  fail(key: string, now = Date.now()): void {
    const e = this.#entries.get(key) ?? { failures: 0, lockedUntil: 0 };
    e.failures += 1;
    if (e.failures > this.freeFailures) {
      e.lockedUntil = now + Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (e.failures - this.freeFailures - 1));
    }
    this.#entries.delete(key);
    this.#entries.set(key, e);
    while (this.#entries.size > this.maxKeys) this.#entries.delete(this.#entries.keys().next().value!);
  }

  succeed(key: string): void {
    this.#entries.delete(key);
  }
}
