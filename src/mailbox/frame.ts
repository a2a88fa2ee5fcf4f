/**
 * Mailbox wire frames:
 *
 *   u32 BE totalLength | u32 BE headerLength | msgpack header | raw payload
 *
 * totalLength counts every byte after its own field (4 + header + payload). Shards travel as the
 * raw payload so they are never copied into (or out of) a msgpack buffer.
 */
import type { Socket } from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import { CairnError, invariant } from '../errors.js';
import type { BufferPool } from '../codec/buffer-pool.js';
import { checkHeaderBudget } from './header-budget.js';

export const DEFAULT_MAX_FRAME_BYTES = 32 * 1024 * 1024;
/** A TLS read yields at most 16 KiB; a TCP read up to this. */
const READ_SCRATCH_BYTES = 64 * 1024;
/** The two u32 length fields in front of every header. */
export const FRAME_PREFIX_BYTES = 8;
/**
 * Pooled assembly buffers come in multiples of this. Shard frames of one segment size differ by a
 * few bytes (the shard key's digits), and a pool keeps buffers by exact size: taken exactly, three
 * SPs made 44-54 new 2 MiB buffers during eight concurrent 64 MiB uploads (91-131 MiB of new
 * memory to zero, and external memory that brings V8's full collections closer); in a shared
 * size class, 47 MiB.
 */
const ASSEMBLY_GRANULE_BYTES = 64 * 1024;
/**
 * How long a peer may stall a connection: read nothing of what is queued for it (FrameWriter), or
 * send nothing more of a frame it started (dropStalledFrames). A 64 MiB frame moves in well under
 * a second here; a peer stalled this long is gone, stuck or hostile.
 */
export const STALLED_MS = 30_000;
/** Bytes a second the slowest link we wait for takes (2 Mbit/s). */
const STALLED_MIN_RATE = 256 * 1024;

export interface Frame {
  header: unknown;
  payload?: Uint8Array;
  /**
   * Set when the frame was assembled in a buffer from the decoder's pool: the whole buffer, to give
   * back to that pool once neither header nor payload is used any more.
   */
  assembled?: ArrayBuffer;
}

// Records and structured clones would let one message define structures that later messages
// (possibly from other peers) are decoded with; plain maps keep every frame self-contained.
// Binary fields of a header are copied out (they are small): a decoded header must not share
// memory with a frame buffer that is reused once the frame is handled.
const packr = new Packr({ useRecords: false, structuredClone: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true, copyBuffers: true });

/**
 * Encodes one frame as the pieces to hand to the socket in order: the prefix with the header, then
 * the payload untouched. Fails with FRAME_TOO_LARGE here rather than have the peer drop the link.
 */
export function encodeFrame(
  header: unknown,
  payload: Uint8Array | undefined,
  maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
): Uint8Array[] {
  const packed = packr.pack(header);
  const payloadBytes = payload?.byteLength ?? 0;
  const frameBytes = FRAME_PREFIX_BYTES + packed.byteLength + payloadBytes;
  if (frameBytes > maxFrameBytes) {
    throw new CairnError(
      'FRAME_TOO_LARGE',
      `frame of ${frameBytes} bytes exceeds the limit of ${maxFrameBytes} bytes`,
    );
  }
  // msgpackr may hand back a view of its reusable buffer, so the header is copied (it is small).
  const head = Buffer.allocUnsafe(FRAME_PREFIX_BYTES + packed.byteLength);
  head.writeUInt32BE(frameBytes - 4, 0);
  head.writeUInt32BE(packed.byteLength, 4);
  head.set(packed, FRAME_PREFIX_BYTES);
  return payloadBytes > 0 && payload ? [head, payload] : [head];
}

function decodeHeader(bytes: Uint8Array): unknown {
  checkHeaderBudget(bytes);
  try {
    return unpackr.unpack(bytes);
  } catch (err) {
    throw new CairnError('BAD_FRAME', 'frame header is not valid msgpack', { cause: err });
  }
}

/**
 * Streaming frame parser. Feed it socket chunks with push() and pull whole frames with next();
 * pulling one frame at a time lets the caller stop at its in-flight limit. It holds at most the
 * current chunk plus one frame being assembled. Once it has thrown, the stream is out of sync and
 * every later call throws the same error.
 */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  private chunk: Buffer | null = null;
  /** The chunk is the read scratch, overwritten by the next read: what stays must be copied out. */
  private chunkIsScratch = false;
  private scratch: Buffer | null = null;
  private offset = 0;
  private readonly prefix = Buffer.alloc(FRAME_PREFIX_BYTES);
  private prefixFill = 0;
  private assembly: Buffer | null = null;
  private assemblyFill = 0;
  private failure: CairnError | null = null;

  /**
   * @param buffers  where frames split across chunks (shards, in practice) are assembled; each such
   *   frame says so in `assembled`, and its consumer gives that buffer back when done.
   */
  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES, private readonly buffers?: BufferPool) {
    invariant(
      Number.isSafeInteger(maxFrameBytes) && maxFrameBytes > FRAME_PREFIX_BYTES,
      'maxFrameBytes must be an integer above the prefix size',
    );
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Why the stream broke, once it has. */
  get error(): CairnError | null {
    return this.failure;
  }

  /** Bytes neither handed out as a frame nor dropped yet (for tests and back-pressure checks). */
  get buffered(): number {
    const inChunk = this.chunk ? this.chunk.length - this.offset : 0;
    // An assembly holds everything after the frame's 4-byte length field.
    return inChunk + this.prefixFill + (this.assembly ? 4 + this.assemblyFill : 0);
  }

  push(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    // next() consumes a chunk entirely before it reports "no complete frame", and callers only
    // push after that, so at most one chunk is ever held.
    invariant(this.chunk === null, 'FrameDecoder.push called before the previous chunk was consumed');
    this.chunkIsScratch = false;
    if (chunk.length > 0) {
      this.chunk = chunk;
      this.offset = 0;
    }
  }

  /**
   * Where a socket's next read should land (a SocketReader's buffer): the unfilled rest of the
   * frame being assembled, so a shard's bytes are copied once, by the socket layer; between frames,
   * a small scratch buffer. After the read, call landed() and then pull frames with next().
   */
  readTarget(): Uint8Array {
    if (this.assembly && this.assemblyFill < this.assembly.length) return this.assembly.subarray(this.assemblyFill);
    this.scratch ??= Buffer.allocUnsafe(READ_SCRATCH_BYTES);
    return this.scratch;
  }

  /** `bytes` were read into `into`, the last readTarget(). */
  landed(into: Uint8Array, bytes: number): void {
    if (this.failure) throw this.failure;
    invariant(Number.isSafeInteger(bytes) && bytes > 0 && bytes <= into.length, 'a read lands inside its buffer');
    const assembly = this.assembly;
    if (assembly && into.buffer === assembly.buffer && into.byteOffset === assembly.byteOffset + this.assemblyFill) {
      invariant(this.chunk === null, 'a read into a frame while a chunk is held');
      this.assemblyFill += bytes;
      return;
    }
    invariant(into === this.scratch, 'a read landed in neither the frame being assembled nor the scratch buffer');
    this.push(this.scratch.subarray(0, bytes));
    this.chunkIsScratch = true;
  }

  /** The next complete frame, or undefined once every buffered byte is consumed. */
  next(): Frame | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.step();
    } catch (err) {
      this.failure =
        err instanceof CairnError ? err : new CairnError('BAD_FRAME', 'undecodable frame', { cause: err });
      this.chunk = null;
      this.prefixFill = 0;
      this.assembly = null;
      this.assemblyFill = 0;
      throw this.failure;
    }
  }

  private step(): Frame | undefined {
    if (this.assembly) return this.fillAssembly();
    const chunk = this.chunk;
    if (!chunk) return undefined;

    if (this.prefixFill === 0 && chunk.length - this.offset >= FRAME_PREFIX_BYTES) {
      const total = chunk.readUInt32BE(this.offset);
      const headerLength = chunk.readUInt32BE(this.offset + 4);
      this.checkLengths(total, headerLength);
      const start = this.offset + FRAME_PREFIX_BYTES;
      const end = this.offset + 4 + total;
      if (end <= chunk.length) {
        // Whole frame in this chunk: hand out views, no copy (but for a payload in the scratch).
        this.offset = end;
        if (this.offset === chunk.length) this.chunk = null;
        const frame = this.frameFrom(chunk, start, start + headerLength, end);
        if (this.chunkIsScratch && frame.payload) frame.payload = Buffer.from(frame.payload);
        return frame;
      }
      this.startAssembly(total, headerLength, chunk.subarray(start));
      this.chunk = null;
      return undefined;
    }

    // The prefix itself is split across chunks.
    const take = Math.min(FRAME_PREFIX_BYTES - this.prefixFill, chunk.length - this.offset);
    chunk.copy(this.prefix, this.prefixFill, this.offset, this.offset + take);
    this.prefixFill += take;
    this.offset += take;
    if (this.offset === chunk.length) this.chunk = null;
    if (this.prefixFill >= 4) {
      // Refuse an oversize length as soon as it is known, before waiting for anything else.
      this.checkTotal(this.prefix.readUInt32BE(0));
    }
    if (this.prefixFill < FRAME_PREFIX_BYTES) return undefined;
    const total = this.prefix.readUInt32BE(0);
    const headerLength = this.prefix.readUInt32BE(4);
    this.checkLengths(total, headerLength);
    this.prefixFill = 0;
    this.startAssembly(total, headerLength, Buffer.alloc(0));
    return this.fillAssembly();
  }

  private checkTotal(total: number): void {
    if (total + 4 > this.maxFrameBytes) {
      throw new CairnError(
        'FRAME_TOO_LARGE',
        `frame of ${total + 4} bytes exceeds the limit of ${this.maxFrameBytes} bytes`,
      );
    }
  }

  private checkLengths(total: number, headerLength: number): void {
    this.checkTotal(total);
    if (total < 4 || headerLength > total - 4) {
      throw new CairnError('BAD_FRAME', `header length ${headerLength} does not fit frame length ${total}`);
    }
  }

  /** Takes room for the frame (after the length field) and copies in what is here. */
  private startAssembly(total: number, headerLength: number, initial: Buffer): void {
    const pooled = this.buffers?.take(Math.ceil(total / ASSEMBLY_GRANULE_BYTES) * ASSEMBLY_GRANULE_BYTES);
    const assembly = pooled ? Buffer.from(pooled, 0, total) : Buffer.allocUnsafe(total);
    assembly.writeUInt32BE(headerLength, 0);
    initial.copy(assembly, 4);
    this.assembly = assembly;
    this.assemblyFill = 4 + initial.length;
  }

  private fillAssembly(): Frame | undefined {
    const assembly = this.assembly;
    invariant(assembly !== null, 'fillAssembly without an assembly buffer');
    const chunk = this.chunk;
    if (chunk) {
      const take = Math.min(assembly.length - this.assemblyFill, chunk.length - this.offset);
      chunk.copy(assembly, this.assemblyFill, this.offset, this.offset + take);
      this.assemblyFill += take;
      this.offset += take;
      if (this.offset === chunk.length) this.chunk = null;
    }
    if (this.assemblyFill < assembly.length) return undefined;
    this.assembly = null;
    this.assemblyFill = 0;
    const headerLength = assembly.readUInt32BE(0);
    const frame = this.frameFrom(assembly, 4, 4 + headerLength, assembly.length);
    if (this.buffers) frame.assembled = assembly.buffer as ArrayBuffer;
    return frame;
  }

  private frameFrom(buf: Buffer, headerStart: number, headerEnd: number, end: number): Frame {
    const header = decodeHeader(buf.subarray(headerStart, headerEnd));
    return headerEnd < end ? { header, payload: buf.subarray(headerEnd, end) } : { header };
  }
}

/**
 * Destroys `socket` once it has held part of a frame, with nothing more coming, for
 * STALLED_MS: up to a whole frame's buffer (64 MiB on an SP) waited for the rest for as long
 * as the peer liked. A socket this side paused (its own back-pressure) is not the peer's stall.
 */
export function dropStalledFrames(socket: Socket, decoder: FrameDecoder, stalledMs = STALLED_MS): void {
  socket.setTimeout(stalledMs);
  socket.on('timeout', () => {
    if (decoder.buffered > 0 && !socket.isPaused()) socket.destroy(new CairnError('TIMEOUT', `the peer sent part of a frame and nothing more for ${stalledMs} ms`));
    else socket.setTimeout(stalledMs); // node re-arms it only on activity: a stall after a pause must still be seen
  });
}

/**
 * A payload at least this big is handed to the socket on its own. Node's TLS layer encrypts a
 * multi-buffer write from one contiguous copy, so a shard batched with other frames (by the cork
 * below, or by queueing behind a busy socket) was copied once more in full (~5 % of a web
 * client's main thread during a large upload).
 */
const SEPARATE_PAYLOAD_BYTES = 64 * 1024;

/**
 * Writes frames to a socket without tearing them and resolves once the socket will take more, so
 * the caller's in-flight slot is the back-pressure: a writer waits while the socket is above its
 * high-water mark, so at most one frame sits above it. The socket stays corked until the current
 * turn of the event loop ends, so every small frame written in one turn (a consensus step's
 * appends and endorsements, replies made final by one LMDB commit) leaves in one writev and one
 * TLS record instead of one each.
 */
export class FrameWriter {
  private drained: Promise<void> | null = null;
  private corked = false;

  /**
   * @param stalledMs  a socket that does not take what is queued on it within this long (plus time
   *   for the queue on a slow link) is destroyed: its peer stopped reading (a paused or hostile
   *   one), and every frame waiting behind it pins its buffers (two such peers held ~2 GiB of shard
   *   replies in one SP, for as long as they liked).
   */
  constructor(
    private readonly socket: Socket,
    private readonly stalledMs = STALLED_MS,
  ) {}

  /** True when a write now would only grow the socket's buffer past its high-water mark. */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  /**
   * Resolves when the frame is handed over and the socket is below its mark (or is gone).
   * `track.wanted` is asked after waiting for the socket: a frame no longer wanted (its request
   * timed out meanwhile, its payload perhaps reused) is not written. `track.sent` is called once
   * the socket has taken the last piece: until then the socket may still read the pieces.
   */
  async write(pieces: readonly Uint8Array[], track: { wanted?: () => boolean; handed?: () => void; sent?: () => void } = {}): Promise<void> {
    const socket = this.socket;
    // Not awaited when there is room: a frame written just before the socket is ended must go out.
    if (socket.writableNeedDrain) await this.room();
    if (socket.destroyed || !socket.writable) return;
    if (track.wanted && !track.wanted()) return;
    track.handed?.();
    const payload = pieces.length > 1 ? pieces[pieces.length - 1]! : undefined;
    const alone = payload !== undefined && payload.byteLength >= SEPARATE_PAYLOAD_BYTES;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => this.flush());
    }
    const sent = track.sent ? () => track.sent!() : undefined;
    const last = pieces.length - 1;
    for (let i = 0; i < (alone ? last : pieces.length); i++) socket.write(pieces[i]!, i === last ? sent : undefined);
    if (alone) {
      // What this turn batched goes first; the payload then is the socket's only queued write.
      this.flush();
      socket.write(payload, sent);
    }
    if (socket.writableNeedDrain) await this.drain();
  }

  /** Bytes written and not yet taken by the socket. */
  get queued(): number {
    return this.socket.writableLength;
  }

  /**
   * Resolves once the socket is below its mark, or (with `maxQueued`) holds less than that (or is
   * gone). Waiters queue on 'drain' in order, so frames keep the order they were written in.
   */
  async room(maxQueued?: number): Promise<void> {
    const full = () => (maxQueued === undefined ? this.socket.writableNeedDrain : this.socket.writableLength >= maxQueued);
    while (full() && !this.socket.destroyed) await this.drain();
  }

  /** Hands what this turn wrote to the socket now, e.g. before the socket is destroyed. */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  private drain(): Promise<void> {
    if (!this.drained) {
      this.drained = new Promise<void>((resolve) => {
        // What is queued may take a slow link a while (node tells no progress within one write):
        // the wait is allowed the stall time plus the queue at STALLED_MIN_RATE.
        const allowedMs = this.stalledMs + (1000 * this.socket.writableLength) / STALLED_MIN_RATE;
        const stalled = setTimeout(() => {
          this.socket.destroy(new CairnError('TIMEOUT', `the peer took ${this.socket.writableLength} queued bytes in ${Math.round(allowedMs)} ms`));
        }, allowedMs);
        const done = (): void => {
          clearTimeout(stalled);
          this.socket.off('drain', done);
          this.socket.off('close', done);
          this.drained = null;
          resolve();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
    return this.drained;
  }
}
