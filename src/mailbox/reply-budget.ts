/**
 * The bytes of bulk replies (shards) one mailbox server holds at once, over all its connections:
 * from the moment a request is let make one until the socket has taken it. Each connection already
 * bounds what waits for its own peer (the reply backlog and the in-flight count), but not how many
 * connections do so at once: 256 peers reading nothing pinned up to ~18 GiB of shards for the
 * 30-odd seconds before each was dropped. A request waits here for room instead.
 *
 * One connection may hold at most a quarter of the budget, so up to three peers that stall (until
 * their stall deadline drops them) leave room for everyone else. More can fill it: a request then
 * waits while the budget makes progress (bytes given back), and is answered OVERLOADED (retryable)
 * once none has been given back for waitMs, or after MAX_WAIT_MS in all. So its connection's other
 * messages (consensus, chain requests) are not held behind it for the 30 s until stalled peers go,
 * and a busy but healthy SP (large shards, many downloads) makes readers wait, not fail.
 */
import { CairnError, invariant } from '../errors.js';

/** The longest a request waits for room, progress or not: the stall deadline that frees it anyway. */
const MAX_WAIT_MS = 30_000;

/** What one request holds of the budget; given back once its reply is out (or never made). */
export interface ReplyGrant {
  /** Holds `bytes` instead: the reply came out at another size than reserved. */
  resize(bytes: number): void;
  /** Gives the bytes back; later calls do nothing. */
  release(): void;
}

interface Waiter {
  owner: object;
  bytes: number;
  grant: (g: ReplyGrant) => void;
  fail: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class ReplyBudget {
  readonly ownerLimit: number;
  #used = 0;
  /** performance.now() when bytes were last given back: the budget is moving. */
  #progressAt = performance.now();
  readonly #byOwner = new Map<object, number>();
  /** Requests waiting, oldest first; at most every connection's in-flight requests. */
  readonly #waiting: Waiter[] = [];

  /**
   * @param limit  bytes held at once over every owner
   * @param waitMs  how long a request may wait for room with no bytes given back before it is refused OVERLOADED
   */
  constructor(
    readonly limit: number,
    readonly waitMs: number,
  ) {
    invariant(Number.isSafeInteger(limit) && limit > 0, 'a reply budget is a positive number of bytes');
    invariant(waitMs > 0, 'a request may wait for reply room a positive time');
    this.ownerLimit = Math.max(1, Math.floor(limit / 4));
  }

  get used(): number {
    return this.#used;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Resolves with `bytes` of the budget held for `owner`, at once when there is room. */
  acquire(owner: object, bytes: number): Promise<ReplyGrant> {
    const now = this.tryAcquire(owner, bytes);
    return now ? Promise.resolve(now) : this.wait(owner, bytes);
  }

  /**
   * `bytes` held for `owner` now, or undefined when there is no room. Whoever waits is held back
   * by what does not hold this one back (its owner's share, a larger size): no one is overtaken.
   */
  tryAcquire(owner: object, bytes: number): ReplyGrant | undefined {
    invariant(Number.isSafeInteger(bytes) && bytes >= 0, 'a reply reserves a whole number of bytes');
    return this.#fits(owner, bytes) ? this.#take(owner, bytes) : undefined;
  }

  /** Waits for room for `bytes` while the budget moves (see the top of this file), else OVERLOADED. */
  wait(owner: object, bytes: number): Promise<ReplyGrant> {
    invariant(Number.isSafeInteger(bytes) && bytes >= 0, 'a reply reserves a whole number of bytes');
    const since = performance.now();
    return new Promise((grant, fail) => {
      const check = (): void => {
        const now = performance.now();
        const still = Math.min(this.#progressAt + this.waitMs, since + MAX_WAIT_MS) - now;
        if (still > 0) {
          waiter.timer = setTimeout(check, still);
          return;
        }
        const at = this.#waiting.indexOf(waiter);
        invariant(at >= 0, 'a request still waits for reply room when its wait runs out');
        this.#waiting.splice(at, 1);
        fail(new CairnError('OVERLOADED', `this provider holds as many shard replies as it may for peers that are not taking them (none made room for ${this.waitMs} ms); retry shortly`));
      };
      const waiter: Waiter = { owner, bytes, grant, fail, timer: setTimeout(check, this.waitMs) };
      this.#waiting.push(waiter);
      this.#wake();
    });
  }

  /** Fails every request `owner` has waiting (its connection is gone). */
  cancel(owner: object): void {
    for (let i = this.#waiting.length - 1; i >= 0; i--) {
      const w = this.#waiting[i]!;
      if (w.owner !== owner) continue;
      this.#waiting.splice(i, 1);
      clearTimeout(w.timer);
      w.fail(new CairnError('CONNECTION_CLOSED', 'the connection closed before the request was handled'));
    }
    this.#wake();
  }

  /**
   * Room for `bytes` more: within the budget and the owner's share, or the only holder (a reply
   * larger than either must still be made, alone).
   */
  #fits(owner: object, bytes: number): boolean {
    const mine = this.#byOwner.get(owner) ?? 0;
    const overall = this.#used === 0 || this.#used + bytes <= this.limit;
    const own = mine === 0 || mine + bytes <= this.ownerLimit;
    return overall && own;
  }

  #take(owner: object, bytes: number): ReplyGrant {
    let held = 0;
    let released = false;
    const change = (delta: number): void => {
      held += delta;
      this.#used += delta;
      const mine = (this.#byOwner.get(owner) ?? 0) + delta;
      invariant(this.#used >= 0 && mine >= 0, 'a reply budget never gives back more than it lent');
      if (mine === 0) this.#byOwner.delete(owner);
      else this.#byOwner.set(owner, mine);
    };
    change(bytes);
    return {
      resize: (next) => {
        invariant(Number.isSafeInteger(next) && next >= 0, 'a reply holds a whole number of bytes');
        if (released) return;
        const shrinks = next < held;
        change(next - held);
        if (shrinks) this.#gaveBack();
      },
      release: () => {
        if (released) return;
        released = true;
        change(-held);
        this.#gaveBack();
      },
    };
  }

  #gaveBack(): void {
    this.#progressAt = performance.now();
    this.#wake();
  }

  /** Grants, oldest first, every waiting request that now fits (one owner's full share does not hold up the others). */
  #wake(): void {
    for (let i = 0; i < this.#waiting.length; ) {
      const w = this.#waiting[i]!;
      if (!this.#fits(w.owner, w.bytes)) {
        i += 1;
        continue;
      }
      this.#waiting.splice(i, 1);
      clearTimeout(w.timer);
      w.grant(this.#take(w.owner, w.bytes));
    }
  }
}
