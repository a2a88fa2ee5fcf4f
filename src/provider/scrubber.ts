/**
 * Background scrub: re-hashes every stored shard at a bounded rate, so rot is found before a
 * reader needs the shard. A rotten shard is removed by the store and so shows up to repair as
 * missing. One pass at a time; an on-demand pass (repair asks for one) runs unthrottled.
 */
import type { ShardStore } from './shard-store.js';

export interface ScrubStats {
  running: boolean;
  /** The running pass holds its rate (a background pass no one waits for). */
  throttled: boolean;
  passes: number;
  scanned: number; // shards checked in all passes
  bad: number; // rotten shards found in all passes
  lastPassAt: number | null;
  recentBad: string[]; // up to 32 keys, newest last
}

const PAGE = 256;
const RECENT_BAD = 32;

export class Scrubber {
  readonly #stats: ScrubStats = { running: false, throttled: false, passes: 0, scanned: 0, bad: 0, lastPassAt: null, recentBad: [] };
  #current: Promise<{ scanned: number; bad: number }> | null = null;
  /** Whether the running pass holds its rate; an on-demand caller lifts it (and wakes the pass). */
  #throttled = false;
  #wake: (() => void) | null = null;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    private readonly shards: ShardStore,
    private readonly opts: { bytesPerSecond: number; intervalMs: number; log: (line: string) => void },
  ) {}

  start(): void {
    const loop = () => {
      if (this.#stopped) return;
      this.#timer = setTimeout(() => void this.runPass(true).finally(loop), this.opts.intervalMs);
      this.#timer.unref();
    };
    loop();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  stats(): ScrubStats {
    return { ...this.#stats, throttled: this.#stats.running && this.#throttled, recentBad: [...this.#stats.recentBad] };
  }

  /**
   * Runs a pass (or joins the one running) and resolves with what it found. An unthrottled caller
   * joining a throttled pass lifts its throttle: it asked for the answer now.
   */
  runPass(throttled = false): Promise<{ scanned: number; bad: number }> {
    if (this.#current) {
      if (!throttled) {
        this.#throttled = false;
        this.#wake?.();
      }
      return this.#current;
    }
    this.#throttled = throttled;
    this.#current = this.#pass().finally(() => {
      this.#current = null;
    });
    return this.#current;
  }

  /** Holds a throttled pass to bytesPerSecond (scrub never starves reads and writes); otherwise just lets other work in. */
  async #pace(started: number, bytes: number): Promise<void> {
    const wait = this.#throttled ? started + (bytes / this.opts.bytesPerSecond) * 1000 - Date.now() : 0;
    if (wait <= 0) {
      await new Promise((r) => setImmediate(r));
      return;
    }
    await new Promise<void>((r) => {
      const timer = setTimeout(r, Math.min(wait, 60_000));
      this.#wake = () => {
        clearTimeout(timer);
        r();
      };
    });
    this.#wake = null;
  }

  async #pass(): Promise<{ scanned: number; bad: number }> {
    this.#stats.running = true;
    let scanned = 0;
    let bad = 0;
    let after: string | undefined;
    const started = Date.now();
    let bytes = 0;
    try {
      for (;;) {
        if (this.#stopped) break;
        const keys = this.shards.keysAfter(after, PAGE);
        if (keys.length === 0) break;
        for (const key of keys) {
          const result = await this.shards.check(key);
          scanned += 1;
          bytes += this.shards.sizeOf(key) ?? 0;
          if (result === 'bad') {
            bad += 1;
            this.#stats.recentBad = [...this.#stats.recentBad, key].slice(-RECENT_BAD);
            this.opts.log(`scrub: shard ${key} failed its hash; removed for repair`);
          }
          // After every shard, not every page: a page of shards hashed in one turn held the
          // event loop for ~0.4-0.8 s, long enough for a leader to miss its heartbeats.
          await this.#pace(started, bytes);
        }
        after = keys.at(-1);
      }
    } finally {
      this.#stats.running = false;
      this.#stats.passes += 1;
      this.#stats.scanned += scanned;
      this.#stats.bad += bad;
      this.#stats.lastPassAt = Date.now();
    }
    return { scanned, bad };
  }
}
