/**
 * The parent's side of upload-child.ts: a process started ahead of time that uploads on `go()`.
 * Starting eight node processes costs ~0.1 CPU-s each, about a tenth of the two cores during eight
 * concurrent 64 MiB uploads; with the start inside the scenario's clock, the figure measured
 * process start-up as much as cairn.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { UploadOutcome } from './http-load.js';

const SCRIPT = fileURLToPath(new URL('./upload-child.js', import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const MAX_OUTPUT_BYTES = 64 * 1024;

export class ChildUploader {
  /** Settles once the child is loaded and waits for `go` (rejects if it dies or takes too long). */
  readonly ready: Promise<void>;
  readonly #child: ChildProcess;
  readonly #outcome: Promise<UploadOutcome>;

  constructor(base: string, token: string, name: string, size: number) {
    this.#child = spawn(process.execPath, [SCRIPT, base, token, name, String(size)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: string[] = [];
    let out = '';
    let onLine = () => {};
    this.#child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      if (out.length > MAX_OUTPUT_BYTES) this.#child.kill();
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        lines.push(out.slice(0, nl));
        out = out.slice(nl + 1);
        onLine();
      }
    });
    const exited = new Promise<string>((resolve) => this.#child.once('exit', (code, signal) => resolve(`upload child exited (${signal ?? code}) ${lines.join(' ').slice(0, 300)}`)));
    /** The child's next line; without a timeout, only its exit ends the wait. */
    const nextLine = (timeoutMs?: number) =>
      new Promise<string>((resolve, reject) => {
        const timer = timeoutMs === undefined ? undefined : setTimeout(() => reject(new Error(`upload child: no answer within ${timeoutMs} ms`)), timeoutMs);
        const take = () => {
          if (lines.length === 0) return;
          clearTimeout(timer);
          resolve(lines.shift()!);
        };
        onLine = take;
        take();
        void exited.then((why) => {
          clearTimeout(timer);
          if (lines.length > 0) take();
          else reject(new Error(why));
        });
      });
    this.ready = nextLine(READY_TIMEOUT_MS).then((line) => {
      if (line !== 'ready') throw new Error(`upload child: expected "ready", got ${JSON.stringify(line.slice(0, 200))}`);
    });
    this.ready.catch(() => undefined);
    this.#outcome = this.ready.then(async () => {
      // The upload's own timeout (http-load's) bounds the child, and its exit ends this wait.
      const line = await nextLine();
      return JSON.parse(line) as UploadOutcome;
    });
    this.#outcome.catch(() => undefined);
  }

  /** Starts the upload; settles with its outcome. */
  go(): Promise<UploadOutcome> {
    this.#child.stdin!.end('go\n');
    return this.#outcome;
  }

  /** Ends a child that never got `go` or is still running after a failure elsewhere. */
  stop(): void {
    if (this.#child.exitCode === null && this.#child.signalCode === null) this.#child.kill();
  }
}
