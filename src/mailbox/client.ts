/**
 * A mailbox client: one lazily opened connection to one peer, request/reply with timeouts,
 * one-way sends, and bounded concurrency (in flight, then a bounded queue, then OVERLOADED).
 *
 * A dead peer costs little: after a failed connect, requests fail at once with UNAVAILABLE until a
 * short, growing, jittered backoff has passed, and only then is a new connect tried.
 */
import type { Socket } from 'node:net';
import type { BufferPool } from '../codec/buffer-pool.js';
import { CairnError, invariant, toCairnError } from '../errors.js';
import { errorFromWire, headerOf, parseEnvelopeHeader, type EnvelopeHeader } from './envelope.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, FrameWriter, encodeFrame, type Frame } from './frame.js';
import type { MailboxLog } from './server.js';
import { LANE_ACK, LANE_MIN_PAYLOAD_BYTES, LANE_OPEN_TYPE, parseLaneOffer } from './lane.js';
import { parseAddress, tcpTransport, type SocketReader, type Transport } from './transport.js';

export interface MailboxClientOptions {
  /** Our sender id, put in `from` of every envelope. */
  id: string;
  /** The peer's mailbox, 'host:port'. */
  address: string;
  transport: Transport;
  requestTimeoutMs?: number;
  maxInFlight?: number;
  maxQueued?: number;
  maxFrameBytes?: number;
  connectTimeoutMs?: number;
  /** Wait after a failed connect: doubles from min up to max. */
  reconnectBackoffMs?: { min: number; max: number };
  log?: MailboxLog;
  /** Where replies split across socket chunks are assembled (see MailboxReply.release). */
  buffers?: BufferPool;
  /**
   * Requests of these types send big payloads on a lane beside a TLS connection (src/mailbox/lane.ts);
   * the server's routes for them must take lanes. Default: none.
   */
  laneTypes?: ReadonlySet<string>;
}

export interface MailboxReply {
  body: unknown;
  /** A view into the received frame. */
  payload?: Uint8Array;
  /**
   * Present when the payload lies in a buffer from the client's pool: call it once the payload is
   * no longer read, so the buffer is reused (never call it earlier; not calling it only costs GC).
   */
  release?: () => void;
}

/** The plain socket beside a connection that its big payloads take (src/mailbox/lane.ts). */
interface Lane {
  socket: Socket;
  writer: FrameWriter;
  /** Its number on the connection, which requests name. */
  number: number;
}

interface Connection {
  socket: Socket;
  decoder: FrameDecoder;
  writer: FrameWriter;
  /** Its lane: none (asked for from laneRetryAt on), being opened, open, or off (the peer takes none). */
  lane: Lane | 'none' | 'opening' | 'off';
  laneRetryAt: number;
  pending: Map<number, Call>;
  /** Set when we gave up on the link (protocol broken); it is being destroyed. */
  failure: CairnError | null;
  /** The last error the peer sent without a request id, e.g. why it is about to close the link. */
  peerNotice: string | null;
}

interface Call {
  state: 'queued' | 'active' | 'done';
  pieces: Uint8Array[];
  /** Handed to the socket and not yet taken by it: the socket may still read the payload. */
  inSocket: boolean;
  /** The request without its payload, and the payload, when the payload may take the lane. */
  laneable: { header: EnvelopeHeader; payload: Uint8Array } | null;
  /** The lane its payload took (its header said so on the connection). */
  lane: Lane | null;
  /** Handed to the lane's socket and not yet taken by it. */
  inLane: boolean;
  /** The lane's socket has taken all of its payload. */
  laneDone: boolean;
  /** Sent on this connection or not at all (a lane request: its token is good for that connection alone). */
  onlyOn: Connection | null;
  id: number;
  conn: Connection | null;
  timer: NodeJS.Timeout | undefined;
  resolve: (reply: MailboxReply) => void;
  reject: (err: CairnError) => void;
}

const quietLog: MailboxLog = () => {};
/** After a lane failed to open or broke, payloads go on TLS for this long before a new lane is asked for. */
const LANE_RETRY_MS = 5_000;

export class MailboxClient {
  readonly id: string;
  readonly address: string;
  private readonly host: string;
  private readonly port: number;
  private readonly transport: Transport;
  private readonly requestTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly maxFrameBytes: number;
  private readonly connectTimeoutMs: number;
  private readonly backoff: { min: number; max: number };
  private readonly log: MailboxLog;
  private readonly buffers: BufferPool | undefined;
  private readonly laneTypes: ReadonlySet<string>;

  private conn: Connection | null = null;
  private connecting: Promise<Connection> | null = null;
  private backoffMs = 0;
  private retryAt = 0;
  private lastConnectError: CairnError | null = null;
  private nextId = 1;
  /** Calls holding an in-flight slot (connecting, writing or awaiting the reply). */
  private readonly active = new Set<Call>();
  private readonly queue: Call[] = [];
  private oneWayWaiting = 0;
  private closed = false;

  constructor(options: MailboxClientOptions) {
    this.id = options.id;
    this.address = options.address;
    ({ host: this.host, port: this.port } = parseAddress(options.address));
    this.transport = options.transport;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.maxInFlight = options.maxInFlight ?? 32;
    this.maxQueued = options.maxQueued ?? 256;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
    this.backoff = options.reconnectBackoffMs ?? { min: 100, max: 2_000 };
    this.log = options.log ?? quietLog;
    this.buffers = options.buffers;
    this.laneTypes = this.transport.kind === 'tls-psk' ? (options.laneTypes ?? new Set()) : new Set();
    invariant(this.maxInFlight >= 1 && this.maxQueued >= 0, 'mailbox client limits must be sane');
    invariant(this.backoff.min > 0 && this.backoff.max >= this.backoff.min, 'backoff must be 0 < min <= max');
  }

  get connected(): boolean {
    return this.live() !== null;
  }

  /**
   * Sends a request and waits for its reply. The payload is written as is, without a copy: leave
   * it unchanged until the promise settles. Rejects with the peer's error code, or TIMEOUT,
   * UNAVAILABLE, CONNECTION_CLOSED, OVERLOADED, FRAME_TOO_LARGE. timeoutMs covers queueing too.
   */
  request(type: string, body: unknown, payload?: Uint8Array, options: { timeoutMs?: number } = {}): Promise<MailboxReply> {
    return this.ask(type, body, payload, options.timeoutMs ?? this.requestTimeoutMs, null);
  }

  private ask(type: string, body: unknown, payload: Uint8Array | undefined, timeoutMs: number, onlyOn: Connection | null): Promise<MailboxReply> {
    if (this.closed) return Promise.reject(new CairnError('CONNECTION_CLOSED', `mailbox client for ${this.address} is closed`));
    const id = this.allocateId();
    const header: EnvelopeHeader = { t: type, id, from: this.id, body };
    let pieces: Uint8Array[];
    try {
      pieces = encodeFrame(headerOf(header), payload, this.maxFrameBytes);
    } catch (err) {
      return Promise.reject(toCairnError(err));
    }
    const laneable = this.laneTypes.has(type) && payload !== undefined && payload.byteLength >= LANE_MIN_PAYLOAD_BYTES ? { header, payload } : null;
    return new Promise<MailboxReply>((resolve, reject) => {
      const call: Call = { state: 'queued', pieces, inSocket: false, laneable, lane: null, inLane: false, laneDone: false, onlyOn, id, conn: null, timer: undefined, resolve, reject };
      call.timer = setTimeout(() => {
        this.finish(call, new CairnError('TIMEOUT', `${type} to ${this.address} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      if (this.active.size < this.maxInFlight && this.queue.length === 0) {
        this.start(call);
      } else if (this.queue.length < this.maxQueued) {
        this.queue.push(call);
      } else {
        this.finish(call, new CairnError('OVERLOADED', `too many requests waiting for ${this.address}`));
      }
    });
  }

  /**
   * One-way message, no reply. Returns false when it was dropped (link down, in backoff, or
   * congested): consensus traffic tolerates loss, and dropping keeps memory bounded. Throws
   * FRAME_TOO_LARGE at once, as that is the caller's bug rather than the network's.
   */
  send(type: string, body: unknown, payload?: Uint8Array): boolean {
    if (this.closed) return false;
    const pieces = encodeFrame(headerOf({ t: type, id: 0, from: this.id, body }), payload, this.maxFrameBytes);
    const conn = this.live();
    if (conn) return this.writeOneWay(conn, pieces);
    if (this.oneWayWaiting >= this.maxQueued || Date.now() < this.retryAt) return false;
    this.oneWayWaiting += 1;
    this.connection()
      .then((c) => this.writeOneWay(c, pieces))
      .catch(() => {})
      .finally(() => {
        this.oneWayWaiting -= 1;
      });
    return true;
  }

  /** Sends what is corked on the live connection now instead of at the end of this turn. */
  flush(): void {
    this.live()?.writer.flush();
  }

  /** Fails everything queued or pending with CONNECTION_CLOSED and closes the link. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new CairnError('CONNECTION_CLOSED', `mailbox client for ${this.address} closed`);
    for (const call of [...this.queue, ...this.active]) this.finish(call, err);
    if (this.conn) await destroyAndWait(this.conn.socket);
    // A connect in flight sees `closed` when it lands and destroys its socket.
    await this.connecting?.catch(() => {});
  }

  private allocateId(): number {
    const id = this.nextId;
    this.nextId = id >= Number.MAX_SAFE_INTEGER ? 1 : id + 1;
    return id;
  }

  private writeOneWay(conn: Connection, pieces: Uint8Array[]): boolean {
    if (conn.writer.congested) return false;
    conn.writer.write(pieces).catch(() => {});
    return true;
  }

  private start(call: Call): void {
    call.state = 'active';
    this.active.add(call);
    void this.run(call);
  }

  private async run(call: Call): Promise<void> {
    try {
      const conn = await this.connection();
      if (call.state !== 'active') return; // timed out or closed while connecting
      if (conn.socket.destroyed) throw conn.failure ?? new CairnError('CONNECTION_CLOSED', `connection to ${this.address} lost`);
      if (call.onlyOn !== null && conn !== call.onlyOn) throw new CairnError('CONNECTION_CLOSED', `the connection to ${this.address} it was meant for is gone`);
      call.conn = conn;
      conn.pending.set(call.id, call);
      const lane = call.laneable ? this.laneOf(conn) : null;
      // Held in flight until the socket drains: that is the write back-pressure.
      if (lane && call.laneable) await this.writeOnLane(conn, lane, call, call.laneable);
      else {
        await conn.writer.write(call.pieces, {
          wanted: () => call.state === 'active',
          handed: () => (call.inSocket = true),
          sent: () => (call.inSocket = false),
        });
      }
      call.pieces = [];
      call.laneable = null;
    } catch (err) {
      this.finish(call, toCairnError(err, 'UNAVAILABLE'));
    }
  }

  private finish(call: Call, outcome: MailboxReply | CairnError): void {
    if (call.state === 'done') return;
    const wasActive = call.state === 'active';
    if (call.state === 'queued') {
      const at = this.queue.indexOf(call);
      if (at >= 0) this.queue.splice(at, 1);
    }
    call.state = 'done';
    clearTimeout(call.timer);
    call.conn?.pending.delete(call.id);
    call.pieces = [];
    call.laneable = null;
    // A lane cannot take back half a payload either, nor send one whose header went out after its
    // call ended: it goes (the SP fails whatever waits on it at once), and the connection carries
    // on, its payloads on TLS until a new lane is up. A call whose payload went whole leaves it be.
    const lane = call.lane;
    if (lane && outcome instanceof CairnError && (call.inLane || (outcome.code === 'TIMEOUT' && !call.laneDone))) lane.socket.destroy(outcome);
    // Given up on (a timeout) while the socket still holds part of its frame: the caller may reuse
    // the payload's memory the moment this settles, and a frame cannot be taken back half sent. The
    // connection goes, and its queued writes with it, rather than send other bytes, or a header
    // without its payload (the peer would read the next frames as that payload, for good).
    if (call.inSocket && outcome instanceof CairnError) call.conn?.socket.destroy(outcome);
    if (outcome instanceof CairnError) call.reject(outcome);
    else call.resolve(outcome);
    if (wasActive) {
      this.active.delete(call);
      while (this.active.size < this.maxInFlight && this.queue.length > 0) {
        const next = this.queue.shift();
        if (next) this.start(next);
      }
    }
  }

  /**
   * The connection's lane if it is open; asks for one the first time (the request at hand and those
   * until the lane is up go on TLS, as do all when the peer takes no lanes).
   */
  private laneOf(conn: Connection): Lane | null {
    const lane = conn.lane;
    if (typeof lane === 'object') return lane.socket.destroyed || !lane.socket.writable ? null : lane;
    if (lane === 'none' && Date.now() >= conn.laneRetryAt) {
      conn.lane = 'opening';
      void this.openLane(conn);
    }
    return null;
  }

  private async openLane(conn: Connection): Promise<void> {
    let socket: Socket | undefined;
    try {
      const offer = parseLaneOffer((await this.ask(LANE_OPEN_TYPE, {}, undefined, this.requestTimeoutMs, conn)).body);
      if (!offer) throw new CairnError('UNKNOWN_MESSAGE', `${this.address} answered ${LANE_OPEN_TYPE} with no lane`);
      socket = await tcpTransport().connect(this.host, offer.port, this.connectTimeoutMs);
      const s = socket;
      s.on('error', (err) => this.log('debug', 'mailbox lane error', { address: this.address, error: err.message }));
      s.write(Buffer.from(offer.token, 'hex'));
      await laneAck(s, this.connectTimeoutMs, this.address);
      // The token was good for the connection it was asked on only.
      if (this.conn !== conn || conn.socket.destroyed) throw new CairnError('CONNECTION_CLOSED', `the connection to ${this.address} went while its lane opened`);
      const lane: Lane = { socket: s, writer: new FrameWriter(s), number: offer.lane };
      s.on('data', () => s.destroy()); // nothing more comes this way
      s.once('close', () => {
        if (conn.lane !== lane) return;
        conn.lane = 'none';
        conn.laneRetryAt = Date.now() + LANE_RETRY_MS;
      });
      conn.lane = lane;
    } catch (err) {
      socket?.destroy();
      const failure = toCairnError(err);
      if (conn.lane === 'opening') {
        // A peer that takes no lanes never will; anything else may pass (a busy link, a full port).
        conn.lane = failure.code === 'UNKNOWN_MESSAGE' ? 'off' : 'none';
        conn.laneRetryAt = Date.now() + LANE_RETRY_MS;
      }
      this.log('debug', 'mailbox lane not opened', { address: this.address, error: failure.message });
    }
  }

  /** The request's header on the connection, saying how long its payload is, and the payload on the lane. */
  private async writeOnLane(conn: Connection, lane: Lane, call: Call, { header, payload }: { header: EnvelopeHeader; payload: Uint8Array }): Promise<void> {
    const wanted = () => call.state === 'active';
    await conn.writer.write(encodeFrame(headerOf({ ...header, b: payload.byteLength, l: lane.number }), undefined, this.maxFrameBytes), {
      wanted,
      handed: () => (call.lane = lane),
    });
    if (call.lane === null) return; // never announced: the call ended first
    // Skipped if the call ended meanwhile (its payload may be reused already); finish() then dropped
    // the lane, so the SP stops waiting for it.
    await lane.writer.write(encodeFrame({ i: call.id }, payload, this.maxFrameBytes), {
      wanted,
      handed: () => (call.inLane = true),
      sent: () => {
        call.inLane = false;
        call.laneDone = true;
      },
    });
  }

  private live(): Connection | null {
    const conn = this.conn;
    return conn && !conn.socket.destroyed && conn.socket.writable && conn.failure === null ? conn : null;
  }

  private connection(): Promise<Connection> {
    const conn = this.live();
    if (conn) return Promise.resolve(conn);
    if (this.closed) return Promise.reject(new CairnError('CONNECTION_CLOSED', `mailbox client for ${this.address} is closed`));
    if (this.connecting) return this.connecting;
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      // Same code as the failure that started the backoff: a wrong key stays UNAUTHENTICATED.
      const last = this.lastConnectError;
      const message = `${last?.message ?? `${this.address} unreachable`} (next attempt in ${wait} ms)`;
      return Promise.reject(new CairnError(last?.code ?? 'UNAVAILABLE', message));
    }
    // Bytes land straight in the decoder (a shard in the buffer it is assembled in); replies are
    // settled synchronously, so each read is drained before the next one may reuse the scratch.
    const decoder = new FrameDecoder(this.maxFrameBytes, this.buffers);
    let adopted: Connection | null = null;
    const reader: SocketReader = {
      buffer: () => decoder.readTarget(),
      callback: (bytes, into) => this.onRead(decoder, adopted, bytes, into),
    };
    const attempt = this.transport.connect(this.host, this.port, this.connectTimeoutMs, reader).then(
      (socket) => {
        this.connecting = null;
        if (this.closed) {
          socket.destroy();
          throw new CairnError('CONNECTION_CLOSED', `mailbox client for ${this.address} closed`);
        }
        this.backoffMs = 0;
        this.retryAt = 0;
        this.lastConnectError = null;
        adopted = this.adopt(socket, decoder);
        return adopted;
      },
      (err: unknown) => {
        this.connecting = null;
        const failure = toCairnError(err, 'UNAVAILABLE');
        this.backoffMs = Math.min(this.backoff.max, this.backoffMs === 0 ? this.backoff.min : this.backoffMs * 2);
        // Jitter spreads the reconnects of many clients to one restarting peer.
        this.retryAt = Date.now() + Math.round(this.backoffMs * (0.5 + Math.random() / 2));
        this.lastConnectError = failure;
        this.log('debug', 'mailbox connect failed', { address: this.address, error: failure.message });
        throw failure;
      },
    );
    this.connecting = attempt;
    return attempt;
  }

  private adopt(socket: Socket, decoder: FrameDecoder): Connection {
    const conn: Connection = {
      socket,
      decoder,
      writer: new FrameWriter(socket),
      lane: 'none',
      laneRetryAt: 0,
      pending: new Map(),
      failure: null,
      peerNotice: null,
    };
    socket.on('error', (err) => this.log('debug', 'mailbox socket error', { address: this.address, error: err.message }));
    socket.once('close', () => this.onClose(conn));
    this.conn = conn;
    const early = decoder.error;
    if (early) this.fail(conn, early);
    return conn;
  }

  private onRead(decoder: FrameDecoder, conn: Connection | null, bytes: number, into: Uint8Array): void {
    // Before the connection is adopted nothing has been asked on it, so a frame can only be a
    // notice: it is dropped. A broken frame is remembered by the decoder, and adopt() gives up.
    if (conn?.failure) return;
    try {
      decoder.landed(into, bytes);
      // Replies are settled synchronously, so draining the read here is bounded by its size.
      for (let frame = decoder.next(); frame; frame = decoder.next()) {
        const release = this.releaserOf(frame);
        if (!conn) {
          release?.();
          continue;
        }
        const env = parseEnvelopeHeader(frame.header);
        const call = env.re && env.id !== 0 ? conn.pending.get(env.id) : undefined;
        if (call && !env.err && frame.payload) {
          this.finish(call, release ? { body: env.body, payload: frame.payload, release } : { body: env.body, payload: frame.payload });
          continue;
        }
        release?.(); // nothing but the (copied-out) header is used
        if (!env.re) throw new CairnError('BAD_MESSAGE', `${this.address} sent a request on a reply channel`);
        if (env.id === 0) {
          if (env.err) conn.peerNotice = `${env.err.code}: ${env.err.message}`;
          continue;
        }
        if (!call) continue; // a late reply to a request that already timed out
        if (env.err) this.finish(call, errorFromWire(env.err, this.address));
        else this.finish(call, { body: env.body });
      }
    } catch (err) {
      if (conn) this.fail(conn, err);
    }
  }

  private fail(conn: Connection, err: unknown): void {
    const cause = toCairnError(err, 'BAD_FRAME');
    conn.failure = new CairnError('CONNECTION_CLOSED', `${this.address} broke the protocol: ${cause.code}: ${cause.message}`);
    conn.socket.destroy();
  }

  /** Gives a pooled frame buffer back at most once, however often it is called. */
  private releaserOf(frame: Frame): (() => void) | undefined {
    const { assembled } = frame;
    const pool = this.buffers;
    if (assembled === undefined || pool === undefined) return undefined;
    let given = false;
    return () => {
      if (!given) pool.give(assembled);
      given = true;
    };
  }

  private onClose(conn: Connection): void {
    if (this.conn === conn) this.conn = null;
    if (typeof conn.lane === 'object') conn.lane.socket.destroy();
    conn.lane = 'off';
    const why = conn.peerNotice ? ` (peer said ${conn.peerNotice})` : '';
    const err = conn.failure ?? new CairnError('CONNECTION_CLOSED', `connection to ${this.address} lost${why}`);
    for (const call of [...conn.pending.values()]) this.finish(call, err);
  }
}

/** Resolves once the server has taken the lane (its one ack byte), rejects if it does not within timeoutMs. */
function laneAck(socket: Socket, timeoutMs: number, address: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: CairnError): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onData = (chunk: Buffer): void => done(chunk.length === 1 && chunk[0] === LANE_ACK ? undefined : new CairnError('BAD_MESSAGE', `the lane to ${address} answered something other than its ack`));
    const onClose = (): void => done(new CairnError('UNAVAILABLE', `${address} refused the lane`));
    const timer = setTimeout(() => done(new CairnError('UNAVAILABLE', `${address} did not take the lane within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

function destroyAndWait(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.destroy();
  });
}
