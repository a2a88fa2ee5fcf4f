/**
 * A connection's lane: a plain TCP socket beside a TLS-PSK mailbox connection that carries the big
 * payloads of its requests (shards being stored), so they are not encrypted a second time.
 *
 * Why that is safe: a shard is ciphertext already (a slice of a segment sealed with its file's key
 * in the web client, or a linear combination of such slices), so TLS gave it no secrecy; what TLS
 * gave it, integrity and a known sender, the request keeps. Its header (type, shard key, hash)
 * travels on the TLS connection, and the SP stores the lane's bytes only if they hash to that
 * hash. A lane is bound to its TLS connection by a one-time random token given on that connection
 * alone. Someone on the path can make a put fail (as dropping packets would) but cannot change
 * what is stored or acknowledged. Replies, and every payload an SP sends (shards read), stay on TLS.
 *
 * Lane wire: the client sends the 32-byte token and the server answers one byte (LANE_ACK) once
 * the lane is taken; a client uses a lane only after that, so a lane the server refused (or a
 * port where something else answers) costs nothing but the wait for the ack. Then the client sends
 * mailbox frames whose header is `{ i: request id }` and whose payload is that request's payload
 * (the request itself says `b`, the payload's length, and `l`, the lane's number on its
 * connection, in its envelope: a request whose lane has gone fails at once instead of waiting on
 * the next one). A client that gives up on
 * a request whose header went out drops the lane, so the server stops waiting for its payload.
 * Only the routes that ask for lanes take payloads from them (shard.put).
 *
 * TLS was the largest cost left in an upload: the web client encrypting and copying every shard
 * byte, the SP decrypting and copying it again. 1 GiB uploads with the client-to-SP mailbox on plain
 * TCP: 169 / 203 / 177 → 237 / 215 / 205 MB/s at 10.0 → 8.4 CPU-s (three alternating pairs).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { BufferPool } from '../codec/buffer-pool.js';
import { CairnError, invariant, toCairnError } from '../errors.js';
import { FrameDecoder, dropStalledFrames, type Frame } from './frame.js';
import { tcpTransport, type Listener } from './transport.js';
import * as v from '../validate.js';

/** The request that opens a lane; its reply is a LaneOffer. */
export const LANE_OPEN_TYPE = 'mailbox.lane';
export const LANE_TOKEN_BYTES = 32;
/** The server's one byte on a lane: taken. */
export const LANE_ACK = 0x01;
/** Payloads at least this big take the lane; a smaller one costs less on TLS than a second write. */
export const LANE_MIN_PAYLOAD_BYTES = 64 * 1024;
/** A token not used within this long is void. */
const TOKEN_TTL_MS = 10_000;
/** A lane must show its token this soon after connecting (a client sends it at once). */
const HELLO_TIMEOUT_MS = 2_000;
/** Bytes of payloads that came before their requests, beyond which the lane is read no further for now. */
const MAX_UNCLAIMED_BYTES = 64 * 1024 * 1024;
/** How long a request whose payload is on the lane waits for it (a client sends it at once, or drops the lane). */
const PAYLOAD_WAIT_MS = 30_000;
/** Ids of requests that stopped waiting, remembered so their payloads are dropped if they still come. */
const MAX_ABANDONED = 1_024;

const laneOfferP = v.object({
  port: v.int({ min: 1, max: 65535 }),
  /** Hex. */
  token: v.str({ min: 2 * LANE_TOKEN_BYTES, max: 2 * LANE_TOKEN_BYTES, pattern: /^[0-9a-f]+$/ }),
  /** The lane's number on its connection, which requests name (`l`). */
  lane: v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
});
export type LaneOffer = v.Parsed<typeof laneOfferP>;

/** The reply to LANE_OPEN_TYPE as a client reads it; null when it is not one. */
export function parseLaneOffer(body: unknown): LaneOffer | null {
  try {
    return laneOfferP(body);
  } catch {
    return null;
  }
}

interface LaneLimits {
  maxFrameBytes: number;
  buffers: BufferPool;
  /** Payloads that arrived before their request, beyond which the lane is read no further for now. */
  maxUnclaimed: number;
  /** A lane that sent part of a frame and nothing more for this long is dropped. */
  stalledMs: number;
}

/**
 * The payloads one server connection receives on one lane, handed to its requests by id. Payloads
 * come in the order their requests were sent, so a request being handled never waits behind a
 * payload whose request is still unread: pausing the lane at its unclaimed bounds cannot deadlock.
 * A payload left unclaimed longer than a request would wait for one ends the lane (its sender broke
 * the protocol), so nothing is held for good.
 */
export class LaneInbox {
  #socket: Socket | null = null;
  readonly #decoder: FrameDecoder;
  readonly #arrived = new Map<number, { frame: Frame; at: number }>();
  #arrivedBytes = 0;
  #ageTimer: NodeJS.Timeout | null = null;
  /** The token that may still attach a lane here (one at a time). */
  token: string | null = null;
  readonly #waiting = new Map<number, { bytes: number; resolve: (f: Frame) => void; reject: (e: CairnError) => void; timer: NodeJS.Timeout }>();
  readonly #abandoned = new Set<number>();
  #failure: CairnError | null = null;

  constructor(
    /** This lane's number on its connection. */
    readonly number: number,
    private readonly limits: LaneLimits,
  ) {
    this.#decoder = new FrameDecoder(limits.maxFrameBytes, limits.buffers);
  }

  get closed(): boolean {
    return this.#failure !== null;
  }

  /** Whether a lane socket has been attached (it may have closed since). */
  get attached(): boolean {
    return this.#socket !== null;
  }

  /** Takes the lane socket (with what it sent after its token); false if this inbox has one or is closed. */
  attach(socket: Socket, rest: Buffer): boolean {
    if (this.#socket !== null || this.#failure !== null) return false;
    this.#socket = socket;
    socket.write(Buffer.of(LANE_ACK));
    dropStalledFrames(socket, this.#decoder, this.limits.stalledMs);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.once('close', () => this.close(new CairnError('CONNECTION_CLOSED', 'the lane closed')));
    socket.once('end', () => socket.destroy()); // a lane is never half-closed on purpose
    if (rest.length > 0) this.#onData(rest);
    return true;
  }

  /**
   * The payload of request `id`, `bytes` long, once it is here; the caller gives its `assembled`
   * buffer back to the pool when done. Rejects when the lane breaks or the payload does not come.
   */
  take(id: number, bytes: number): Promise<Frame> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (id === 0) return Promise.reject(new CairnError('BAD_MESSAGE', 'a one-way message has no payload on the lane'));
    // A client sends `b` only once the lane is acknowledged, which is after it is attached here.
    if (this.#socket === null) return Promise.reject(new CairnError('BAD_MESSAGE', 'no lane is open on this connection; send the payload in the request'));
    if (this.#waiting.has(id)) return Promise.reject(new CairnError('BAD_MESSAGE', `request ${id} is already waiting for its payload`));
    const frame = this.#claim(id);
    if (frame) return this.#checked(frame, bytes);
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        this.#abandon(id);
        reject(new CairnError('TIMEOUT', `the payload of request ${id} did not come on the lane within ${PAYLOAD_WAIT_MS} ms`));
      }, PAYLOAD_WAIT_MS);
      this.#waiting.set(id, { bytes, resolve, reject, timer });
    });
  }

  /** The payload of request `id` is not wanted (its request was refused before taking it): free it, now or when it comes. */
  discard(id: number): void {
    const frame = this.#claim(id);
    if (frame) {
      this.#free(frame);
    } else if (!this.#waiting.has(id)) {
      this.#abandon(id);
    }
  }

  /** Fails whatever waits, frees what arrived, and drops the lane. */
  close(why: CairnError = new CairnError('CONNECTION_CLOSED', 'the connection closed')): void {
    if (this.#failure) return;
    this.#failure = why;
    for (const w of this.#waiting.values()) {
      clearTimeout(w.timer);
      w.reject(why);
    }
    this.#waiting.clear();
    for (const { frame } of this.#arrived.values()) this.#free(frame);
    this.#arrived.clear();
    this.#arrivedBytes = 0;
    if (this.#ageTimer) clearTimeout(this.#ageTimer);
    this.#socket?.destroy();
  }

  #claim(id: number): Frame | undefined {
    const entry = this.#arrived.get(id);
    if (!entry) return undefined;
    this.#arrived.delete(id);
    this.#arrivedBytes -= entry.frame.payload?.byteLength ?? 0;
    if (this.#socket?.isPaused() && !this.#full()) this.#socket.resume();
    return entry.frame;
  }

  #full(): boolean {
    return this.#arrived.size >= this.limits.maxUnclaimed || this.#arrivedBytes >= MAX_UNCLAIMED_BYTES;
  }

  /** Ends the lane if its oldest unclaimed payload has waited longer than any request would. */
  #watchAge(): void {
    if (this.#ageTimer || this.#arrived.size === 0 || this.#failure) return;
    const oldest = this.#arrived.values().next().value!.at;
    this.#ageTimer = setTimeout(() => {
      this.#ageTimer = null;
      const first = this.#arrived.values().next().value;
      if (first && Date.now() - first.at >= PAYLOAD_WAIT_MS) this.close(new CairnError('CONNECTION_CLOSED', 'the lane carried a payload no request claimed'));
      else this.#watchAge();
    }, Math.max(0, oldest + PAYLOAD_WAIT_MS - Date.now()));
    this.#ageTimer.unref();
  }

  #abandon(id: number): void {
    if (this.#abandoned.size >= MAX_ABANDONED) this.#abandoned.delete(this.#abandoned.values().next().value!);
    this.#abandoned.add(id);
  }

  #checked(frame: Frame, bytes: number): Promise<Frame> {
    if (frame.payload?.byteLength === bytes) return Promise.resolve(frame);
    this.#free(frame);
    return Promise.reject(new CairnError('BAD_MESSAGE', `the lane carried ${frame.payload?.byteLength ?? 0} bytes for a request that announced ${bytes}`));
  }

  #onData(chunk: Buffer): void {
    if (this.#failure) return;
    try {
      this.#decoder.push(chunk);
      for (let frame = this.#decoder.next(); frame; frame = this.#decoder.next()) this.#deliver(frame);
    } catch (err) {
      const cause = toCairnError(err, 'BAD_FRAME');
      this.close(new CairnError('CONNECTION_CLOSED', `the lane broke the protocol: ${cause.code}: ${cause.message}`));
      return;
    }
    if (this.#full()) this.#socket?.pause();
    this.#watchAge();
  }

  #deliver(frame: Frame): void {
    const id = (frame.header as { i?: unknown } | null)?.i;
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1 || frame.payload === undefined) {
      this.#free(frame);
      throw new CairnError('BAD_FRAME', 'a lane frame is { i: request id } and a payload');
    }
    const waiter = this.#waiting.get(id);
    if (waiter) {
      this.#waiting.delete(id);
      clearTimeout(waiter.timer);
      this.#checked(frame, waiter.bytes).then(waiter.resolve, waiter.reject);
      return;
    }
    if (this.#abandoned.delete(id)) {
      this.#free(frame); // its request gave up waiting
      return;
    }
    if (this.#arrived.has(id)) {
      this.#free(frame);
      throw new CairnError('BAD_FRAME', `two payloads for request ${id}`);
    }
    this.#arrived.set(id, { frame, at: Date.now() });
    this.#arrivedBytes += frame.payload.byteLength;
  }

  #free(frame: Frame): void {
    if (frame.assembled) this.limits.buffers.give(frame.assembled);
  }
}

/** The server's lane listener: hands out tokens and gives each lane that shows one to its inbox. */
export class LaneIntake {
  #listener: Listener | null = null;
  readonly #tokens = new Map<string, { inbox: LaneInbox; expires: number }>();
  /** Lane connections dropped: no token, a wrong or stale one, or too slow to show it. */
  rejected = 0;

  /** `port` 0 takes any free port. */
  constructor(private readonly opts: { host: string; port: number; maxLanes: number }) {
    invariant(opts.maxLanes >= 1, 'a lane listener takes at least one lane');
  }

  async listen(): Promise<void> {
    invariant(this.#listener === null, 'LaneIntake.listen called twice');
    this.#listener = await tcpTransport().listen({
      port: this.opts.port,
      host: this.opts.host,
      maxConnections: this.opts.maxLanes,
      onSocket: (socket) => this.#accept(socket),
      onRejected: () => {
        this.rejected += 1;
      },
    });
  }

  /** A token for a lane into `inbox`: good once, for TOKEN_TTL_MS; an inbox has one at a time. */
  offer(inbox: LaneInbox): LaneOffer {
    if (this.#listener === null) throw new CairnError('UNKNOWN_MESSAGE', 'this mailbox takes no lanes');
    const now = Date.now();
    for (const [token, entry] of this.#tokens) if (entry.expires <= now) this.#tokens.delete(token);
    if (inbox.token !== null) this.#tokens.delete(inbox.token);
    if (this.#tokens.size >= this.opts.maxLanes) throw new CairnError('OVERLOADED', 'too many lanes are being opened');
    const token = randomBytes(LANE_TOKEN_BYTES).toString('hex');
    this.#tokens.set(token, { inbox, expires: now + TOKEN_TTL_MS });
    inbox.token = token;
    return { port: this.#listener.port, token, lane: inbox.number };
  }

  stopAccepting(): void {
    this.#listener?.stopAccepting();
  }

  async close(): Promise<void> {
    this.#tokens.clear();
    await this.#listener?.close();
  }

  #accept(socket: Socket): void {
    let hello: Buffer = Buffer.alloc(0);
    const refuse = (): void => {
      this.rejected += 1;
      socket.destroy();
    };
    const timer = setTimeout(refuse, HELLO_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      // At most one read beyond the token is held: the rest goes to the inbox.
      hello = hello.length === 0 ? chunk : Buffer.concat([hello, chunk]);
      if (hello.length < LANE_TOKEN_BYTES) return;
      socket.off('data', onData);
      clearTimeout(timer);
      const token = hello.subarray(0, LANE_TOKEN_BYTES).toString('hex');
      const entry = this.#tokens.get(token);
      this.#tokens.delete(token);
      if (entry?.inbox.token === token) entry.inbox.token = null;
      if (!entry || entry.expires <= Date.now() || !entry.inbox.attach(socket, hello.subarray(LANE_TOKEN_BYTES))) refuse();
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => clearTimeout(timer));
  }
}
