/**
 * Single-thread throughput of the codec's parts over 4 MiB of input, in MB/s (10^6 bytes of input per
 * second, median of repeated runs). Used by `npm run bench`; also runnable on its own:
 *   node dist/test/bench/codec-bench.js
 */
import { createHash, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { ReedSolomon } from '../../src/codec/reed-solomon.js';
import { decodeSegment, encodeSegment } from '../../src/codec/segment-codec.js';
import { newFileKey, openSegment, sealSegment } from '../../src/codec/segment-seal.js';
import { layoutShards } from '../../src/codec/shards.js';
import { NEW_SHARD_HASH } from '../../src/crypto/shard-hash.js';

const INPUT_BYTES = 4 * 1024 * 1024;
const WARMUP_RUNS = 3;
const TIMED_RUNS = 11;

export interface CodecBenchResult {
  rsEncode2p1: number;
  rsEncode4p2: number;
  rsEncode10p4: number;
  /** Rebuilding one lost data shard. */
  rsRebuild2p1: number;
  rsRebuild4p2: number;
  rsRebuild10p4: number;
  aesGcmSeal: number;
  aesGcmOpen: number;
  sha256: number;
  /** The whole upload-side pipeline for one segment: seal, encode 2+1, hash every shard. */
  segmentEncode2p1: number;
  /** The download side with all shards intact: decodeSegment, which opens them on the segment's tag without hashing. */
  segmentDecode2p1: number;
}

function mbPerSecond(run: () => unknown): number {
  for (let i = 0; i < WARMUP_RUNS; i++) run();
  const rates: number[] = [];
  for (let i = 0; i < TIMED_RUNS; i++) {
    const start = process.hrtime.bigint();
    run();
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push(INPUT_BYTES / seconds / 1e6);
  }
  rates.sort((a, b) => a - b);
  return Math.round(rates[rates.length >> 1]!);
}

function stripe(k: number, m: number): { rs: ReedSolomon; shards: Uint8Array[]; shardSize: number } {
  const set = layoutShards(INPUT_BYTES, k, m);
  set.sealed.set(randomBytes(INPUT_BYTES));
  return { rs: new ReedSolomon(k, m), shards: set.shards, shardSize: set.shardSize };
}

export function encodeRate(k: number, m: number): number {
  const { rs, shards } = stripe(k, m);
  return mbPerSecond(() => rs.encode(shards));
}

function rebuildRate(k: number, m: number): number {
  const { rs, shards, shardSize } = stripe(k, m);
  rs.encode(shards);
  const present = shards.map((_, i) => i !== 0);
  return mbPerSecond(() => rs.reconstruct(shards, shardSize, false, present));
}

export async function benchCodec(): Promise<CodecBenchResult> {
  const key = newFileKey();
  const plaintext = randomBytes(INPUT_BYTES);
  const sealed = sealSegment(key, 'bench', 0, true, plaintext);
  const ref = { key, fileId: 'bench', index: 0, last: true, k: 2, m: 1, hashAlg: NEW_SHARD_HASH };
  const encoded = encodeSegment({ ...ref, plaintext });
  const decodeInput = { ...ref, sealedLength: encoded.sealedLength, shards: encoded.shards, hashes: encoded.hashes };
  return {
    rsEncode2p1: encodeRate(2, 1),
    rsEncode4p2: encodeRate(4, 2),
    rsEncode10p4: encodeRate(10, 4),
    rsRebuild2p1: rebuildRate(2, 1),
    rsRebuild4p2: rebuildRate(4, 2),
    rsRebuild10p4: rebuildRate(10, 4),
    aesGcmSeal: mbPerSecond(() => sealSegment(key, 'bench', 0, true, plaintext)),
    aesGcmOpen: mbPerSecond(() => openSegment(key, 'bench', 0, true, sealed)),
    sha256: mbPerSecond(() => createHash('sha256').update(plaintext).digest()),
    segmentEncode2p1: mbPerSecond(() => encodeSegment({ ...ref, plaintext, into: encoded.buffer })),
    segmentDecode2p1: mbPerSecond(() => decodeSegment(decodeInput)),
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await benchCodec();
  for (const [name, rate] of Object.entries(result)) console.log(`${name.padEnd(18)} ${String(rate).padStart(6)} MB/s`);
}
