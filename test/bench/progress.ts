/**
 * Progress of the benchmark on stderr: a redrawn bar when stderr is a terminal, plain lines
 * otherwise (one when a step starts and one when it ends, so logs stay readable).
 */
export class Progress {
  readonly tty: boolean;
  #step = 0;
  #name = '';
  #fraction = 0;
  #note = '';
  #stepStarted = 0;
  #lastDraw = 0;
  readonly #started = performance.now();

  constructor(
    public total: number,
    readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
  }

  /** Starts the next step. */
  step(name: string): void {
    this.#step += 1;
    this.#name = name;
    this.#fraction = 0;
    this.#note = '';
    this.#stepStarted = performance.now();
    if (this.tty) this.#draw(true);
    else this.stream.write(`[${this.#step}/${this.total}] ${name} …\n`);
  }

  /** Progress within the current step (0…1) and a short note. Redraws at most ~10 times a second. */
  update(fraction: number, note = ''): void {
    this.#fraction = Math.max(0, Math.min(1, fraction));
    this.#note = note;
    if (this.tty) this.#draw(false);
  }

  /** Ends the current step with a one-line result. */
  done(result: string): void {
    const secs = ((performance.now() - this.#stepStarted) / 1000).toFixed(1);
    if (this.tty) this.stream.write(`\r\x1b[2K[${this.#step}/${this.total}] ${this.#name}: ${result} (${secs} s)\n`);
    else this.stream.write(`[${this.#step}/${this.total}] ${this.#name}: ${result} (${secs} s)\n`);
  }

  log(line: string): void {
    if (this.tty) this.stream.write(`\r\x1b[2K${line}\n`);
    else this.stream.write(`${line}\n`);
    if (this.tty) this.#draw(true);
  }

  finish(): void {
    if (this.tty) this.stream.write('\r\x1b[2K');
  }

  #draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const width = 24;
    const overall = Math.min(1, (this.#step - 1 + this.#fraction) / Math.max(1, this.total));
    const filled = Math.round(overall * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const elapsed = Math.round((now - this.#started) / 1000);
    const cols = this.stream.columns ?? 100;
    const line = `${bar} ${String(Math.round(overall * 100)).padStart(3)}% ${elapsed}s [${this.#step}/${this.total}] ${this.#name} ${Math.round(this.#fraction * 100)}% ${this.#note}`;
    this.stream.write(`\r\x1b[2K${line.slice(0, cols - 1)}`);
  }
}
