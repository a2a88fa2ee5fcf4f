/**
 * The upload pipeline: plaintext bytes → segments → (worker) seal, erasure-code, hash → shards
 * to distinct SPs concurrently → a signed file.put, answered only once it is final.
 *
 * Memory is bounded whatever the file size: the writer side blocks (back-pressure) while `window`
 * segments of this upload, or the client's whole budget of slots, are in flight; outside them an
 * upload holds one segment, the one being filled or a full one held back until the next byte (or
 * the end) shows whether it is the last, because "last" is sealed into it. A slot is taken only
 * once a segment is full: one taken with the first byte would let a sender that stalls mid-file
 * hold it, and a few such senders stop every upload of the client.
 */
import { Writable } from 'node:stream';
import { CairnError, invariant, isCairnError } from '../errors.js';
import { fileRoot } from '../chain/state.js';
import { LIMITS, signTx, type FileRecord, type SegmentRef } from '../chain/tx.js';
import { sealSegment } from '../codec/segment-seal.js';
import { sealSmall, sealToSelf } from '../crypto/keys.js';
import { randomBytesPooled } from '../crypto/random.js';
import { NEW_SHARD_HASH } from '../crypto/shard-hash.js';
import { shardKey } from '../provider/shard-store.js';
import type { ClusterLink } from './cluster-link.js';
import type { CodecPool } from './codec-pool.js';
import { newFileId } from './file-id.js';
import { keyContext, metaContext } from './file-access.js';
import { humanDuration } from './format.js';
import { rendezvousOrder } from '../chain/placement.js';
import type { SegmentSlots } from './segment-slots.js';
import type { Session } from './sessions.js';

const SHARD_PUT_TIMEOUT_MS = 15_000;
/**
 * A failed upload's error is answered once its shards are deleted, so a delete sent to an SP that
 * went down with the upload must not hold that answer for the link's 30 s. A shard it misses stays
 * on that SP with no record naming it until repair's sweep deletes it (`orphanGraceMs`).
 */
const SHARD_DELETE_TIMEOUT_MS = 2_000;
/**
 * Segment 0 is cut short: a download cannot send its first byte before segment 0 is fetched and
 * opened, so a small one keeps the time to first byte low (measured on the server: first byte
 * written ~8–25 ms after the request with 256 KiB, 30–80 ms with a 4 MiB first segment; 32 KiB
 * was no better than 256 KiB) at the price of one more segment per file.
 */
export const FIRST_SEGMENT_BYTES = 256 * 1024;

/**
 * The largest file one record can describe with this segment size (the chain takes at most
 * LIMITS.maxSegments segments a file): past it, an upload would store every shard and then have
 * its record refused.
 */
export function largestRecordableFile(segmentSize: number): number {
  return Math.min(FIRST_SEGMENT_BYTES, segmentSize) + (LIMITS.maxSegments - 1) * segmentSize;
}
const SLOW_SHARD_GRACE_MS = 1_500;

export interface UploadSettings {
  k: number;
  m: number;
  success: number; // shards per segment that must be stored before the segment counts as written
  segmentSize: number;
  window: number; // segments in flight
  /** A file of at most this many bytes goes into its chain record, sealed, instead of into shards. */
  inlineMax: number;
  /**
   * An upload not recorded this long after it started fails: repair deletes shards that no record
   * names once they are older than its grace, which must be longer (config checks it).
   */
  maxDurationMs: number;
}

export interface UploadDeps {
  link: ClusterLink;
  pool: CodecPool;
  settings: UploadSettings;
  /** Shared by every upload of this client: bounds the segments in flight across all of them. */
  slots: SegmentSlots;
}

export interface UploadResult {
  id: string;
  name: string;
  size: number;
  block: number;
  degraded: boolean;
}

/**
 * A Writable that takes one file's bytes and stores them; `done` settles with the outcome once
 * the record is final (or with the first error, after a best-effort clean-up of stored shards).
 */
export class FileUpload extends Writable {
  readonly id = newFileId();
  readonly done: Promise<UploadResult>;
  bytesReceived = 0;

  readonly #key = randomBytesPooled(32);
  readonly #deps: UploadDeps;
  readonly #startedAt = Date.now();
  readonly #segments: SegmentRef[] = [];
  readonly #stored: { sp: string; key: string }[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  readonly #sealed = new Set<number>(); // segments whose placement is fixed
  #held: Buffer | null = null; // a full segment waiting to learn whether it is the last
  #current: Buffer | null = null; // the segment being filled; never empty once set
  #fill = 0;
  #index = 0;
  #failure: Error | null = null;
  #discarded: Promise<void> = Promise.resolve();
  /** The file.put once sent: whether the chain took it decides if the shards may be deleted. */
  #submitted: Promise<{ ok: boolean }> | null = null;
  #settle!: { resolve: (r: UploadResult) => void; reject: (e: Error) => void };
  #storedSettle!: { resolve: () => void; reject: (e: Error) => void };
  /** Resolves once every byte of the file is stored and only its record is left to make; rejects if it fails first. */
  readonly stored: Promise<void>;

  /**
   * @param mayRecord  settles once every file of the request that carries this one is received
   *   and stored, up to its record (rejects if any fails first): records are submitted only then,
   *   so a request whose file fails before that (one over the limit, a sender gone, too few SPs
   *   for a segment) stores none of its files. See `stored`.
   */
  constructor(
    deps: UploadDeps,
    private readonly session: Session,
    private readonly name: string,
    private readonly type: string,
    private readonly mayRecord: Promise<void> = Promise.resolve(),
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.#deps = deps;
    this.done = new Promise((resolve, reject) => (this.#settle = { resolve, reject }));
    this.stored = new Promise((resolve, reject) => (this.#storedSettle = { resolve, reject }));
    this.stored.catch(() => undefined); // read by whoever holds mayRecord, if anyone
    // Fails a slow upload while it is still receiving, not only when it comes to be recorded.
    const expiry = setTimeout(() => {
      if (!this.#submitted) this.destroy(this.#tooSlow());
    }, deps.settings.maxDurationMs);
    expiry.unref();
    const stop = () => clearTimeout(expiry);
    this.done.then(stop, stop);
  }

  #tooSlow(): CairnError {
    const limit = humanDuration(this.#deps.settings.maxDurationMs);
    return new CairnError('TOO_SLOW', `an upload must be complete within ${limit} (max-upload-ms); nothing was stored: send the file over a faster link or in parts`);
  }

  /**
   * Settles once a failed upload's stored shards are deleted (best effort; each request is bounded
   * by its timeout), or kept because its record may be final, so an error answered after it leaves
   * nothing behind that no record names, as far as the SPs could be reached.
   */
  get discarded(): Promise<void> {
    return this.#discarded;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#accept(chunk).then(() => callback(), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#finish().then(
      (result) => {
        this.#settle.resolve(result);
        callback();
      },
      (err: Error) => {
        this.#fail(err);
        callback(err);
      },
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (err) this.#fail(err);
    else if (!this.writableFinished) this.#fail(new CairnError('BAD_REQUEST', 'the upload was cut off before the end of the file'));
    callback(err);
  }

  async #accept(chunk: Buffer): Promise<void> {
    if (this.#failure) throw this.#failure;
    this.bytesReceived += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      // More bytes follow the held segment, so it is not the last.
      if (this.#held) await this.#dispatch(this.#takeHeld(), false);
      const size = this.#index === 0 ? this.#firstSegmentSize : this.#deps.settings.segmentSize;
      const current = (this.#current ??= this.#deps.pool.segmentBuffer(size));
      const n = Math.min(current.length - this.#fill, chunk.length - offset);
      chunk.copy(current, this.#fill, offset, offset + n);
      this.#fill += n;
      offset += n;
      if (this.#fill === current.length) {
        this.#held = current;
        this.#current = null;
        this.#fill = 0;
      }
    }
  }

  #takeHeld(): Buffer {
    const held = this.#held;
    invariant(held !== null && this.#current === null, 'a segment is held only while no other is being filled');
    this.#held = null;
    return held;
  }

  async #finish(): Promise<UploadResult> {
    if (this.#failure) throw this.#failure;
    const current = this.#current;
    if (this.#index === 0 && !this.#held && this.#fill <= this.#deps.settings.inlineMax) {
      // Small enough to ride in the record: no shards, no puts, one transaction.
      const sealed = sealSegment(this.#key, this.id, 0, true, current ? current.subarray(0, this.#fill) : Buffer.alloc(0));
      this.#current = null;
      if (current) this.#deps.pool.recycle(current);
      return this.#commit(sealed);
    }
    if (this.#held) {
      await this.#dispatch(this.#takeHeld(), true);
    } else {
      invariant(current !== null && this.#fill > 0, 'a file that is not inline ends in a held or a partly filled segment');
      this.#current = null;
      await this.#dispatch(current.subarray(0, this.#fill), true);
    }
    await Promise.all(this.#inFlight);
    if (this.#failure) throw this.#failure;
    return this.#commit();
  }

  /** Waits for room in the window and a client-wide slot, then starts the segment without waiting for it. */
  async #dispatch(plaintext: Buffer, last: boolean): Promise<void> {
    while (this.#inFlight.size >= this.#deps.settings.window) await Promise.race(this.#inFlight);
    const release = await this.#deps.slots.acquire();
    if (this.#failure) {
      release();
      this.#deps.pool.recycle(plaintext);
      throw this.#failure;
    }
    const index = this.#index++;
    const p = this.#storeSegment(index, plaintext, last)
      .catch((err: Error) => {
        this.#failure ??= err;
      })
      .finally(release);
    const tracked = p.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  async #storeSegment(index: number, plaintext: Buffer, last: boolean): Promise<void> {
    const { k, m, success } = this.#deps.settings;
    const encoded = await this.#deps.pool.encode({ key: this.#key, fileId: this.id, index, last, k, m, hashAlg: NEW_SHARD_HASH }, plaintext);
    const hashes = encoded.hashes.map((h) => Buffer.from(h).toString('hex'));
    const link = this.#deps.link;
    const order = rendezvousOrder(`${this.id}/${index}`, link.providers.filter((p) => p.up).map((p) => p.id));
    const spares = [...order.slice(k + m), ...rendezvousOrder(`${this.id}/${index}`, link.providers.filter((p) => !p.up).map((p) => p.id))];
    const placed: (string | null)[] = new Array<string | null>(k + m).fill(null);
    let storedCount = 0;
    let quorum!: () => void;
    const quorumReached = new Promise<void>((resolve) => (quorum = resolve));
    const refusals: string[] = []; // why SPs did not store a shard, for the error if too few did
    const triesPerShard = 1 + spares.length;
    // With fewer SPs up than a segment needs stored, that many shards start on SPs thought down
    // (a missed probe is not an outage); beyond that, a shard with no SP up is left for repair
    // rather than wait, segment after segment, on an SP that is likely down.
    let borrow = Math.max(0, success - order.length);
    const puts = encoded.shards.map(async (bytes, shard) => {
      let sp: string | undefined = order[shard] ?? (borrow-- > 0 ? spares.shift() : undefined);
      for (let tries = 0; sp !== undefined && tries < triesPerShard; tries++) {
        const key = shardKey(this.id, index, shard);
        try {
          await link.to(sp, 'shard.put', { key, hash: hashes[shard]!, hashAlg: NEW_SHARD_HASH, recordWithinMs: this.#deps.settings.maxDurationMs }, { payload: bytes, timeoutMs: SHARD_PUT_TIMEOUT_MS });
          this.#stored.push({ sp, key });
          if (this.#sealed.has(index)) return; // the segment was recorded without it: an orphan, for repair's sweep
          placed[shard] = sp;
          if (++storedCount >= success) quorum();
          return;
        } catch (err) {
          // Any refusal by one SP (down, its disk full or failing) is that SP's: the shard tries
          // another, and the quorum below decides whether the segment is written. Only our own
          // bugs (not a CairnError) and a cluster configured to lose shards (BAD_CONFIG: the SP
          // would sweep them before this upload may record them) end the upload here.
          if (!isCairnError(err) || err.code === 'BAD_CONFIG') throw err;
          refusals.push(`${sp}: ${err.code}`);
          sp = spares.shift(); // another SP not yet used for this segment
        }
      }
    });
    // Once `success` shards are stored, a slow SP gets a short grace, then the segment is
    // recorded degraded without it rather than holding the whole upload back.
    const all = Promise.all(puts);
    // The shard memory is reused once no put can read it any more, late or failed ones included.
    void Promise.allSettled(puts).then(() => encoded.release());
    await Promise.race([all, quorumReached.then(() => Promise.race([all, new Promise((r) => setTimeout(r, SLOW_SHARD_GRACE_MS))]))]);
    this.#sealed.add(index);
    const stored = placed.filter((sp) => sp !== null).length;
    if (stored < success) {
      throw new CairnError('UNAVAILABLE', `segment ${index}: only ${stored} of ${k + m} shards could be stored (need ${success}); too many storage providers are down or refused them (${refusals.join(', ') || 'none to send them to'})`);
    }
    invariant(new Set(placed.filter((sp) => sp !== null)).size === stored, 'shards of a segment are on distinct SPs');
    this.#segments[index] = {
      sealedLength: encoded.sealedLength,
      shards: hashes.map((hash, shard) => ({ hash, sp: placed[shard] ?? null })),
    };
  }

  get #firstSegmentSize(): number {
    return Math.min(FIRST_SEGMENT_BYTES, this.#deps.settings.segmentSize);
  }

  /** Records the file: its stored segments, or (inline) its one sealed segment itself. */
  async #commit(inline?: Buffer): Promise<UploadResult> {
    this.#storedSettle.resolve();
    await this.mayRecord;
    if (this.#failure) throw this.#failure;
    const { k, m, segmentSize } = this.#deps.settings;
    invariant(this.#segments.length === this.#index, 'every segment was stored');
    invariant(inline === undefined || this.#index === 0, 'an inline file has no stored segments');
    const content = { segments: this.#segments, ...(inline ? { inline } : { hashAlg: NEW_SHARD_HASH }) };
    const record: FileRecord = {
      id: this.id,
      owner: this.session.username,
      size: this.bytesReceived,
      createdAt: Date.now(),
      k,
      m,
      segmentSize,
      ...(this.#firstSegmentSize < segmentSize ? { firstSegmentSize: this.#firstSegmentSize } : {}),
      meta: sealSmall(this.#key, Buffer.from(JSON.stringify({ name: this.name, type: this.type })), metaContext(this.id)),
      ownerKey: sealToSelf(this.session.keys.box, this.#key, keyContext(this.id)),
      ...content,
      root: fileRoot(content),
    };
    // The guard repair's orphan sweep relies on, whatever the timer above managed to do.
    if (Date.now() - this.#startedAt > this.#deps.settings.maxDurationMs) throw this.#tooSlow();
    const tx = signTx({ type: 'file.put', file: record }, this.session.username, this.session.keys.signing, this.#deps.link.chainHash);
    const submitted = this.#deps.link.chain('chain.submit', { tx });
    this.#submitted = submitted;
    const result = await submitted.catch((err: unknown) => {
      // Sent, but no answer: the chain may have taken it (see #fail), so the user must not be told it was not.
      if (!isCairnError(err) || !err.retryable) throw err;
      throw new CairnError(err.code, `the file's record was sent to the chain but no answer came back (${err.message}); it may be stored: look for it in your files before sending it again`);
    });
    if (!result.ok) throw new CairnError('BAD_REQUEST', `the chain refused the file record: ${result.error ?? 'unknown reason'}`);
    const degraded = this.#segments.some((s) => s.shards.some((sh) => sh.sp === null));
    return { id: this.id, name: this.name, size: this.bytesReceived, block: result.height, degraded };
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    this.#settle.reject(this.#failure);
    this.#storedSettle.reject(this.#failure);
    // Segments not yet sent will not be: their buffers go back for reuse.
    for (const segment of [this.#held, this.#current]) if (segment) this.#deps.pool.recycle(segment);
    this.#held = this.#current = null;
    // Shards of a file that never got a record are garbage: remove what we stored, best effort.
    // Not while its record may be final: a submit whose answer was lost (the transaction may
    // still become final) must not leave a record whose shards are gone. Those stay, as orphans
    // at worst, which repair's sweep deletes once past its grace.
    this.#discarded = Promise.allSettled(this.#inFlight)
      .then(() => this.#submitted?.then((r) => r.ok, () => true) ?? false)
      .then((mayBeRecorded) => (mayBeRecorded ? undefined : Promise.allSettled(this.#stored.splice(0).map(({ sp, key }) => this.#deps.link.to(sp, 'shard.delete', { key }, { timeoutMs: SHARD_DELETE_TIMEOUT_MS })))))
      .then(() => undefined);
  }
}
