/**
 * Load for a web client's HTTP API with node:http (keep-alive), as a script would drive it (small
 * uploads and large downloads by lean clients of our own, which cost a fraction of its CPU):
 * streamed multipart uploads of generated content (no file is ever held whole in the benchmark's
 * memory) and streamed downloads checked byte for byte against what was sent.
 *
 * Content: the file is cut into units of up to 1 MiB; unit u is a 16-byte stamp (file tag, u)
 * followed by the same random block's bytes. Uploads write the stamp and a view of the block, so
 * they copy nothing; downloads compare each piece with memcmp, so checking is cheap.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { LeanConnection, type LeanResponse } from './lean-connection.js';
import { leanGet } from './lean-get.js';

const UNIT = 1024 * 1024;
const STAMP = 16;
const BLOCK = randomBytes(UNIT);

function stamp(tag: bigint, unit: number): Buffer {
  const b = Buffer.allocUnsafe(STAMP);
  b.writeBigUInt64BE(tag, 0);
  b.writeBigUInt64BE(BigInt(unit), 8);
  return b;
}

/** The expected bytes of a generated file, piece by piece. */
export class ContentChecker {
  #pos = 0;
  #bad = false;
  constructor(
    readonly tag: bigint,
    readonly size: number,
  ) {}

  feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length && !this.#bad) {
      if (this.#pos >= this.size) {
        this.#bad = true;
        return;
      }
      const unit = Math.floor(this.#pos / UNIT);
      const o = this.#pos - unit * UNIT;
      const unitLen = Math.min(UNIT, this.size - unit * UNIT);
      const expected = o < STAMP ? stamp(this.tag, unit).subarray(o, Math.min(STAMP, unitLen)) : BLOCK.subarray(o, unitLen);
      const n = Math.min(expected.length, chunk.length - off);
      if (!chunk.subarray(off, off + n).equals(expected.subarray(0, n))) this.#bad = true;
      off += n;
      this.#pos += n;
    }
  }

  get ok(): boolean {
    return !this.#bad && this.#pos === this.size;
  }
}

let tagCounter = BigInt(Date.now()) << 16n;
export function newTag(): bigint {
  tagCounter += 1n;
  return tagCounter;
}

/** The whole content of a small generated file (for small-file uploads). */
export function smallContent(tag: bigint, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  stamp(tag, 0).copy(out, 0, 0, Math.min(STAMP, size));
  if (size > STAMP) BLOCK.copy(out, STAMP, STAMP, size);
  return out;
}

export interface UploadOutcome {
  status: number;
  id: string | undefined;
  block: number | undefined;
  bytes: number;
  seconds: number;
  error?: string;
}

export interface DownloadOutcome {
  status: number;
  bytes: number;
  seconds: number;
  /** From sending the request to the response headers / to the first body byte. */
  headersMs: number;
  firstByteMs: number;
  ok: boolean;
  error?: string;
}

export class HttpApi {
  readonly agent: http.Agent;
  readonly host: string;
  readonly port: number;
  token: string | undefined;

  /** Lean keep-alive connections not carrying a request, for small uploads (see lean-connection.ts). */
  readonly #idle: LeanConnection[] = [];

  constructor(
    readonly base: string,
    readonly maxSockets = 256,
  ) {
    const url = new URL(base);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { ...extra, authorization: `Bearer ${this.token}` } : extra;
  }

  /** A JSON request; resolves with status and parsed body. */
  async json<T = any>(method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<{ status: number; body: T }> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = this.#headers(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {});
    const res = await this.#request({ method, path, headers }, payload, timeoutMs);
    const text = (await collect(res)).toString('utf8');
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode ?? 0, body: parsed as T };
  }

  /**
   * Registers and signs in. A cluster prints its ready line once every actor answers, which can be
   * before its chain has elected a leader: wait for /healthz and retry a 503, with a deadline.
   */
  async signUp(username: string, password: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const health = await this.json('GET', '/healthz').catch((err: Error) => ({ status: 0, body: err.message }));
      if (health.status === 200) {
        const r = await this.json('POST', '/api/v1/users', { username, password });
        // 409: an earlier attempt that answered 503 was written after all.
        if (r.status === 201 || r.status === 409) break;
        last = `${r.status} ${JSON.stringify(r.body)}`;
        if (r.status !== 503) throw new Error(`register ${username}: ${last}`);
      } else last = `healthz ${health.status} ${JSON.stringify(health.body)}`;
      if (Date.now() > deadline) throw new Error(`register ${username}: the cluster did not become writable within ${timeoutMs} ms (${last})`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await this.signIn(username, password);
  }

  async signIn(username: string, password: string): Promise<void> {
    const r = await this.json<{ token: string }>('POST', '/api/v1/sessions', { username, password });
    if (r.status !== 200) throw new Error(`sign in ${username}: ${r.status} ${JSON.stringify(r.body)}`);
    this.token = r.body.token;
  }

  /** A small request on an idle lean keep-alive connection (a new one if none is idle). */
  async #lean(method: string, path: string, headers: Record<string, string>, body: Buffer | undefined, timeoutMs: number): Promise<LeanResponse> {
    // One the server closed while it waited (its keep-alive timeout, after a pause) is not reused.
    let conn = this.#idle.pop();
    while (conn && !conn.idle) conn = this.#idle.pop();
    conn ??= new LeanConnection(this.host, this.port);
    const head = `${method} ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`;
    try {
      return await conn.request(head, body, timeoutMs);
    } finally {
      if (conn.idle && this.#idle.length < this.maxSockets) this.#idle.push(conn);
      else conn.close();
    }
  }

  #request(options: http.RequestOptions, body: Buffer | undefined, timeoutMs: number): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: this.host, port: this.port, agent: this.agent, ...options }, resolve);
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${options.method} ${options.path}: no answer within ${timeoutMs} ms`)));
      req.once('error', reject);
      req.end(body);
    });
  }

  /**
   * Uploads a generated file of `size` bytes as one multipart part, streaming it with back-pressure.
   * onProgress is called with bytes written so far.
   */
  async uploadGenerated(name: string, size: number, tag: bigint, onProgress?: (bytes: number) => void, timeoutMs = 600_000): Promise<UploadOutcome> {
    const boundary = `----cairnbench${randomBytes(12).toString('hex')}`;
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
    );
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const started = performance.now();
    return new Promise<UploadOutcome>((resolve) => {
      const fail = (status: number, error: string) =>
        resolve({ status, id: undefined, block: undefined, bytes: size, seconds: (performance.now() - started) / 1000, error });
      const req = http.request(
        {
          host: this.host,
          port: this.port,
          agent: this.agent,
          method: 'POST',
          path: '/api/v1/files',
          headers: this.#headers({ 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(head.length + size + tail.length) }),
        },
        (res) => {
          collect(res).then(
            (buf) => {
              const seconds = (performance.now() - started) / 1000;
              const status = res.statusCode ?? 0;
              let parsed: any;
              try {
                parsed = JSON.parse(buf.toString('utf8'));
              } catch {
                parsed = undefined;
              }
              if (status === 201 && Array.isArray(parsed) && parsed[0]?.id) resolve({ status, id: parsed[0].id, block: parsed[0].block, bytes: size, seconds });
              else fail(status, buf.toString('utf8').slice(0, 300));
            },
            (err: Error) => fail(res.statusCode ?? 0, err.message),
          );
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`upload ${name}: no answer within ${timeoutMs} ms`)));
      req.once('error', (err) => fail(0, err.message));
      void (async () => {
        try {
          req.write(head);
          let sent = 0;
          for (let unit = 0; sent < size; unit++) {
            const len = Math.min(UNIT, size - sent);
            req.cork();
            req.write(stamp(tag, unit).subarray(0, Math.min(STAMP, len)));
            const more = len > STAMP ? req.write(BLOCK.subarray(STAMP, len)) : true;
            req.uncork();
            sent += len;
            onProgress?.(sent);
            if (!more) {
              if (req.destroyed) return;
              await drained(req);
              if (req.destroyed) return;
            }
          }
          req.end(tail);
        } catch (err) {
          req.destroy(err as Error);
        }
      })();
    });
  }

  /** Uploads one small file held in memory. */
  async uploadSmall(name: string, content: Buffer, timeoutMs = 120_000): Promise<UploadOutcome> {
    const boundary = `----cairnbench${randomBytes(12).toString('hex')}`;
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      content,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const started = performance.now();
    try {
      const headers = this.#headers({ 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(body.length) });
      const { status, body: buf } = await this.#lean('POST', '/api/v1/files', headers, body, timeoutMs);
      const seconds = (performance.now() - started) / 1000;
      if (status === 201) {
        const parsed = JSON.parse(buf.toString('utf8')) as { id: string; block: number }[];
        return { status, id: parsed[0]?.id, block: parsed[0]?.block, bytes: content.length, seconds };
      }
      return { status, id: undefined, block: undefined, bytes: content.length, seconds, error: buf.toString('utf8').slice(0, 300) };
    } catch (err) {
      return { status: 0, id: undefined, block: undefined, bytes: content.length, seconds: (performance.now() - started) / 1000, error: (err as Error).message };
    }
  }

  /**
   * Downloads a file's content, feeding each piece to `check` (if given). With stopAfterFirstByte
   * the request is abandoned after the first body bytes (a time-to-first-byte probe).
   */
  async download(id: string, options: { check?: ContentChecker; onProgress?: (bytes: number) => void; stopAfterFirstByte?: boolean; timeoutMs?: number } = {}): Promise<DownloadOutcome> {
    const started = performance.now();
    let headersMs = 0;
    let firstByteMs = 0;
    let bytes = 0;
    return new Promise<DownloadOutcome>((resolve) => {
      let settled = false;
      const done = (status: number, ok: boolean, error?: string) => {
        if (settled) return;
        settled = true;
        const outcome: DownloadOutcome = { status, bytes, seconds: (performance.now() - started) / 1000, headersMs, firstByteMs, ok };
        if (error !== undefined) outcome.error = error;
        resolve(outcome);
      };
      const req = http.get(
        // A probe's socket is destroyed mid-body, so it must not come from (or go back to) the shared pool.
        { host: this.host, port: this.port, agent: options.stopAfterFirstByte ? false : this.agent, path: `/api/v1/files/${id}/content`, headers: this.#headers() },
        (res) => {
          headersMs = performance.now() - started;
          const status = res.statusCode ?? 0;
          if (status !== 200) {
            void collect(res).then(
              (b) => done(status, false, b.toString('utf8').slice(0, 300)),
              (err: Error) => done(status, false, err.message),
            );
            return;
          }
          res.on('data', (chunk: Buffer) => {
            if (bytes === 0) firstByteMs = performance.now() - started;
            bytes += chunk.length;
            options.check?.feed(chunk);
            options.onProgress?.(bytes);
            if (options.stopAfterFirstByte) {
              done(status, true);
              req.destroy();
            }
          });
          res.once('end', () => done(status, options.check ? options.check.ok : true));
          res.once('error', (err) => done(status, false, err.message));
          res.once('aborted', () => done(status, false, 'response aborted'));
        },
      );
      req.setTimeout(options.timeoutMs ?? 600_000, () => req.destroy(new Error('download: no data in time')));
      req.once('error', (err) => done(0, false, err.message));
    });
  }

  /**
   * A large download read by leanGet (its own connection, no keep-alive): the figure is then the
   * cluster's, not node's http client's. Each piece goes to `check`.
   */
  async downloadLean(id: string, options: { check: ContentChecker; onProgress?: (bytes: number) => void; timeoutMs?: number }): Promise<DownloadOutcome> {
    let bytes = 0;
    const r = await leanGet({
      host: this.host,
      port: this.port,
      path: `/api/v1/files/${id}/content`,
      headers: this.#headers(),
      timeoutMs: options.timeoutMs ?? 600_000,
      onBody: (piece) => {
        options.check.feed(piece);
        bytes += piece.length;
        options.onProgress?.(bytes);
      },
    });
    const outcome: DownloadOutcome = { status: r.status, bytes: r.bytes, seconds: r.seconds, headersMs: r.headersMs, firstByteMs: r.firstByteMs, ok: r.error === undefined && options.check.ok };
    if (r.error !== undefined) outcome.error = r.error;
    return outcome;
  }

  close(): void {
    this.agent.destroy();
    for (const conn of this.#idle.splice(0)) conn.close();
  }
}

/** Resolves on 'drain' or 'close', whichever comes first, and leaves no listener behind. */
function drained(req: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      req.off('drain', done);
      req.off('close', done);
      resolve();
    };
    req.on('drain', done);
    req.on('close', done);
  });
}

/** The whole body; with listeners rather than `for await`, whose iterator machinery cost ~25 µs a response. */
function collect(res: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    res.on('data', (chunk: Buffer) => parts.push(chunk));
    res.once('end', () => resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts)));
    res.once('error', reject);
    res.once('aborted', () => reject(new Error('response aborted')));
  });
}
