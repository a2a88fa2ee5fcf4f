/**
 * The download pipeline: for each segment, fetch k shards concurrently (from SPs that are up
 * first; a missing or bad shard is replaced by another), verify, decode and open in a worker,
 * and hand the plaintext out in order. Up to `window` segments are fetched ahead, so memory
 * stays bounded by segmentSize × window. Any failure ends the stream with an error: never
 * wrong bytes, and the declared Content-Length exposes a cut-off stream to the receiver.
 */
import type { ServerResponse } from 'node:http';
import { CairnError, isCairnError } from '../errors.js';
import type { StoredFile } from '../chain/state.js';
import { inlineSealed } from '../chain/tx.js';
import { openSegment } from '../codec/segment-seal.js';
import { hashAlgOf } from '../crypto/shard-hash.js';
import { shardKey } from '../provider/shard-store.js';
import type { ClusterLink } from './cluster-link.js';
import type { CodecPool, DecodedSegment } from './codec-pool.js';
import { hedged } from './hedged.js';
import type { SegmentSlots } from './segment-slots.js';

export interface DownloadDeps {
  link: ClusterLink;
  pool: CodecPool;
  window: number;
  /**
   * Shared by every download of this client: bounds the segments being fetched and decoded at
   * once, so many downloads wait their turn instead of overflowing the worker queue (OVERLOADED
   * mid-stream) and holding shards of every read-ahead segment at once.
   */
  slots: SegmentSlots;
  /**
   * Also shared: segments read ahead of what readers have asked for, decoded and waiting. Without
   * it each download held `window` decoded segments until its reader took them, so readers that
   * stopped reading pinned ~5 segments each (40 paused downloads: +895 MiB).
   */
  readAhead: SegmentSlots;
  /** What reads ran into, for GET /api/v1/cluster: hedged shard fetches (a shard slower than HEDGE_MS). */
  counters: { hedges: number };
}

const SHARD_TIMEOUT_MS = 5_000;
const HEDGE_MS = 400;

/** A fetched shard; `release` gives its memory back once it is decoded. */
interface Fetched {
  bytes: Uint8Array;
  release: () => void;
}

async function fetchShard(link: ClusterLink, sp: string, key: string): Promise<Fetched | null> {
  try {
    const reply = await link.to(sp, 'shard.get', { key }, { timeoutMs: SHARD_TIMEOUT_MS });
    if (!reply.payload) return null;
    return { bytes: reply.payload, release: reply.release ?? (() => undefined) };
  } catch (err) {
    if (isCairnError(err)) return null; // missing, rotten, or SP down: another shard will do
    throw err;
  }
}

/**
 * Fetches shards until `need` good ones are in (hedged: a stalled SP costs HEDGE_MS, not a
 * timeout). Returns how many candidates were tried.
 */
async function gather(
  deps: DownloadDeps,
  fileId: string,
  index: number,
  candidates: { i: number; sp: string }[],
  need: number,
  shards: (Uint8Array | null)[],
  fetched: Fetched[],
): Promise<number> {
  const { answers, asked } = await hedged(candidates, async (c) => (await fetchShard(deps.link, c.sp, shardKey(fileId, index, c.i))) ?? undefined, {
    need,
    hedgeMs: HEDGE_MS,
    onHedge: () => (deps.counters.hedges += 1),
    onLate: (late) => late.release(),
  });
  for (const { candidate, answer } of answers) {
    fetched.push(answer);
    shards[candidate.i] = answer.bytes;
  }
  return asked;
}

async function readSegment(deps: DownloadDeps, file: StoredFile, key: Buffer, index: number): Promise<DecodedSegment> {
  const { record } = file;
  const seg = record.segments[index]!;
  const n = record.k + record.m;
  const shards: (Uint8Array | null)[] = new Array<Uint8Array | null>(n).fill(null);
  // Data shards first (no decoding needed when all are good), SPs that are up before those that are not.
  const candidates = seg.shards
    .map((s, i) => ({ i, sp: s.sp }))
    .filter((c): c is { i: number; sp: string } => c.sp !== null)
    .sort((a, b) => Number(!deps.link.get(a.sp).up) - Number(!deps.link.get(b.sp).up) || a.i - b.i);
  const fetched: Fetched[] = [];
  const release = await deps.slots.acquire();
  try {
    return await decodeFetched(deps, file, key, index, candidates, shards, fetched);
  } finally {
    // Decoding copied what it needed (or gave up): the shard buffers can take the next shards.
    for (const f of fetched) f.release();
    release(); // held while fetching and decoding only: a slow reader of the plaintext holds none
  }
}

async function decodeFetched(
  deps: DownloadDeps,
  file: StoredFile,
  key: Buffer,
  index: number,
  candidates: { i: number; sp: string }[],
  shards: (Uint8Array | null)[],
  fetched: Fetched[],
): Promise<DecodedSegment> {
  const { record } = file;
  const seg = record.segments[index]!;
  const tried = await gather(deps, record.id, index, candidates, record.k, shards, fetched);
  if (fetched.length < record.k) {
    throw new CairnError('UNAVAILABLE', `segment ${index}: only ${fetched.length} of the ${record.k} shards needed could be fetched; the storage providers holding the others are down or not answering — try again later`);
  }
  const hashes = seg.shards.map((s) => Buffer.from(s.hash, 'hex'));
  const ref = { key, fileId: record.id, index, last: index === record.segments.length - 1, k: record.k, m: record.m, hashAlg: hashAlgOf(record.hashAlg), sealedLength: seg.sealedLength };
  try {
    return await deps.pool.decode(ref, shards, hashes);
  } catch (err) {
    if (!isCairnError(err, 'INTEGRITY')) throw err;
    // A shard failed its hash inside the worker. SPs serve without re-hashing (we verify), so tell
    // the ones that sent shards to re-check them: a rotten one is removed there and repair rebuilds it.
    for (const c of candidates.slice(0, tried)) {
      if (shards[c.i]) void deps.link.to(c.sp, 'shard.check', { key: shardKey(record.id, index, c.i) }).catch(() => undefined);
    }
    // Then bring in every shard not held (not tried yet, or a hedge that lost the race and was
    // dropped: it may be the one intact shard left) and decode again.
    const rest = candidates.filter((c) => shards[c.i] === null);
    if (rest.length === 0) throw err;
    await gather(deps, record.id, index, rest, rest.length, shards, fetched);
    return deps.pool.decode(ref, shards, hashes);
  }
}

/** A file of more than one segment, read ahead in order; each segment is released once sent. */
export type SegmentStream = AsyncGenerator<DecodedSegment>;

/**
 * Reads the first segment before answering, so a file that cannot be read right now gets a clear
 * error status instead of a 200 that breaks off; later failures end the stream (the declared
 * Content-Length shows the receiver it was cut short). An inline or one-segment file is
 * answered as a buffer: it is whole by then, and a stream would only add per-request machinery
 * (~5 % of a 4 KiB download's CPU).
 */
export async function downloadBody(deps: DownloadDeps, file: StoredFile, key: Buffer): Promise<SegmentStream | Buffer> {
  // An inline file's sealed bytes came with its record: no SP to ask.
  const inline = inlineSealed(file.record);
  if (inline !== undefined) return openSegment(key, file.record.id, 0, true, inline);
  const total = file.record.segments.length;
  const ahead: Promise<DecodedSegment>[] = [];
  let started = 0;
  const start = (releaseAhead: (() => void) | null) => {
    const p = readSegment(deps, file, key, started++).then(
      (s) => (releaseAhead ? { plaintext: s.plaintext, release: () => (s.release(), releaseAhead()) } : s),
      (err: unknown) => {
        releaseAhead?.();
        throw err;
      },
    );
    p.catch(() => undefined); // observed when its turn comes
    ahead.push(p);
  };
  /** The segment the reader asks for now, if none is on its way: outside any budget, so no download starves. */
  const next = () => {
    if (ahead.length === 0 && started < total) start(null);
  };
  /** Segments beyond it, up to the window, while the client-wide read-ahead budget lasts. */
  const readAhead = () => {
    while (ahead.length < deps.window && started < total) {
      const release = deps.readAhead.tryAcquire();
      if (!release) return;
      start(release);
    }
  };
  // The first segment alone first: it decides the time to first byte, so it gets the SPs, the
  // workers and the event loop to itself; read-ahead starts once it is on its way to the reader.
  next();
  const first = await ahead[0]!;
  if (total === 1) return Buffer.from(first.plaintext.buffer, first.plaintext.byteOffset, first.plaintext.byteLength);
  async function* segments(): SegmentStream {
    try {
      for (let i = 0; i < total; i++) {
        next(); // asked for only once the reader took the last one: a stopped reader holds one segment
        const segment = await ahead.shift()!;
        readAhead();
        yield segment;
      }
    } finally {
      // Stopped early (the reader left, or a segment failed): segments read ahead are not sent.
      for (const p of ahead.splice(0)) void p.then((s) => s.release(), () => undefined);
    }
  }
  return segments();
}

/**
 * Streams segments into an HTTP response (headers already set); a segment's memory goes back for
 * reuse only when the socket is done with it (the write callback), which a Readable piped into the
 * response cannot tell. Never throws: a failure or a reader that left ends the response early.
 */
export async function sendSegments(res: ServerResponse, segments: SegmentStream, onError: (err: unknown) => void): Promise<void> {
  try {
    for await (const segment of segments) {
      if (res.destroyed) {
        segment.release();
        break;
      }
      if (segment.plaintext.length === 0) {
        segment.release();
        continue;
      }
      if (!res.write(segment.plaintext, () => segment.release())) await drainedOrClosed(res);
    }
    if (!res.destroyed) res.end();
  } catch (err) {
    onError(err);
    res.destroy(err instanceof Error ? err : new Error(String(err)));
  }
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done).off('close', done);
      resolve();
    };
    res.on('drain', done).on('close', done);
  });
}
