/**
 * The machine's limits in this run, measured on the benchmark's own thread, and the floors they
 * put under the upload and download pipelines. All rates in MB/s (10^6 bytes per second).
 *
 * The CPU floor of a pipeline: every byte of a file costs each stage 1/rate seconds of one core
 * (times how many bytes that stage sees per plaintext byte); with C cores busy, the best rate is
 * C / Σ(bytes per plaintext byte / stage rate).
 *
 * Upload, k+m = 2+1 (expansion e = (k+m)/k = 1.5):
 *   client: AES-256-GCM seal ×1, RS encode ×1 (rate per input byte), SHA-256 of every shard ×e;
 *   SP:     SHA-256 re-hash of what it receives ×e; storing it in LMDB ×e, at the CPU cost the
 *           LMDB benchmark measured per byte (writeCpu: mostly the kernel's fresh page-cache pages).
 *   + transport: the shards over the TLS-PSK mailbox ×e (the mailbox benchmark's rate, counted
 *     as one core's work per byte).
 *   Disk: e bytes per plaintext byte go to LMDB with synced commits; the disk ceiling is the
 *   better of LMDB's two write rates / e (the SPs' 3 LMDB writers share one disk: counted as one).
 * Download, all shards intact (k data shards = the sealed bytes, no decode):
 *   SP: LMDB get ×1 (it sends without re-hashing); client: AES-256-GCM open ×1 (the segment's tag
 *   authenticates intact data shards, so they are not hashed: decodeSegment in segment-codec.ts);
 *   + transport: the data shards over the mailbox ×1.
 * `limit` = min(CPU floor with transport, disk ceiling). achieved/limit is printed beside figures.
 * HTTP parsing, msgpack framing, GC and copies are not in the floor: they are what a pipeline
 * spends above it.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { NEW_SHARD_HASH, shardHash } from '../../src/crypto/shard-hash.js';
import { holdFreedMemory } from '../../src/glibc-heap.js';
import { benchCodec, encodeRate, type CodecBenchResult } from './codec-bench.js';
import { benchLmdb, type LmdbBenchResult } from './lmdb-bench.js';
import { benchMailbox, type MailboxBenchResult } from './mailbox-bench.js';

const MiB = 1024 * 1024;

export interface Floor {
  /** CPU-seconds per GB (10^9 bytes) of plaintext at the floor, summed over every stage. */
  cpuSecondsPerGB: number;
  computeMBps: number;
  withTransportMBps: number;
  diskMBps: number | null;
  limitMBps: number;
}

export interface Limits {
  cores: number;
  /** node:crypto, one thread, 1 MiB chunks, a fresh cipher per chunk. */
  aes256GcmMBps: number;
  sha256MBps: number;
  /** The shard hash new records use (BLAKE3), one thread, 1 MiB: the two hashes of every stored byte. */
  shardHashMBps: number;
  codec: CodecBenchResult & { rsEncode8p4: number };
  mailbox: { tcp: MailboxBenchResult; tlsPsk: MailboxBenchResult };
  lmdb: LmdbBenchResult;
  floors: {
    upload: Record<string, Floor>; // by "k+m"
    download: Record<string, Floor>;
  };
}

function rate(bytes: number, ms: number, run: () => void): number {
  for (let i = 0; i < 3; i++) run();
  const rates: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until || rates.length < 5) {
    const t0 = performance.now();
    run();
    rates.push(bytes / ((performance.now() - t0) / 1000) / 1e6);
  }
  rates.sort((a, b) => a - b);
  return Math.round(rates[rates.length >> 1]!);
}

export function benchAesSha(ms = 400): { aes256GcmMBps: number; sha256MBps: number; shardHashMBps: number } {
  const data = randomBytes(MiB);
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const aes256GcmMBps = rate(MiB, ms, () => {
    const c = createCipheriv('aes-256-gcm', key, iv);
    for (let at = 0; at < MiB; at += 128 * 1024) c.update(data.subarray(at, at + 128 * 1024)); // as the codec seals
    c.final();
    c.getAuthTag();
  });
  const sha256MBps = rate(MiB, ms, () => createHash('sha256').update(data).digest());
  const shardHashMBps = rate(MiB, ms, () => shardHash(NEW_SHARD_HASH, data));
  return { aes256GcmMBps, sha256MBps, shardHashMBps };
}

function floorOf(cores: number, stages: [bytesPerByte: number, mbps: number][], transport: [number, number][], disk: [number, number] | null): Floor {
  const sec = (list: [number, number][]) => list.reduce((s, [b, r]) => s + b / r, 0); // seconds per MB
  const compute = sec(stages);
  const all = compute + sec(transport);
  const computeMBps = cores / compute;
  const withTransportMBps = cores / all;
  const diskMBps = disk ? disk[1] / disk[0] : null;
  return {
    cpuSecondsPerGB: Math.round(all * 1000 * 100) / 100,
    computeMBps: Math.round(computeMBps),
    withTransportMBps: Math.round(withTransportMBps),
    diskMBps: diskMBps === null ? null : Math.round(diskMBps),
    limitMBps: Math.round(Math.min(withTransportMBps, diskMBps ?? Infinity)),
  };
}

export function floors(l: Omit<Limits, 'floors'>): Limits['floors'] {
  const upload: Record<string, Floor> = {};
  const download: Record<string, Floor> = {};
  const rs: Record<string, number> = { '2+1': l.codec.rsEncode2p1, '4+2': l.codec.rsEncode4p2, '8+4': l.codec.rsEncode8p4 };
  for (const [km, rsRate] of Object.entries(rs)) {
    const [k, m] = km.split('+').map(Number) as [number, number];
    const e = (k + m) / k;
    upload[km] = floorOf(
      l.cores,
      [
        [1, l.aes256GcmMBps],
        [1, rsRate],
        [e, l.shardHashMBps],
        [e, l.shardHashMBps],
        [e, l.lmdb.writeCpuMBps],
      ],
      [[e, l.mailbox.tlsPsk.uploadMBps]],
      [e, Math.max(l.lmdb.writeSyncMBps, l.lmdb.writeBatchedMBps)],
    );
    download[km] = floorOf(
      l.cores,
      [
        [1, l.lmdb.readMBps],
        [1, l.codec.aesGcmOpen],
      ],
      [[1, l.mailbox.tlsPsk.downloadMBps]],
      null,
    );
  }
  return { upload, download };
}

export async function measureLimits(quick: boolean, onStep?: (what: string) => void): Promise<Limits> {
  const cores = cpus().length;
  // The allocator policy every actor works under: without it node:crypto's 128 KiB output
  // buffers were each mapped fresh, and AES measured ~1.3 GB/s against ~3.3 in the actors.
  holdFreedMemory();
  onStep?.('AES-256-GCM, SHA-256 and the shard hash');
  const aesSha = benchAesSha(quick ? 300 : 800);
  onStep?.('codec (Reed-Solomon, sealing)');
  const codec = { ...(await benchCodec()), rsEncode8p4: encodeRate(8, 4) };
  onStep?.('mailbox over loopback, TCP and TLS-PSK');
  const [tcp, tlsPsk] = await benchMailbox({ seconds: quick ? 0.5 : 2 });
  onStep?.('LMDB 1 MiB values');
  const lmdb = await benchLmdb({ totalMiB: quick ? 64 : 256, readMs: quick ? 300 : 1000 });
  const partial = { cores, ...aesSha, codec, mailbox: { tcp: tcp!, tlsPsk: tlsPsk! }, lmdb };
  return { ...partial, floors: floors(partial) };
}
