/**
 * One keep-alive HTTP/1.1 connection for the benchmark's small requests, one request at a time:
 * the request leaves in one write, the answer is read as it arrives. node's http client (with a
 * keep-alive agent) spent 210–240 µs of CPU per 4 KiB upload here and this one 60–80: on two
 * cores the load generator otherwise takes a tenth of the machine from the cluster it measures.
 * It reads what cairn sends: a status line, headers and a Content-Length body.
 */
import net from 'node:net';
import { MAX_HEADER_BYTES, parseResponseHead, type ResponseHead } from './response-head.js';

/** Larger answers are not small requests: they are refused rather than buffered. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface LeanResponse {
  status: number;
  body: Buffer;
}

interface Pending {
  resolve: (r: LeanResponse) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class LeanConnection {
  readonly #socket: net.Socket;
  #received: Buffer = Buffer.alloc(0);
  #head: ResponseHead | null = null;
  #pending: Pending | null = null;
  #closed: Error | null = null;

  constructor(host: string, port: number) {
    this.#socket = net.connect({ host, port, noDelay: true });
    this.#socket.on('data', (data: Buffer) => this.#onData(data));
    this.#socket.once('error', (err) => this.#close(`connection failed: ${err.message}`));
    this.#socket.once('close', () => this.#close('the server closed the connection'));
  }

  /** Free for another request: open, and not answering one. */
  get idle(): boolean {
    return this.#closed === null && this.#pending === null;
  }

  /** Sends `head` (request line and headers, ending in a blank line) and `body`; resolves with the answer. */
  request(head: string, body: Buffer | undefined, timeoutMs: number): Promise<LeanResponse> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#pending) return Promise.reject(new Error('a lean connection carries one request at a time'));
    return new Promise<LeanResponse>((resolve, reject) => {
      const timer = setTimeout(() => this.#close(`no answer within ${timeoutMs} ms`), timeoutMs);
      this.#pending = { resolve, reject, timer };
      const bytes = Buffer.from(head, 'latin1');
      this.#socket.write(body ? Buffer.concat([bytes, body]) : bytes);
    });
  }

  close(): void {
    this.#close('closed');
  }

  #onData(data: Buffer): void {
    this.#received = this.#received.length === 0 ? data : Buffer.concat([this.#received, data]);
    if (!this.#pending) return this.#close('the server sent bytes no request asked for');
    if (!this.#head) {
      this.#head = parseResponseHead(this.#received);
      if (!this.#head) {
        if (this.#received.length > MAX_HEADER_BYTES) this.#close('response headers too long');
        return;
      }
    }
    const { status, statusLine, fields, bodyAt } = this.#head;
    const length = Number(fields.get('content-length'));
    if (status === 0 || !Number.isSafeInteger(length) || length < 0 || length > MAX_BODY_BYTES) {
      return this.#close(`unreadable response (status line ${JSON.stringify(statusLine)}, content-length ${fields.get('content-length')})`);
    }
    if (this.#received.length < bodyAt + length) return;
    if (this.#received.length > bodyAt + length) return this.#close('the server sent more than the answer');
    const body = this.#received.subarray(bodyAt);
    const pending = this.#pending;
    this.#pending = null;
    this.#head = null;
    this.#received = Buffer.alloc(0);
    clearTimeout(pending.timer);
    if (fields.get('connection')?.toLowerCase() === 'close') this.close();
    pending.resolve({ status, body });
  }

  #close(why: string): void {
    this.#closed ??= new Error(why);
    this.#socket.destroy();
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = null;
    clearTimeout(pending.timer);
    pending.reject(this.#closed);
  }
}
