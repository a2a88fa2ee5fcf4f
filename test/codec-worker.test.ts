import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Piscina } from 'piscina';
import { isCairnError } from '../src/errors.js';
import {
  type CodecOutcome,
  type DecodeResult,
  type EncodeResult,
  type SegmentRef,
  encodeResultViews,
  makeDecodeTask,
  makeEncodeTask,
  unwrapOutcome,
} from '../src/codec/segment-codec.js';
import { newFileKey } from '../src/codec/segment-seal.js';
import { CodecPool } from '../src/client/codec-pool.js';
import { NEW_SHARD_HASH } from '../src/crypto/shard-hash.js';

describe('codec worker on a real Piscina pool', () => {
  let pool: Piscina;

  before(() => {
    pool = new Piscina({ filename: new URL('../workers/codec.js', import.meta.url).href, minThreads: 1, maxThreads: 2 });
  });

  after(async () => {
    await pool.close();
  });

  async function encode(ref: SegmentRef, plaintext: Uint8Array, into?: ArrayBuffer, lentWhole = false): Promise<EncodeResult> {
    const { task, transferList } = makeEncodeTask(ref, plaintext, into, lentWhole);
    return unwrapOutcome((await pool.run(task, { name: 'encode', transferList })) as CodecOutcome<EncodeResult>);
  }

  async function decode(ref: SegmentRef, sealedLength: number, shards: (Uint8Array | null)[], hashes: Uint8Array[], into?: ArrayBuffer): Promise<Uint8Array> {
    return (await decodeFull(ref, sealedLength, shards, hashes, into)).plaintext;
  }

  async function decodeFull(
    ref: SegmentRef,
    sealedLength: number,
    shards: (Uint8Array | null)[],
    hashes: Uint8Array[],
    into?: ArrayBuffer,
    out?: ArrayBuffer,
  ): Promise<DecodeResult> {
    const { task, transferList } = makeDecodeTask({ ...ref, sealedLength }, shards, hashes, into, out);
    return unwrapOutcome((await pool.run(task, { name: 'decode', transferList })) as CodecOutcome<DecodeResult>);
  }

  it('round-trips several segments concurrently, transferring buffers both ways', async () => {
    const key = newFileKey();
    const sizes = [0, 1, 256 * 1024, 1024 * 1024 + 3];
    const results = await Promise.all(
      sizes.map(async (size, index) => {
        const ref: SegmentRef = { key, fileId: 'worker-file', index, last: index === sizes.length - 1, k: 2, m: 1, hashAlg: NEW_SHARD_HASH };
        const original = randomBytes(size);
        const plaintext = new Uint8Array(new ArrayBuffer(size));
        plaintext.set(original);
        const encoded = await encode(ref, plaintext);
        assert.equal(plaintext.buffer.byteLength, 0, 'the plaintext was transferred, not copied');
        if (size > 0) assert.equal(encoded.spent?.byteLength, size, 'and its buffer came back for reuse');
        const { shards, hashes } = encodeResultViews(encoded);
        assert.equal(shards.length, 3);
        const fetched: (Uint8Array | null)[] = shards.map((s) => new Uint8Array(s));
        fetched[index % 3] = null; // one provider is down; a different one per segment
        const decoded = await decode(ref, encoded.sealedLength, fetched, hashes);
        assert.equal(decoded.byteOffset, 0);
        assert.equal(decoded.buffer.byteLength, size, 'the plaintext came back in a buffer of its own');
        return Buffer.from(decoded).equals(original);
      }),
    );
    assert.deepEqual(results, sizes.map(() => true));
  });

  it('reuses a returned shard buffer for the next segment', async () => {
    const ref: SegmentRef = { key: newFileKey(), fileId: 'reuse', index: 0, last: false, k: 2, m: 1, hashAlg: NEW_SHARD_HASH };
    const first = await encode(ref, randomBytes(100_000));
    const recycled = first.buffer;
    const size = recycled.byteLength;
    const original = randomBytes(50_000);
    const second = await encode({ ...ref, index: 1, last: true }, new Uint8Array(original), recycled);
    assert.equal(recycled.byteLength, 0, 'the buffer went to the worker');
    assert.equal(second.buffer.byteLength, size, 'and came back holding the new shard set');
    const { shards, hashes } = encodeResultViews(second);
    const decoded = await decode({ ...ref, index: 1, last: true }, second.sealedLength, shards, hashes);
    assert.ok(Buffer.from(decoded).equals(original));
  });

  it('moves a buffer the plaintext fills only in part whole, codes just the plaintext, and sends the buffer back', async () => {
    // A file's last segment in its (recycled, full-size) segment buffer.
    const ref: SegmentRef = { key: newFileKey(), fileId: 'tail', index: 3, last: true, k: 2, m: 1, hashAlg: NEW_SHARD_HASH };
    const original = randomBytes(200_001);
    const lent = new ArrayBuffer(1024 * 1024);
    new Uint8Array(lent).fill(0x77).set(original);
    const encoded = await encode(ref, new Uint8Array(lent, 0, original.length), undefined, true);
    assert.equal(lent.byteLength, 0, 'the whole buffer went to the worker, not a copy');
    assert.equal(encoded.spent?.byteLength, 1024 * 1024, 'and came back whole for the next segment');
    assert.equal(encoded.sealedLength, original.length + 16, 'only the plaintext was sealed');
    const { shards, hashes } = encodeResultViews(encoded);
    const decoded = await decode(ref, encoded.sealedLength, [new Uint8Array(shards[0]!), null, new Uint8Array(shards[2]!)], hashes);
    assert.ok(Buffer.from(decoded).equals(original));
    assert.throws(() => makeEncodeTask(ref, new Uint8Array(new ArrayBuffer(8), 1, 4), undefined, true), /lent buffer starts with the plaintext/);
  });

  it('decodes into a recycled buffer holding stale bytes and sends it back', async () => {
    const ref: SegmentRef = { key: newFileKey(), fileId: 'recycled', index: 0, last: true, k: 2, m: 1, hashAlg: NEW_SHARD_HASH };
    const original = randomBytes(300_000);
    const encoded = await encode(ref, new Uint8Array(original));
    const { shards, hashes } = encodeResultViews(encoded);
    const first = await decodeFull(ref, encoded.sealedLength, shards.map((s) => new Uint8Array(s)), hashes);
    const stale = new Uint8Array(first.spent).fill(0xa5).buffer; // whatever the last segment left there
    const size = stale.byteLength;
    const second = await decodeFull(ref, encoded.sealedLength, [null, new Uint8Array(shards[1]!), new Uint8Array(shards[2]!)], hashes, stale);
    assert.equal(stale.byteLength, 0, 'the recycled buffer went to the worker');
    assert.equal(second.spent.byteLength, size, 'and came back');
    assert.ok(Buffer.from(second.plaintext).equals(original), 'a missing shard is rebuilt whatever its slot held');

    // The plaintext can land in a recycled buffer too, which comes back holding it.
    const out = new Uint8Array(original.length).fill(0x5a).buffer;
    const third = await decodeFull(ref, encoded.sealedLength, shards.map((s) => new Uint8Array(s)), hashes, undefined, out);
    assert.equal(out.byteLength, 0, 'the plaintext buffer went to the worker');
    assert.equal(third.plaintext.byteOffset, 0);
    assert.equal(third.plaintext.buffer.byteLength, original.length, 'and came back holding the plaintext');
    assert.ok(Buffer.from(third.plaintext).equals(original));
  });

  it('reports INTEGRITY from the worker as a CairnError with its code', async () => {
    const ref: SegmentRef = { key: newFileKey(), fileId: 'f', index: 4, last: true, k: 2, m: 1, hashAlg: NEW_SHARD_HASH };
    const encoded = await encode(ref, randomBytes(5000));
    const { shards, hashes } = encodeResultViews(encoded);
    const fetched: (Uint8Array | null)[] = shards.map((s) => new Uint8Array(s));
    fetched[0] = null;
    fetched[2]![0] = fetched[2]![0]! ^ 1;
    await assert.rejects(decode(ref, encoded.sealedLength, fetched, hashes), (err: unknown) => {
      assert.ok(isCairnError(err, 'INTEGRITY'), String(err));
      assert.match(err.message, /segment 4: only 1 of 2/);
      return true;
    });
    await assert.rejects(encode({ ...ref, k: 0 }, new Uint8Array(1)), (err: unknown) => isCairnError(err, 'BAD_REQUEST'));
  });
});

describe('codec pool', () => {
  it('refuses tasks beyond its queue with OVERLOADED (a 503 to retry), and runs the others', async () => {
    const codec = new CodecPool({ minThreads: 1, maxThreads: 1, idleTimeoutMs: 1_000, maxQueue: 2, concurrentTasksPerWorker: 1 });
    try {
      const key = newFileKey();
      const runs = Array.from({ length: 8 }, (_, index) => {
        const plaintext = codec.segmentBuffer(1024 * 1024); // above the size coded on the main thread
        return codec.encode({ key, fileId: 'c'.repeat(32), index, last: false, k: 2, m: 1, hashAlg: NEW_SHARD_HASH }, plaintext);
      });
      const outcomes = await Promise.allSettled(runs);
      const refused = outcomes.filter((o) => o.status === 'rejected').map((o) => (o as PromiseRejectedResult).reason as unknown);
      assert.ok(refused.length > 0 && refused.length < 8, `some refused, some run (${refused.length} of 8 refused)`);
      for (const err of refused) assert.ok(isCairnError(err, 'OVERLOADED'), String(err));
      for (const o of outcomes) if (o.status === 'fulfilled') o.value.release();
    } finally {
      await codec.close();
    }
  });
});
