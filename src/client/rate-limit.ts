/**
 * Slows down password guessing: after a few failures for a key (username and address), each
 * further attempt must wait twice as long as the last, up to a cap. Attempts still being checked
 * count against the free failures, so guesses sent all at once are not all checked before the
 * first failure is counted. Bounded memory: the oldest keys are forgotten first.
 */
import { CairnError } from '../errors.js';

interface Entry {
  failures: number;
  lastFailure: number;
  lockedUntil: number;
  checking: number; // attempts begun and not yet ended
}

/** One sign-in attempt: end it once, with its outcome. */
export interface Attempt {
  succeeded(): void;
  failed(now?: number): void;
  /** Neither: the check itself could not be made (the chain unreachable …). */
  abandoned(): void;
}

export class FailureLimiter {
  readonly #entries = new Map<string, Entry>();

  constructor(
    private readonly freeFailures = 3,
    private readonly baseDelayMs = 1_000,
    private readonly maxDelayMs = 5 * 60_000,
    private readonly maxKeys = 50_000,
    /** Failures this old, with none since, are forgotten. */
    private readonly forgetAfterMs = 60 * 60_000,
  ) {}

  /** Starts an attempt, or refuses it with RATE_LIMITED while the key is locked or has as many in check as it may still fail. */
  begin(key: string, now = Date.now()): Attempt {
    const e = this.#entries.get(key) ?? { failures: 0, lastFailure: 0, lockedUntil: 0, checking: 0 };
    if (e.failures > 0 && now - e.lastFailure > this.forgetAfterMs && e.lockedUntil <= now) e.failures = 0;
    if (e.lockedUntil > now) {
      throw new CairnError('RATE_LIMITED', `too many failed sign-ins; try again in ${Math.ceil((e.lockedUntil - now) / 1000)} s`);
    }
    if (e.checking >= Math.max(1, this.freeFailures - e.failures)) {
      throw new CairnError('RATE_LIMITED', 'sign-ins from here for this account are being checked already; try again in a moment');
    }
    e.checking += 1;
    this.#touch(key, e);
    let ended = false;
    const end = (outcome: 'ok' | 'failed' | 'abandoned', at = Date.now()) => {
      if (ended) return;
      ended = true;
      const current = this.#entries.get(key);
      if (current !== e) return; // forgotten meanwhile (bounded memory)
      e.checking -= 1;
      if (outcome === 'ok') this.#entries.delete(key);
      if (outcome !== 'failed') return;
      e.failures += 1;
      e.lastFailure = at;
      if (e.failures > this.freeFailures) {
        e.lockedUntil = at + Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (e.failures - this.freeFailures - 1));
      }
    };
    return { succeeded: () => end('ok'), failed: (at?: number) => end('failed', at), abandoned: () => end('abandoned') };
  }

  #touch(key: string, e: Entry): void {
    this.#entries.delete(key);
    this.#entries.set(key, e);
    while (this.#entries.size > this.maxKeys) this.#entries.delete(this.#entries.keys().next().value!);
  }
}

/**
 * Sign-in guessing bounded twice: per account and address (a few free failures), and per address
 * across accounts (more of them), so guesses spread over made-up names, which also push locked
 * keys out of the per-account table, soon wait too.
 */
export class SignInLimiter {
  constructor(
    private readonly perAccount = new FailureLimiter(3),
    private readonly perAddress = new FailureLimiter(30),
  ) {}

  begin(username: string, address: string, now = Date.now()): Attempt {
    const account = this.perAccount.begin(`${username}@${address}`, now);
    let from: Attempt;
    try {
      from = this.perAddress.begin(address, now);
    } catch (err) {
      account.abandoned();
      throw err;
    }
    return {
      succeeded: () => {
        account.succeeded();
        from.abandoned(); // one good password does not clear what an address guessed elsewhere
      },
      failed: (at?: number) => {
        account.failed(at);
        from.failed(at);
      },
      abandoned: () => {
        account.abandoned();
        from.abandoned();
      },
    };
  }
}
