/**
 * One run of an expensive operation shared by everyone who asks while it runs: a burst of callers
 * (thirty page views, two web clients) costs one run, not thirty. A caller after it finished gets
 * a fresh run.
 */
export class SharedRun<T> {
  #running: Promise<T> | null = null;

  constructor(private readonly run: () => Promise<T>) {}

  get(): Promise<T> {
    if (this.#running) return this.#running;
    const running = Promise.resolve().then(this.run);
    this.#running = running;
    const done = () => {
      if (this.#running === running) this.#running = null;
    };
    running.then(done, done);
    return running;
  }
}
