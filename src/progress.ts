/**
 * A one-line progress bar for people waiting at a terminal; plain occasional lines otherwise
 * (logs and CI stay readable).
 */
export class Progress {
  readonly #tty: boolean;
  #lastPlain = 0;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.#tty = stream.isTTY === true;
  }

  update(done: number, total: number, note = ''): void {
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    if (this.#tty) {
      const width = 30;
      const filled = Math.round(fraction * width);
      this.stream.write(`\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.round(fraction * 100)}% ${note}\u001b[K`);
    } else if (Date.now() - this.#lastPlain > 5_000) {
      this.#lastPlain = Date.now();
      this.stream.write(`${this.label}: ${Math.round(fraction * 100)}% ${note}\n`);
    }
  }

  done(note = ''): void {
    if (this.#tty) this.stream.write(`\r${this.label} done ${note}\u001b[K\n`);
    else this.stream.write(`${this.label}: done ${note}\n`);
  }
}
