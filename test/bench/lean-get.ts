/**
 * A lean HTTP/1.1 GET for the benchmark's large downloads: one connection, the body read with
 * node's `onread` into one reused buffer and handed over in place. node's http client spent
 * 0.7–0.9 CPU-s per GiB here just reading a download (a Buffer, a parser callback and a 'data'
 * event per 64 KiB) where curl spends ~0.2: on a 2-core machine the benchmark's own reader took
 * a fifth of the CPU and so held the figure it measures down. It reads what cairn sends: a status
 * line, headers and a Content-Length body.
 */
import net from 'node:net';
import { MAX_HEADER_BYTES, parseResponseHead } from './response-head.js';

export interface LeanGetOptions {
  host: string;
  port: number;
  path: string;
  headers: Record<string, string>;
  /** Each piece of a 200 response's body, a view valid only during the call. */
  onBody: (piece: Buffer) => void;
  timeoutMs: number;
}

export interface LeanGetResult {
  status: number;
  bytes: number;
  /** From sending the request to the end of the headers / to the first body byte. */
  headersMs: number;
  firstByteMs: number;
  seconds: number;
  /** Set when the response was not read whole; for a status other than 200, its body's start. */
  error?: string;
}

const READ_BYTES = 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 4096;

export function leanGet(o: LeanGetOptions): Promise<LeanGetResult> {
  const started = performance.now();
  const result: LeanGetResult = { status: 0, bytes: 0, headersMs: 0, firstByteMs: 0, seconds: 0 };
  let head: Buffer | null = Buffer.alloc(0); // null once the headers are read
  let length = -1;
  let errorBody = '';
  return new Promise<LeanGetResult>((resolve) => {
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      result.seconds = (performance.now() - started) / 1000;
      if (error !== undefined) result.error = error;
      else if (result.status !== 200) result.error = errorBody;
      socket.destroy();
      resolve(result);
    };
    const body = (piece: Buffer) => {
      const take = piece.subarray(0, Math.min(piece.length, length - result.bytes));
      if (take.length === 0) return;
      if (result.bytes === 0) result.firstByteMs = performance.now() - started;
      result.bytes += take.length;
      if (result.status === 200) o.onBody(take);
      else if (errorBody.length < MAX_ERROR_BODY_BYTES) errorBody += take.toString('utf8');
    };
    const readHead = (piece: Buffer) => {
      // concat copies: what is kept of the head outlives the read buffer, which the next read reuses.
      head = Buffer.concat([head!, piece]);
      const parsed = parseResponseHead(head);
      if (!parsed) {
        if (head.length > MAX_HEADER_BYTES) finish('response headers too long');
        return;
      }
      result.status = parsed.status;
      // An error status may come without a length: its body then runs to the close (we asked for one).
      length = Number(parsed.fields.get('content-length') ?? (result.status === 200 ? -1 : Infinity));
      result.headersMs = performance.now() - started;
      const rest = head.subarray(parsed.bodyAt);
      head = null;
      if (result.status === 0 || !(length >= 0)) return finish(`unreadable response (status line ${JSON.stringify(parsed.statusLine)}, content-length ${parsed.fields.get('content-length')})`);
      body(rest);
    };
    const socket = net.connect({
      host: o.host,
      port: o.port,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BYTES),
        callback: (n, buf) => {
          const piece = Buffer.from(buf.buffer, buf.byteOffset, n);
          if (head !== null) readHead(piece);
          else body(piece);
          if (length >= 0 && result.bytes >= length) finish();
          return true;
        },
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(o.timeoutMs, () => finish('download: no data in time'));
    socket.once('error', (err) => finish(err.message));
    socket.once('close', () => {
      if (length === Infinity) finish();
      else finish(`connection closed after ${result.bytes} of ${length < 0 ? '?' : length} body bytes`);
    });
    const headers = Object.entries({ ...o.headers, host: `${o.host}:${o.port}`, connection: 'close' }).map(([k, v]) => `${k}: ${v}\r\n`);
    socket.write(`GET ${o.path} HTTP/1.1\r\n${headers.join('')}\r\n`);
  });
}
