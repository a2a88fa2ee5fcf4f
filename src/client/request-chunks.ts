/**
 * A request body's chunks, which the reader can cut short: `interrupt(err)` fails the pending read
 * (or the next) with `err` at once, even while the sender is stalled, so a file that failed (too
 * slow, too many SPs down) is answered without waiting for its sender. The body stays readable:
 * the error handler may still drain it.
 */
import type { Readable } from 'node:stream';

export class RequestChunks implements AsyncIterable<Buffer> {
  #failure: Error | null = null;
  #interrupt: ((err: Error) => void) | null = null;

  constructor(private readonly body: Readable) {}

  interrupt(err: Error): void {
    this.#failure ??= err;
    this.#interrupt?.(err);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    const chunks = this.body.iterator({ destroyOnReturn: false }) as AsyncIterableIterator<Buffer>;
    try {
      for (;;) {
        if (this.#failure) throw this.#failure;
        // A promise of its own per read: racing every read against one long-lived promise would
        // leave a reaction on it per read, each keeping its chunk reachable (the whole body).
        const next = await new Promise<IteratorResult<Buffer>>((resolve, reject) => {
          this.#interrupt = reject;
          chunks.next().then(resolve, reject);
        });
        this.#interrupt = null;
        if (next.done) return;
        yield next.value;
      }
    } finally {
      this.#interrupt = null;
      // Once a pending read settles; it removes the iterator's listeners. Its outcome is of no use.
      void Promise.resolve(chunks.return?.()).catch(() => undefined);
    }
  }
}
