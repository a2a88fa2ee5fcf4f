/**
 * The benchmark's models: the pipeline floors it prints beside every figure (each a sum over the
 * stages a byte passes, so a stage added to or dropped from a pipeline must show here), and the
 * split of small uploads' CPU into per-block and per-transaction costs.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fitCost } from './bench/cost-fit.js';
import { floors, type Limits } from './bench/limits.js';

// Round rates (MB/s) so the expected sums can be worked by hand.
const limits: Omit<Limits, 'floors'> = {
  cores: 2,
  aes256GcmMBps: 1000,
  sha256MBps: 2000,
  shardHashMBps: 4000,
  codec: {
    rsEncode2p1: 4000,
    rsEncode4p2: 2000,
    rsEncode8p4: 1000,
    rsEncode10p4: 800,
    rsRebuild2p1: 4000,
    rsRebuild4p2: 2000,
    rsRebuild10p4: 800,
    aesGcmSeal: 1000,
    aesGcmOpen: 1000,
    sha256: 2000,
    segmentEncode2p1: 400,
    segmentDecode2p1: 800,
  },
  mailbox: {
    tcp: { transport: 'tcp', uploadMBps: 4000, downloadMBps: 4000, smallRequestsPerSec: 50_000 },
    tlsPsk: { transport: 'tls-psk', uploadMBps: 1000, downloadMBps: 2000, smallRequestsPerSec: 40_000 },
  },
  lmdb: { valueBytes: 1 << 20, writeSyncMBps: 300, writeCpuMBps: 500, writeBatchedMBps: 600, readMBps: 4000, durableCommitsPerSec: 1000 },
};

describe('pipeline floors', () => {
  const f = floors(limits);

  it('upload 2+1: seal, encode, two shard hashes, LMDB and the mailbox, e = 1.5 bytes per byte for all but the first two', () => {
    // ms per MB: seal 1 + encode 0.25 + hash 0.375 + re-hash 0.375 (the shard hash's 4000 MB/s,
    // not SHA-256's) + LMDB 3 = 5; mailbox 1.5.
    assert.equal(f.upload['2+1']!.cpuSecondsPerGB, 6.5);
    assert.equal(f.upload['2+1']!.computeMBps, Math.round(2 / 0.005));
    assert.equal(f.upload['2+1']!.withTransportMBps, Math.round(2 / 0.0065));
    assert.equal(f.upload['2+1']!.diskMBps, 400); // the better LMDB rate, 600, over e
    assert.equal(f.upload['2+1']!.limitMBps, 308);
  });

  it('download: LMDB read, GCM open and the mailbox, with no hash (intact data shards authenticate by their tag)', () => {
    // ms per MB: read 0.25 + open 1 = 1.25; mailbox 0.5.
    assert.equal(f.download['2+1']!.cpuSecondsPerGB, 1.75);
    assert.equal(f.download['2+1']!.limitMBps, Math.round(2 / 0.00175));
    assert.equal(f.download['2+1']!.diskMBps, null);
  });
});

describe('small-upload cost fit', () => {
  it('recovers per-block and per-transaction CPU from uploads at several block sizes', () => {
    // 7 ms per block and 0.8 ms per transaction, as seen with 1, 2.6 and 10.3 uploads a block.
    const at = (txPerBlock: number) => ({ txPerBlock, cpuMsPerUpload: 0.8 + 7 / txPerBlock });
    assert.deepEqual(fitCost([at(1), at(2.6), at(10.3)]), { perBlockMs: 7, perTxMs: 0.8 });
  });

  it('says nothing without two distinct block sizes, or from runs with no block', () => {
    assert.equal(fitCost([{ txPerBlock: 4, cpuMsPerUpload: 2 }]), null);
    assert.equal(fitCost([{ txPerBlock: 4, cpuMsPerUpload: 2 }, { txPerBlock: 4, cpuMsPerUpload: 3 }]), null);
    assert.equal(fitCost([{ txPerBlock: 0, cpuMsPerUpload: 2 }, { txPerBlock: 5, cpuMsPerUpload: 1 }]), null);
  });
});
