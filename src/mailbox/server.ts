/**
 * A mailbox server: accepts peers over a Transport, decodes frames, dispatches each envelope to
 * the handler registered for its type and writes the reply. It knows no message catalogue; each
 * handler brings the parser for its body.
 *
 * Failure rules: a bad frame gets a best-effort error reply and its connection is closed (the byte
 * stream is out of sync); a bad envelope, a bad body or an unknown type gets an error reply and the
 * connection carries on. Nothing a peer sends can throw out of here.
 */
import type { Socket } from 'node:net';
import { BufferPool } from '../codec/buffer-pool.js';
import { CairnError, invariant, isCairnError } from '../errors.js';
import { parseEnvelopeHeader, salvageId, headerOf, type EnvelopeHeader, type WireError } from './envelope.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, FrameWriter, STALLED_MS, dropStalledFrames, encodeFrame, type Frame } from './frame.js';
import { LANE_OPEN_TYPE, LaneInbox, LaneIntake } from './lane.js';
import { authenticatedSp, remoteOf, type Listener, type Transport } from './transport.js';
import { ReplyBudget, type ReplyGrant } from './reply-budget.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type MailboxLog = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

export interface HandlerContext {
  /** The sender: the SP the link authenticated, else the id a member (holding the cluster key) states. */
  from: string;
  /** Whether `from` is an SP proven by its link key. */
  sp: boolean;
  /** A view into the received frame, valid until the handler settles (its memory is then reused): copy what must outlive it. */
  payload?: Uint8Array;
  /** host:port of the connection. */
  remote: string;
}

export interface HandlerResult {
  body?: unknown;
  payload?: Uint8Array;
}

export type Handler<B> = (body: B, ctx: HandlerContext) => Promise<HandlerResult | void>;

export interface MailboxServerOptions {
  /** Our id, sent as `from` on every reply. */
  id: string;
  transport: Transport;
  maxConnections?: number;
  maxInFlightPerConnection?: number;
  maxFrameBytes?: number;
  /** How long close() lets in-flight handlers finish before destroying connections. */
  closeGraceMs?: number;
  /** A connection whose peer stalls this long is dropped (frame.ts STALLED_MS, the default). */
  stalledMs?: number;
  /** Whether connections may open a lane for their payloads (src/mailbox/lane.ts); default: on TLS. */
  lanes?: boolean;
  /**
   * The lanes' port. 0 (the default): any free one, opened at the first lane asked for. Any other:
   * that one, opened with the mailbox (a deployment whose firewall lets only known ports through).
   */
  lanePort?: number;
  /**
   * Bytes of bulk replies (routes that name `replyBytes`) the server holds at once over all its
   * connections (reply-budget.ts); default 256 MiB.
   */
  maxReplyBytes?: number;
  /** How long a bulk request may wait for room in that budget with none given back before it is answered OVERLOADED; default 2 s. */
  replyWaitMs?: number;
  log?: MailboxLog;
}

export interface MailboxServerStats {
  connections: number;
  inFlight: number;
  /** Frames decoded, whatever became of them. */
  framesReceived: number;
  /** Connections closed for a bad frame. */
  badFrames: number;
  /** Connections refused before a frame could be read (failed TLS handshakes). */
  rejectedConnections: number;
  /** Payloads taken from lanes. */
  lanePayloads: number;
  /** Lane connections dropped before use (no, wrong or stale token). */
  rejectedLanes: number;
  /** Bytes of bulk replies being made or waiting for their peers, and requests waiting for room. */
  replyBytes: number;
  replyWaiting: number;
}

interface Route {
  parse: (body: unknown) => unknown;
  handler: Handler<unknown>;
  /** Taken from SPs alone (links authenticated as an SP); other members are refused. */
  spOnly: boolean;
  /** Takes its payload from the connection's lane too (src/mailbox/lane.ts); its handler checks the bytes itself. */
  lane: boolean;
  /** Its replies are bulk, about this big (from the parsed body): each waits for room in the server's reply budget. */
  replyBytes: ((body: unknown) => number) | undefined;
}

/** What a connection needs from its server; keeps those internals off the public class. */
interface ConnectionHost {
  readonly id: string;
  readonly maxInFlight: number;
  readonly maxFrameBytes: number;
  readonly stalledMs: number;
  readonly log: MailboxLog;
  readonly buffers: BufferPool;
  readonly replies: ReplyBudget;
  dispatch(connection: Connection, frame: Frame): Promise<void>;
  toWire(err: unknown, env?: EnvelopeHeader): WireError;
  countBadFrame(): void;
}

/**
 * Replies queued on a connection beyond which no more are made, and no more requests read, until
 * the peer takes some: a peer that reads none costs this much and the replies already being made.
 * Far above the socket's own mark (16 KiB), which the small replies of one busy turn pass at once
 * (4 KiB downloads at 64 measured the same either way: 4,086-4,448 and 3,818-4,765 a second).
 */
const REPLY_BACKLOG_BYTES = 8 * 1024 * 1024;

/**
 * Bulk replies held at once over every connection (reply-budget.ts): a few hundred MiB on a
 * machine of a few GiB, far above what healthy peers keep waiting (replies leave in milliseconds),
 * so it binds only when many peers stop reading at once.
 */
export const DEFAULT_MAX_REPLY_BYTES = 256 * 1024 * 1024;
/** Long beside a healthy reply's milliseconds; short beside the 30 s a stalled peer may hold room. */
const DEFAULT_REPLY_WAIT_MS = 2_000;

/** Reply type for an error that cannot be tied to a request (bad frame, bad envelope). */
export const MAILBOX_ERROR_TYPE = 'mailbox.error';

/**
 * Assembly buffers of finished requests kept for the next ones (shards arrive as frames of the
 * same few sizes). A handler may use a request's payload only until it settles.
 */
const RECYCLED_FRAME_BYTES = 16 * 1024 * 1024;

/** After a bad frame, how long the error reply may take to flush before the socket is destroyed. */
const BAD_FRAME_LINGER_MS = 1_000;

const defaultLog: MailboxLog = (level, message, fields) => {
  if (level === 'warn' || level === 'error') console.error(`[mailbox] ${level}: ${message}`, fields ?? '');
};

export class MailboxServer {
  readonly id: string;
  private readonly transport: Transport;
  private readonly maxConnections: number;
  private readonly closeGraceMs: number;
  private readonly log: MailboxLog;
  private readonly host: ConnectionHost;
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<Connection>();
  private listener: Listener | null = null;
  private closing: Promise<void> | null = null;
  private inFlightTotal = 0;
  private idleWaiter: (() => void) | null = null;
  private readonly counters = { framesReceived: 0, badFrames: 0, rejectedConnections: 0, lanePayloads: 0 };
  private readonly wantsLanes: boolean;
  private listenHost = '127.0.0.1';
  private lanesStarting: Promise<LaneIntake> | null = null;
  private lanes: LaneIntake | null = null;
  private readonly lanePort: number;

  constructor(options: MailboxServerOptions) {
    this.id = options.id;
    this.transport = options.transport;
    this.maxConnections = options.maxConnections ?? 256;
    this.closeGraceMs = options.closeGraceMs ?? 5_000;
    this.log = options.log ?? defaultLog;
    this.wantsLanes = options.lanes ?? this.transport.kind === 'tls-psk';
    this.lanePort = options.lanePort ?? 0;
    this.host = {
      id: this.id,
      maxInFlight: options.maxInFlightPerConnection ?? 16,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      stalledMs: options.stalledMs ?? STALLED_MS,
      log: this.log,
      buffers: new BufferPool(RECYCLED_FRAME_BYTES),
      replies: new ReplyBudget(options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES, options.replyWaitMs ?? DEFAULT_REPLY_WAIT_MS),
      dispatch: (connection, frame) => this.dispatch(connection, frame),
      toWire: (err, env) => this.toWire(err, env),
      countBadFrame: () => {
        this.counters.badFrames += 1;
      },
    };
    invariant(this.maxConnections >= 1 && this.host.maxInFlight >= 1, 'mailbox limits must be positive');
    invariant(Number.isInteger(this.lanePort) && this.lanePort >= 0 && this.lanePort <= 65535, 'a lane port is 0..65535');
  }

  /** Registers the handler for one message type; `parse` validates the body (throws BAD_MESSAGE). */
  handle<B>(type: string, parse: (body: unknown) => B, handler: Handler<B>, access: { spOnly?: boolean; lane?: boolean; replyBytes?: (body: B) => number } = {}): this {
    invariant(!this.routes.has(type), `mailbox handler for ${type} registered twice`);
    this.routes.set(type, { parse, handler: handler as Handler<unknown>, spOnly: access.spOnly ?? false, lane: access.lane ?? false, replyBytes: access.replyBytes as ((body: unknown) => number) | undefined });
    return this;
  }

  async listen(port: number, host = '127.0.0.1'): Promise<{ port: number }> {
    invariant(this.listener === null && this.closing === null, 'MailboxServer.listen called twice or after close');
    const listener = await this.transport.listen({
      port,
      host,
      maxConnections: this.maxConnections,
      onSocket: (socket) => this.accept(socket),
      onRejected: (err, remote) => {
        this.counters.rejectedConnections += 1;
        this.log('debug', 'mailbox connection refused', { remote, error: err.message });
      },
    });
    this.listenHost = host;
    if (this.wantsLanes && this.lanePort !== 0) {
      // A port of its own choosing is opened now: one that is taken stops the start, as the mailbox's would.
      await this.laneIntake().catch(async (err: unknown) => {
        await listener.close();
        throw err;
      });
    }
    this.listener = listener;
    return { port: listener.port };
  }

  /**
   * The lane listener. On any free port it opens at the first lane asked for, not with the
   * mailbox: opened at start it could take a port chosen a moment earlier for another actor of the
   * same cluster that had not bound it yet.
   */
  private laneIntake(): Promise<LaneIntake> {
    this.lanesStarting ??= (async () => {
      const lanes = new LaneIntake({ host: this.listenHost, port: this.lanePort, maxLanes: this.maxConnections });
      await lanes.listen();
      if (this.closing) {
        await lanes.close();
        throw new CairnError('CONNECTION_CLOSED', 'this mailbox is closing');
      }
      this.lanes = lanes;
      return lanes;
    })().catch((err: unknown) => {
      this.lanesStarting = null; // the next lane asked for tries again
      throw err;
    });
    return this.lanesStarting;
  }

  get stats(): MailboxServerStats {
    const { replies } = this.host;
    return { connections: this.connections.size, inFlight: this.inFlightTotal, ...this.counters, rejectedLanes: this.lanes?.rejected ?? 0, replyBytes: replies.used, replyWaiting: replies.waiting };
  }

  /** Stops accepting, lets in-flight handlers finish for a bounded time, then drops every connection. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.listener?.stopAccepting();
    this.lanes?.stopAccepting();
    for (const connection of this.connections) connection.stopReading();
    await this.idle(this.closeGraceMs);
    for (const connection of this.connections) connection.destroy();
    await Promise.all([this.listener?.close(), this.lanes?.close()]);
  }

  private idle(timeoutMs: number): Promise<void> {
    if (this.inFlightTotal === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiter = done;
    });
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const connection = new Connection(this.host, socket);
    this.connections.add(connection);
    socket.once('close', () => this.connections.delete(connection));
  }

  /** Called by a connection for each decoded frame; resolves when its reply is written. */
  private async dispatch(connection: Connection, frame: Frame): Promise<void> {
    this.counters.framesReceived += 1;
    this.inFlightTotal += 1;
    try {
      await this.process(connection, frame);
    } finally {
      if (frame.assembled) this.host.buffers.give(frame.assembled);
      this.inFlightTotal -= 1;
      if (this.inFlightTotal === 0 && this.idleWaiter) {
        const wake = this.idleWaiter;
        this.idleWaiter = null;
        wake();
      }
    }
  }

  private async process(connection: Connection, frame: Frame): Promise<void> {
    let env: EnvelopeHeader;
    try {
      env = parseEnvelopeHeader(frame.header);
      if (env.re) throw new CairnError('BAD_MESSAGE', 'a mailbox server takes requests, not replies');
    } catch (err) {
      const id = salvageId(frame.header);
      // Whatever it announced on the lane is not wanted.
      if (id > 0 && typeof (frame.header as { b?: unknown }).b === 'number') connection.discardLanePayload(id);
      await connection.send({ t: MAILBOX_ERROR_TYPE, id, from: this.id, re: true, err: this.toWire(err) });
      return;
    }
    let reply: EnvelopeHeader;
    let payload: Uint8Array | undefined;
    let laneFrame: Frame | undefined;
    let grant: ReplyGrant | undefined;
    try {
      // A payload on the lane is taken first, whatever becomes of its request, so none is left behind.
      if (env.b !== undefined) {
        if (frame.payload) {
          connection.discardLanePayload(env.id);
          throw new CairnError('BAD_MESSAGE', 'a request carries its payload in its frame or on its lane, not both');
        }
        if (!this.wantsLanes) throw new CairnError('BAD_MESSAGE', 'this mailbox takes no lanes');
        laneFrame = await connection.takeLanePayload(env.id, env.b, env.l);
        this.counters.lanePayloads += 1;
      }
      if (env.t === LANE_OPEN_TYPE && this.wantsLanes) {
        const lanes = await this.laneIntake();
        reply = { t: env.t, id: env.id, from: this.id, re: true, body: lanes.offer(connection.openLaneInbox()) };
      } else {
        const route = this.routes.get(env.t);
        if (!route) throw new CairnError('UNKNOWN_MESSAGE', `no handler for message type ${env.t}`);
        if (route.spOnly && connection.sp === null) throw new CairnError('FORBIDDEN', `${env.t} is taken from storage providers only`);
        if (laneFrame && !route.lane) throw new CairnError('BAD_MESSAGE', `${env.t} takes no payload from a lane`);
        const body = route.parse(env.body);
        const ctx: HandlerContext = { from: connection.sp ?? env.from, sp: connection.sp !== null, remote: connection.remote };
        const given = laneFrame?.payload ?? frame.payload;
        if (given) ctx.payload = given;
        // A reply is made only once the connection takes replies again: each (a shard, up to
        // 64 MiB) would otherwise wait in memory behind the others for a peer that reads none.
        if (env.id !== 0) {
          await connection.replyRoom();
          if (route.replyBytes !== undefined) grant = await connection.reserveReply(route.replyBytes(body));
        }
        const result = await route.handler(body, ctx);
        reply = { t: env.t, id: env.id, from: this.id, re: true, body: result?.body };
        payload = result?.payload;
        grant?.resize(payload?.byteLength ?? 0);
      }
    } catch (err) {
      grant?.release();
      grant = undefined;
      const wire = this.toWire(err, env);
      if (env.id === 0) {
        this.log('debug', 'one-way mailbox message failed', { type: env.t, from: env.from, code: wire.code });
        return;
      }
      reply = { t: env.t, id: env.id, from: this.id, re: true, err: wire };
    } finally {
      if (laneFrame?.assembled) this.host.buffers.give(laneFrame.assembled);
    }
    if (env.id !== 0) await connection.send(reply, payload, grant);
  }

  /** What a peer may learn about a failure: a CairnError's code and message, nothing else. */
  private toWire(err: unknown, env?: EnvelopeHeader): WireError {
    if (isCairnError(err)) return { code: err.code, message: err.message };
    this.log('error', 'mailbox handler failed', { type: env?.t, from: env?.from, error: err instanceof Error ? err.stack : String(err) });
    return { code: 'INTERNAL', message: 'internal error' };
  }
}

/** One accepted peer: reads frames up to the in-flight limit, pausing the socket at the limit. */
class Connection {
  readonly remote: string;
  /** The SP this link authenticated, or null. */
  readonly sp: string | null;
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private inFlight = 0;
  private peerEnded = false;
  private reading = true;
  private broken = false;
  /** The connection's lane, the latest of `lanes` it has had (a closed one is replaced when another is asked for). */
  private lane: LaneInbox | null = null;
  private lanes = 0;
  /** What this connection holds of the server's reply budget, given back as its replies go out. */
  private readonly grants = new Set<ReplyGrant>();
  /**
   * Its requests waiting for room in that budget. Each gives its in-flight slot back while it
   * waits, so the connection's other messages (consensus, chain requests) keep moving; at most
   * maxInFlight wait, and one more is refused at once.
   */
  private parked = 0;

  constructor(
    private readonly host: ConnectionHost,
    readonly socket: Socket,
  ) {
    this.remote = remoteOf(socket);
    this.sp = authenticatedSp(socket);
    this.decoder = new FrameDecoder(host.maxFrameBytes, host.buffers);
    this.writer = new FrameWriter(socket, host.stalledMs);
    dropStalledFrames(socket, this.decoder, host.stalledMs);
    socket.on('error', (err) => host.log('debug', 'mailbox socket error', { remote: this.remote, error: err.message }));
    // Requests wait while replies back up (see pump); the socket taking them again lets them in.
    socket.on('drain', () => this.pump());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      this.peerEnded = true;
      this.pump();
    });
    socket.once('close', () => {
      this.lane?.close();
      host.replies.cancel(this);
      for (const grant of this.grants) grant.release();
      this.grants.clear();
    });
  }

  /** Frees request `id`'s lane payload, now or when it comes (its request was refused before taking it). */
  discardLanePayload(id: number): void {
    this.lane?.discard(id);
  }

  /** The payload of request `id` from lane `number`; a lane that has gone fails it at once. */
  takeLanePayload(id: number, bytes: number, number: number | undefined): Promise<Frame> {
    if (this.lane === null || this.lane.number !== number) {
      return Promise.reject(new CairnError('CONNECTION_CLOSED', `lane ${number ?? '(none named)'} is not this connection's; its payload cannot come`));
    }
    return this.lane.take(id, bytes);
  }

  /**
   * Where a new lane's payloads will arrive: the current inbox while no lane has attached to it,
   * else a new one. A client asks again only once it has given up on its lane, which this side
   * may not have seen closing yet: that lane is closed, and requests naming it fail at once.
   */
  openLaneInbox(): LaneInbox {
    if (this.lane === null || this.lane.closed || this.lane.attached) {
      this.lane?.close(new CairnError('CONNECTION_CLOSED', 'the client opened a new lane'));
      this.lanes += 1;
      this.lane = new LaneInbox(this.lanes, { maxFrameBytes: this.host.maxFrameBytes, buffers: this.host.buffers, maxUnclaimed: this.host.maxInFlight, stalledMs: this.host.stalledMs });
    }
    if (this.socket.destroyed) this.lane.close();
    return this.lane;
  }

  stopReading(): void {
    this.reading = false;
    this.socket.pause();
  }

  /** Replies written this turn still go out before the socket is gone. */
  destroy(): void {
    this.writer.flush();
    this.socket.destroy();
  }

  /** Replies queued for the peer beyond REPLY_BACKLOG_BYTES: it is not keeping up (or not reading). */
  private get backlogged(): boolean {
    return this.writer.queued >= REPLY_BACKLOG_BYTES;
  }

  /** Resolves once replies can be written without waiting; rejects if the connection is gone meanwhile. */
  async replyRoom(): Promise<void> {
    if (this.backlogged) await this.writer.room(REPLY_BACKLOG_BYTES);
    if (this.socket.destroyed) throw new CairnError('CONNECTION_CLOSED', 'the connection closed before the request was handled');
  }

  /** Room in the server's reply budget for a bulk reply; rejects if the connection goes meanwhile. */
  async reserveReply(bytes: number): Promise<ReplyGrant> {
    invariant(Number.isSafeInteger(bytes) && bytes >= 0, 'a bulk reply reserves a whole number of bytes');
    let grant = this.host.replies.tryAcquire(this, bytes);
    if (!grant) {
      if (this.parked >= this.host.maxInFlight) {
        throw new CairnError('OVERLOADED', 'this provider holds as many shard replies as it may, and this connection already has as many requests waiting for room as it may; retry shortly');
      }
      this.parked += 1;
      this.inFlight -= 1;
      this.pump();
      try {
        grant = await this.host.replies.wait(this, bytes);
      } finally {
        this.parked -= 1;
        this.inFlight += 1; // taken back: dispatch gives it up when the request is done
      }
    }
    if (this.socket.destroyed) {
      grant.release();
      throw new CairnError('CONNECTION_CLOSED', 'the connection closed before the request was handled');
    }
    this.grants.add(grant);
    return grant;
  }

  /**
   * Encodes and writes one reply; an unencodable reply becomes an error reply instead. Its `grant`
   * is given back once the socket has taken the reply (or will never).
   */
  async send(header: EnvelopeHeader, payload?: Uint8Array, grant?: ReplyGrant): Promise<void> {
    let pieces: Uint8Array[];
    try {
      pieces = encodeFrame(headerOf(header), payload, this.host.maxFrameBytes);
    } catch (err) {
      const wire = this.host.toWire(err, header);
      pieces = encodeFrame(headerOf({ t: header.t, id: header.id, from: header.from, re: true, err: wire }), undefined);
    }
    if (!grant) {
      await this.writer.write(pieces);
      return;
    }
    const done = (): void => {
      grant.release();
      this.grants.delete(grant);
    };
    let handed = false;
    await this.writer.write(pieces, { handed: () => (handed = true), sent: done });
    if (!handed) done();
  }

  private onData(chunk: Buffer): void {
    if (this.broken) return;
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.pump();
  }

  /** Dispatches buffered frames while under the limit and pauses or resumes the socket to match. */
  private pump(): void {
    if (this.broken) return;
    // A peer that does not read its replies gets no more requests handled: each one's reply (a
    // shard, up to 64 MiB) would wait in memory behind the others.
    while (this.reading && this.inFlight < this.host.maxInFlight && !this.backlogged) {
      let frame: Frame | undefined;
      try {
        frame = this.decoder.next();
      } catch (err) {
        this.fail(err);
        return;
      }
      if (!frame) break;
      this.inFlight += 1;
      void this.host
        .dispatch(this, frame)
        .catch((err: unknown) => this.host.log('error', 'mailbox dispatch failed', { error: String(err) }))
        .finally(() => {
          this.inFlight -= 1;
          this.pump();
        });
    }
    const full = !this.reading || this.inFlight >= this.host.maxInFlight || this.backlogged;
    if (full) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
    // The peer half-closed: answer what it sent, then close our side.
    // A request waiting for reply room gave its slot back but is still to be answered.
    if (this.peerEnded && this.inFlight === 0 && this.parked === 0 && !full && !this.socket.writableEnded) this.socket.end();
  }

  /**
   * Bad frame: the stream is out of sync, so say why (best effort) and close. Further bytes are
   * read and dropped until the peer closes or the linger ends, so its writes finish and it sees our
   * FIN and notice rather than a reset.
   */
  private fail(err: unknown): void {
    this.broken = true;
    this.host.countBadFrame();
    this.socket.resume();
    const wire = this.host.toWire(err);
    this.host.log('debug', 'bad mailbox frame', { remote: this.remote, code: wire.code, message: wire.message });
    void this.send({ t: MAILBOX_ERROR_TYPE, id: 0, from: this.host.id, re: true, err: wire });
    this.socket.end();
    setTimeout(() => this.socket.destroy(), BAD_FRAME_LINGER_MS).unref();
  }
}
