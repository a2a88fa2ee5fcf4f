import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { CairnError, isCairnError } from '../src/errors.js';
import {
  type EncodedSegment,
  type SegmentRef,
  decodeInputFromTask,
  decodeSegment,
  encodeResultViews,
  encodeSegment,
  failure,
  makeDecodeTask,
  makeEncodeTask,
  toEncodeResult,
  unwrapOutcome,
  verifyShard,
} from '../src/codec/segment-codec.js';
import { newFileKey, openSegment, sealSegment, segmentAad, segmentNonce } from '../src/codec/segment-seal.js';
import { joinShards, layoutShards, shardSize } from '../src/codec/shards.js';
import { NEW_SHARD_HASH, SHARD_HASH_ALGS, shardHash, shardHashHex } from '../src/crypto/shard-hash.js';

const SEGMENT = 1 << 20;

function expectCode(fn: () => unknown, code: 'BAD_REQUEST' | 'INTEGRITY', messagePart?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isCairnError(err, code), `expected CairnError ${code}, got ${String(err)}`);
    if (messagePart !== undefined) assert.match(err.message, new RegExp(messagePart));
    return true;
  });
}

function ref(overrides: Partial<SegmentRef> = {}): SegmentRef {
  return { key: newFileKey(), fileId: 'file-Ω-1', index: 0, last: true, k: 2, m: 1, hashAlg: NEW_SHARD_HASH, ...overrides };
}

/** Each shard copied into its own buffer, as they arrive from different storage providers. */
function separated(segment: EncodedSegment): Uint8Array[] {
  return segment.shards.map((s) => new Uint8Array(s));
}

function flipBit(shard: Uint8Array, at = 0): void {
  shard[at] = shard[at]! ^ 0x01;
}

describe('segment sealing', () => {
  it('lays out nonce and associated data exactly as specified', () => {
    assert.equal(segmentNonce(258).toString('hex'), '00000000' + '0000000000000102');
    const aad = segmentAad('ab', 7, true);
    const expected = Buffer.concat([
      Buffer.from('cairn-seg-v1'),
      Buffer.from('00000002', 'hex'),
      Buffer.from('ab'),
      Buffer.from('0000000000000007', 'hex'),
      Buffer.from('01', 'hex'),
    ]);
    assert.deepEqual(aad, expected);
    assert.equal(segmentAad('é', 0, false).readUInt32BE(12), 2, 'file id length is counted in UTF-8 bytes');
  });

  it('round-trips and appends a 16-byte tag', () => {
    const key = newFileKey();
    const plaintext = randomBytes(1000);
    const sealed = sealSegment(key, 'f', 3, false, plaintext);
    assert.equal(sealed.length, 1016);
    assert.notDeepEqual(sealed.subarray(0, 1000), plaintext);
    assert.deepEqual(openSegment(key, 'f', 3, false, sealed), plaintext);
    assert.deepEqual(openSegment(key, 'f', 0, true, sealSegment(key, 'f', 0, true, new Uint8Array(0))), Buffer.alloc(0));
  });

  it('refuses a wrong key, file, index or last flag, and any changed byte', () => {
    const key = newFileKey();
    const sealed = sealSegment(key, 'f', 3, false, randomBytes(100));
    expectCode(() => openSegment(newFileKey(), 'f', 3, false, sealed), 'INTEGRITY');
    expectCode(() => openSegment(key, 'g', 3, false, sealed), 'INTEGRITY');
    expectCode(() => openSegment(key, 'f', 2, false, sealed), 'INTEGRITY');
    expectCode(() => openSegment(key, 'f', 3, true, sealed), 'INTEGRITY', 'segment 3');
    for (const at of [0, 99, 100, 115]) {
      const tampered = Buffer.from(sealed);
      flipBit(tampered, at);
      expectCode(() => openSegment(key, 'f', 3, false, tampered), 'INTEGRITY');
    }
    expectCode(() => openSegment(key, 'f', 3, false, sealed.subarray(0, 15)), 'INTEGRITY');
  });

  it('rejects malformed keys and indexes', () => {
    expectCode(() => sealSegment(new Uint8Array(16), 'f', 0, true, new Uint8Array(1)), 'BAD_REQUEST');
    expectCode(() => sealSegment(newFileKey(), 'f', -1, true, new Uint8Array(1)), 'BAD_REQUEST');
    expectCode(() => sealSegment(newFileKey(), 'f', 1.5, true, new Uint8Array(1)), 'BAD_REQUEST');
  });
});

describe('shard layout', () => {
  it('sizes shards as ceil(L/k) rounded up to 8, never 0', () => {
    assert.equal(shardSize(0, 2), 8);
    assert.equal(shardSize(1, 2), 8);
    assert.equal(shardSize(16, 1), 16);
    assert.equal(shardSize(17, 2), 16);
    assert.equal(shardSize(100, 3), 40);
    assert.equal(shardSize(SEGMENT + 16, 2), SEGMENT / 2 + 8);
    expectCode(() => shardSize(-1, 2), 'BAD_REQUEST');
    expectCode(() => shardSize(10, 0), 'BAD_REQUEST');
  });

  it('zeroes the padding of a reused buffer and joins back to the sealed bytes', () => {
    const reuse = new ArrayBuffer(4096);
    new Uint8Array(reuse).fill(0xff);
    const set = layoutShards(21, 2, 1, 0, reuse);
    assert.equal(set.buffer, reuse);
    assert.equal(set.shardSize, 16);
    set.sealed.set(randomBytes(21));
    assert.ok(new Uint8Array(reuse, 21, 11).every((b) => b === 0), 'padding is zero');
    const joined = joinShards(set.shards.slice(0, 2), 21);
    assert.equal(joined.buffer, reuse, 'consecutive shards join without a copy');
    assert.deepEqual(joined, set.sealed);
    const copied = joinShards(set.shards.slice(0, 2).map((s) => new Uint8Array(s)), 21);
    assert.notEqual(copied.buffer, reuse);
    assert.deepEqual(copied, set.sealed);
    expectCode(() => joinShards(set.shards.slice(0, 2), 33), 'BAD_REQUEST');
  });
});

describe('segment codec', () => {
  it('round-trips plaintexts of 0, 1, segment-1, segment and segment+1 bytes for several shapes', () => {
    for (const [k, m] of [[2, 1], [4, 2], [10, 4]] as const) {
      for (const length of [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1]) {
        const r = ref({ k, m });
        const plaintext = randomBytes(length);
        const encoded = encodeSegment({ ...r, plaintext });
        assert.equal(encoded.sealedLength, length + 16);
        assert.equal(encoded.shards.length, k + m);
        assert.equal(encoded.shardSize, shardSize(length + 16, k));
        assert.ok(encoded.shards.every((s) => s.length === encoded.shardSize && s.buffer === encoded.buffer));
        encoded.hashes.forEach((h, i) => {
          assert.equal(h.buffer, encoded.buffer, 'hashes live in the same buffer');
          assert.deepEqual(h, shardHash(NEW_SHARD_HASH, encoded.shards[i]!));
        });
        const decoded = decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards: separated(encoded), hashes: encoded.hashes });
        assert.deepEqual(decoded, plaintext, `k=${k} m=${m} length=${length}`);
      }
    }
  });

  it('round-trips a file of several segments with the last flag on the final one only', () => {
    const key = newFileKey();
    const file = randomBytes(3 * 65536 + 123);
    const segments = [];
    for (let index = 0, at = 0; at < file.length; index++, at += 65536) {
      const last = at + 65536 >= file.length;
      const r = ref({ key, fileId: 'multi', index, last, k: 4, m: 2 });
      segments.push({ r, encoded: encodeSegment({ ...r, plaintext: file.subarray(at, at + 65536) }) });
    }
    assert.equal(segments.length, 4);
    const parts = segments.map(({ r, encoded }) =>
      decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards: separated(encoded), hashes: encoded.hashes }),
    );
    assert.deepEqual(Buffer.concat(parts), file);
  });

  it('treats a shard with a flipped bit as missing and still decodes, for every shard position and shard hash', () => {
    for (const [k, m, hashAlg] of [[2, 1, 'blake3'], [4, 2, 'blake3'], [2, 1, 'sha256'], [4, 2, 'sha256']] as const) {
      const r = ref({ k, m, hashAlg });
      const plaintext = randomBytes(5000);
      const encoded = encodeSegment({ ...r, plaintext });
      for (let bad = 0; bad < k + m; bad++) {
        const shards = separated(encoded);
        flipBit(shards[bad]!, bad * 7);
        const decoded = decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes });
        assert.deepEqual(decoded, plaintext, `k=${k} m=${m} bad shard ${bad}`);
      }
    }
  });

  it('treats a shard of the wrong length as missing, also the only data shard (k = 1)', () => {
    for (const [k, m] of [[1, 2], [2, 1], [4, 2]] as const) {
      const r = ref({ k, m });
      const plaintext = randomBytes(20_000);
      const encoded = encodeSegment({ ...r, plaintext });
      for (let bad = 0; bad < k + m; bad++) {
        const shards = separated(encoded);
        shards[bad] = shards[bad]!.subarray(0, shards[bad]!.length - 8); // cut short on disk
        const decoded = decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes });
        assert.deepEqual(decoded, plaintext, `k=${k} m=${m} short shard ${bad}`);
      }
    }
  });

  it('opens intact data shards on their GCM tag alone; hashes only pick out a bad shard', () => {
    const r = ref({ k: 2, m: 1 });
    const plaintext = randomBytes(6000);
    const encoded = encodeSegment({ ...r, plaintext });
    // Hashes that match nothing: authentication, not the hashes, vouches for the bytes.
    const wrong = encoded.hashes.map(() => new Uint8Array(32));
    assert.deepEqual(decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards: separated(encoded), hashes: wrong }), plaintext);
    // A changed data byte fails authentication; with no hash to find it by, no bytes come out.
    const shards = separated(encoded);
    flipBit(shards[0]!, 11);
    expectCode(() => decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: wrong }), 'INTEGRITY', 'segment');
    // With the right hashes the bad shard is found, and the parity stands in for it.
    assert.deepEqual(decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes }), plaintext);
    // Rot in a data shard's padding, which the tag does not cover, is found as well.
    const small = randomBytes(5);
    const tiny = encodeSegment({ ...r, plaintext: small }); // 21 sealed bytes in 2 shards of 16
    const padded = separated(tiny);
    padded[1]![12] = padded[1]![12]! ^ 1;
    expectCode(() => decodeSegment({ ...r, sealedLength: tiny.sealedLength, shards: padded, hashes: wrong }), 'INTEGRITY', 'segment');
    assert.deepEqual(decodeSegment({ ...r, sealedLength: tiny.sealedLength, shards: padded, hashes: tiny.hashes }), small);
  });

  it('rebuilds in place when the data shards are consecutive in one buffer', () => {
    const r = ref({ k: 4, m: 2 });
    const plaintext = randomBytes(4000);
    const encoded = encodeSegment({ ...r, plaintext });
    const before = encoded.shards.map((s) => s.slice());
    flipBit(encoded.shards[1]!, 3);
    flipBit(encoded.shards[2]!, 5);
    const decoded = decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards: encoded.shards, hashes: encoded.hashes });
    assert.deepEqual(decoded, plaintext);
    assert.deepEqual(encoded.shards, before, 'the corrupt data shards were overwritten with rebuilt bytes');
  });

  it('decodes with up to m shards missing or the wrong size', () => {
    const r = ref({ k: 4, m: 2 });
    const plaintext = randomBytes(10_000);
    const encoded = encodeSegment({ ...r, plaintext });
    const shards: (Uint8Array | null)[] = separated(encoded);
    shards[0] = null;
    shards[3] = shards[3]!.subarray(1);
    assert.deepEqual(decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes }), plaintext);
  });

  it('fails with INTEGRITY, never wrong bytes, when more than m shards are bad', () => {
    for (const [k, m] of [[2, 1], [4, 2]] as const) {
      const r = ref({ k, m, index: 5 });
      const encoded = encodeSegment({ ...r, plaintext: randomBytes(3000) });
      const n = k + m;
      for (let mask = 0; mask < 1 << n; mask++) {
        const bad = [...Array(n).keys()].filter((i) => mask & (1 << i));
        if (bad.length <= m) continue;
        const shards: (Uint8Array | null)[] = separated(encoded);
        bad.forEach((i, j) => (j % 2 === 0 ? flipBit(shards[i]!, i) : (shards[i] = null)));
        expectCode(
          () => decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes }),
          'INTEGRITY',
          `segment 5: only ${n - bad.length} of ${k}`,
        );
      }
    }
  });

  it('refuses a segment presented at another index, with another last flag or for another file', () => {
    const key = newFileKey();
    const seg0 = encodeSegment({ ...ref({ key, index: 0, last: false }), plaintext: randomBytes(700) });
    const seg1 = encodeSegment({ ...ref({ key, index: 1, last: true }), plaintext: randomBytes(700) });
    const as = (encoded: EncodedSegment, overrides: Partial<SegmentRef>) => () =>
      decodeSegment({ ...ref({ key, ...overrides }), sealedLength: encoded.sealedLength, shards: separated(encoded), hashes: encoded.hashes });
    expectCode(as(seg1, { index: 0, last: true }), 'INTEGRITY', 'authentication');
    expectCode(as(seg0, { index: 1, last: false }), 'INTEGRITY');
    // Truncation: the file is cut after segment 0, which is then claimed to be the last.
    expectCode(as(seg0, { index: 0, last: true }), 'INTEGRITY');
    expectCode(as(seg1, { index: 1, last: false }), 'INTEGRITY');
    expectCode(as(seg1, { index: 1, last: true, fileId: 'other' }), 'INTEGRITY');
    assert.equal(as(seg1, { index: 1, last: true })().length, 700);
  });

  it('reuses a provided buffer and produces the same shards as a fresh one', () => {
    const r = ref({ k: 2, m: 1 });
    const plaintext = randomBytes(9999);
    const fresh = encodeSegment({ ...r, plaintext });
    const into = new ArrayBuffer(64 * 1024);
    new Uint8Array(into).fill(0xee);
    const reused = encodeSegment({ ...r, plaintext, into });
    assert.equal(reused.buffer, into);
    assert.deepEqual(reused.shards, fresh.shards);
    assert.deepEqual(reused.hashes, fresh.hashes);
  });

  it('verifies shards against their hash, under the hash their record names', () => {
    for (const alg of SHARD_HASH_ALGS) {
      const bytes = randomBytes(100);
      const hash = shardHash(alg, bytes);
      assert.equal(verifyShard(alg, bytes, hash), true);
      assert.equal(verifyShard(alg === 'sha256' ? 'blake3' : 'sha256', bytes, hash), false, 'the other hash does not vouch for it');
      flipBit(bytes, 50);
      assert.equal(verifyShard(alg, bytes, hash), false);
      assert.equal(verifyShard(alg, bytes, hash.subarray(0, 31)), false);
    }
    // The published vectors for empty input: the hashes are the real SHA-256 and BLAKE3.
    assert.equal(shardHashHex('sha256', new Uint8Array(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(shardHashHex('blake3', new Uint8Array(0)), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
  });

  it('finds a bad shard by the hash its record names: records hashed with SHA-256 decode as before', () => {
    const r = ref({ hashAlg: 'sha256' });
    const plaintext = randomBytes(6000);
    const encoded = encodeSegment({ ...r, plaintext });
    assert.deepEqual(encoded.hashes[0], createHash('sha256').update(encoded.shards[0]!).digest());
    const shards = separated(encoded);
    flipBit(shards[1]!, 3); // the tag fails, so the shards are hashed to find the bad one
    assert.deepEqual(decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes }), plaintext);
    // Read as BLAKE3, no shard matches its hash and nothing can be rebuilt.
    expectCode(() => decodeSegment({ ...r, hashAlg: 'blake3', sealedLength: encoded.sealedLength, shards, hashes: encoded.hashes }), 'INTEGRITY', 'only 0 of 2');
  });

  it('rejects mismatched shard and hash counts', () => {
    const r = ref();
    const encoded = encodeSegment({ ...r, plaintext: randomBytes(10) });
    expectCode(
      () => decodeSegment({ ...r, sealedLength: encoded.sealedLength, shards: encoded.shards.slice(0, 2), hashes: encoded.hashes }),
      'BAD_REQUEST',
    );
  });
});

describe('worker-boundary packing', () => {
  it('moves an owned plaintext and copies a shared one', () => {
    const owned = new Uint8Array(new ArrayBuffer(8192));
    const packed = makeEncodeTask(ref(), owned);
    assert.equal(packed.task.plaintext, owned);
    assert.deepEqual(packed.transferList, [owned.buffer]);
    const shared = Buffer.from('small, from the pool');
    const copied = makeEncodeTask(ref(), shared);
    assert.notEqual(copied.task.plaintext.buffer, shared.buffer);
    assert.deepEqual(Buffer.from(copied.task.plaintext), shared);
    const into = new ArrayBuffer(16);
    assert.deepEqual(makeEncodeTask(ref(), owned, into).transferList.at(-1), into);
  });

  it('round-trips through the task and result shapes without a thread', () => {
    const r = ref({ k: 4, m: 2, index: 2, last: false });
    const plaintext = randomBytes(20_000);
    const { task } = makeEncodeTask(r, new Uint8Array(plaintext));
    const result = toEncodeResult(encodeSegment(task));
    const { shards, hashes } = encodeResultViews(result);
    const fetched: (Uint8Array | null)[] = shards.map((s) => new Uint8Array(s));
    fetched[1] = null;
    flipBit(fetched[4]!, 9);
    const { task: decodeTask, transferList } = makeDecodeTask({ ...r, sealedLength: result.sealedLength }, fetched, hashes);
    assert.deepEqual(transferList, [decodeTask.buffer]);
    assert.deepEqual(decodeTask.present, [true, false, true, true, true, true]);
    assert.deepEqual(decodeSegment(decodeInputFromTask(decodeTask)), plaintext);
  });

  it('rejects a decode task whose layout does not match its segment', () => {
    const r = ref({ k: 2, m: 1 });
    const encoded = encodeSegment({ ...r, plaintext: randomBytes(100) });
    const { task } = makeDecodeTask({ ...r, sealedLength: encoded.sealedLength }, encoded.shards, encoded.hashes);
    expectCode(() => decodeInputFromTask({ ...task, shardSize: task.shardSize + 8 }), 'BAD_REQUEST');
    expectCode(() => decodeInputFromTask({ ...task, present: [true, true] }), 'BAD_REQUEST');
    expectCode(() => makeDecodeTask({ ...r, sealedLength: encoded.sealedLength }, encoded.shards, [encoded.hashes[0]!]), 'BAD_REQUEST');
  });

  it('carries error codes as data and restores them', () => {
    const outcome = failure(new CairnError('INTEGRITY', 'segment 1: bad'));
    assert.deepEqual(outcome, { ok: false, code: 'INTEGRITY', message: 'segment 1: bad' });
    expectCode(() => unwrapOutcome(outcome), 'INTEGRITY', 'segment 1: bad');
    assert.equal(failure(new TypeError('boom')).ok, false);
    assert.equal(unwrapOutcome({ ok: true, value: 7 }), 7);
  });
});
