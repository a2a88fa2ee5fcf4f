/**
 * The download pipeline: for each segment, fetch k shards concurrently (from SPs that are up
 * first; a missing or bad shard is replaced by another), verify, decode and open in a worker,
 * and stream the plaintext out in order. Up to `window` segments are fetched ahead, so memory
 * stays bounded by segmentSize × window. Any failure ends the stream with an error: never
 * wrong bytes, and the declared Content-Length exposes a cut-off stream to the receiver.
 */
import { Readable } from 'node:stream';
import { CairnError, isCairnError } from '../errors.js';
import type { StoredFile } from '../chain/state.js';
import { shardKey } from '../provider/shard-store.js';
import type { ClusterLink } from './cluster-link.js';
import type { CodecPool } from './codec-pool.js';

export interface DownloadDeps {
  link: ClusterLink;
  pool: CodecPool;
  window: number;
}

const SHARD_TIMEOUT_MS = 10_000;

async function fetchShard(link: ClusterLink, sp: string, key: string): Promise<Uint8Array | null> {
  try {
    const reply = await link.to(sp, 'shard.get', { key }, { timeoutMs: SHARD_TIMEOUT_MS });
    return reply.payload ?? null;
  } catch (err) {
    if (isCairnError(err)) return null; // missing, rotten, or SP down: another shard will do
    throw err;
  }
}

async function readSegment(deps: DownloadDeps, file: StoredFile, key: Buffer, index: number): Promise<Uint8Array> {
  const { record } = file;
  const seg = record.segments[index]!;
  const n = record.k + record.m;
  const shards: (Uint8Array | null)[] = new Array<Uint8Array | null>(n).fill(null);
  // Data shards first (no decoding needed when all are good), SPs that are up before those that are not.
  const candidates = seg.shards
    .map((s, i) => ({ i, sp: s.sp }))
    .filter((c): c is { i: number; sp: string } => c.sp !== null)
    .sort((a, b) => Number(!deps.link.get(a.sp).up) - Number(!deps.link.get(b.sp).up) || a.i - b.i);
  let next = 0;
  let good = 0;
  const fetchOne = async (): Promise<void> => {
    while (good < record.k && next < candidates.length) {
      const c = candidates[next++]!;
      const bytes = await fetchShard(deps.link, c.sp, shardKey(record.id, index, c.i));
      if (bytes) {
        shards[c.i] = bytes;
        good++;
      }
    }
  };
  await Promise.all(Array.from({ length: record.k }, fetchOne));
  const hashes = seg.shards.map((s) => Buffer.from(s.hash, 'hex'));
  const ref = { key, fileId: record.id, index, last: index === record.segments.length - 1, k: record.k, m: record.m, sealedLength: seg.sealedLength };
  try {
    return await deps.pool.decode(ref, shards, hashes);
  } catch (err) {
    if (!isCairnError(err, 'INTEGRITY') || next >= candidates.length) throw err;
    // A shard failed its hash inside the worker: fetch the shards not tried yet and decode again.
    await Promise.all(candidates.slice(next).map(async (c) => (shards[c.i] = await fetchShard(deps.link, c.sp, shardKey(record.id, index, c.i)))));
    return deps.pool.decode(ref, shards, hashes);
  }
}

export function downloadStream(deps: DownloadDeps, file: StoredFile, key: Buffer): Readable {
  const total = file.record.segments.length;
  async function* segments(): AsyncGenerator<Uint8Array> {
    const ahead: Promise<Uint8Array>[] = [];
    let started = 0;
    const fill = () => {
      while (ahead.length < deps.window && started < total) {
        const p = readSegment(deps, file, key, started++);
        p.catch(() => undefined); // observed when its turn comes
        ahead.push(p);
      }
    };
    fill();
    for (let i = 0; i < total; i++) {
      const bytes = await ahead.shift()!;
      fill();
      let produced = 0;
      if (bytes.length > 0) {
        produced = bytes.length;
        yield bytes;
      }
      if (i === total - 1 && produced === 0 && file.record.size > 0) {
        throw new CairnError('INTEGRITY', 'the last segment decoded empty but the file is not');
      }
    }
  }
  return Readable.from(segments(), { objectMode: false, highWaterMark: 1 });
}
