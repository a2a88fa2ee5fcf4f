import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isCairnError } from '../src/errors.js';
import { div, identity, invert, matrix, mul, multiply, pow } from '../src/codec/gf256.js';
import { ReedSolomon } from '../src/codec/reed-solomon.js';

// ---- An independent reference, sharing no code or tables with the coder ----
// The systematic Vandermonde code is polynomial interpolation: parity j is the polynomial through the
// points (0, d0) … (k-1, d(k-1)) evaluated at k+j (points are field elements, subtraction is XOR).

function refMul(a: number, b: number): number {
  let p = 0;
  for (; b > 0; b >>= 1) {
    if (b & 1) p ^= a;
    a <<= 1;
    if (a & 0x100) a ^= 0x11d;
  }
  return p;
}

function refInv(a: number): number {
  let r = 1;
  for (let i = 0; i < 254; i++) r = refMul(r, a); // a^254 = a^-1 in GF(2^8)
  return r;
}

function lagrange(k: number, i: number, x: number): number {
  let c = 1;
  for (let l = 0; l < k; l++) if (l !== i) c = refMul(c, refMul(x ^ l, refInv(i ^ l)));
  return c;
}

function referenceParity(data: readonly Uint8Array[], m: number): Uint8Array[] {
  const k = data.length;
  const size = data[0]!.length;
  return Array.from({ length: m }, (_, j) => {
    const out = new Uint8Array(size);
    for (let i = 0; i < k; i++) {
      const c = lagrange(k, i, k + j);
      const d = data[i]!;
      for (let b = 0; b < size; b++) out[b] = out[b]! ^ refMul(c, d[b]!);
    }
    return out;
  });
}

function randomShards(k: number, m: number, size: number): Uint8Array[] {
  return [...Array.from({ length: k }, () => new Uint8Array(randomBytes(size))), ...Array.from({ length: m }, () => new Uint8Array(size))];
}

/** Every subset of {from..n-1} with exactly `size` members, in increasing order. */
function subsets(n: number, size: number, from = 0): number[][] {
  if (size === 0) return [[]];
  const out: number[][] = [];
  for (let first = from; first <= n - size; first++) {
    for (const rest of subsets(n, size - 1, first + 1)) out.push([first, ...rest]);
  }
  return out;
}

function assertCairn(fn: () => unknown, code: 'BAD_REQUEST' | 'INTEGRITY'): void {
  assert.throws(fn, (err: unknown) => isCairnError(err, code));
}

describe('GF(2^8)', () => {
  it('matches Backblaze GaloisTest answers', () => {
    assert.equal(mul(3, 4), 12);
    assert.equal(mul(7, 7), 21);
    assert.equal(mul(23, 45), 41);
    assert.equal(pow(2, 2), 4);
    assert.equal(pow(5, 20), 235);
    assert.equal(pow(13, 7), 43);
  });

  it('agrees with shift-and-add multiplication and has inverses for every element', () => {
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) assert.equal(mul(a, b), refMul(a, b));
      if (a !== 0) assert.equal(mul(a, div(1, a)), 1);
    }
  });

  it('multiplies and inverts matrices like Backblaze MatrixTest', () => {
    const product = multiply(matrix(2, 2, Uint8Array.of(1, 2, 3, 4)), matrix(2, 2, Uint8Array.of(5, 6, 7, 8)));
    assert.deepEqual([...product.data], [11, 22, 19, 42]);
    const m = matrix(3, 3, Uint8Array.of(56, 23, 98, 3, 100, 200, 45, 201, 123));
    assert.deepEqual([...invert(m).data], [175, 133, 33, 130, 13, 245, 112, 35, 126]);
    assert.deepEqual(multiply(m, invert(m)).data, identity(3).data);
    const m2 = matrix(5, 5, Uint8Array.of(1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 7, 7, 6, 6, 1));
    assert.deepEqual([...invert(m2).data], [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 123, 123, 1, 122, 122, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
  });

  it('rejects a singular matrix', () => {
    assertCairn(() => invert(matrix(2, 2, Uint8Array.of(1, 2, 1, 2))), 'INTEGRITY');
  });
});

describe('ReedSolomon encode', () => {
  it('reproduces Backblaze testOneEncode (5+5)', () => {
    const rs = new ReedSolomon(5, 5);
    const shards = [[0, 1], [4, 5], [2, 3], [6, 7], [8, 9]].map((d) => Uint8Array.from(d));
    for (let i = 0; i < 5; i++) shards.push(new Uint8Array(2));
    rs.encode(shards);
    assert.deepEqual(
      shards.slice(5).map((s) => [...s]),
      [[12, 13], [10, 11], [14, 15], [90, 91], [94, 95]],
    );
  });

  it('reproduces reed-solomon-erasure test_reconstruct (2+2)', () => {
    const rs = new ReedSolomon(2, 2);
    const shards = [Uint8Array.of(0, 1, 2), Uint8Array.of(3, 4, 5), new Uint8Array(3), new Uint8Array(3)];
    rs.encode(shards);
    assert.deepEqual(shards.slice(2).map((s) => [...s]), [[6, 11, 12], [5, 14, 11]]);
  });

  it('matches the interpolation reference for many shapes, sizes and alignments', () => {
    const shapes: [number, number][] = [[1, 1], [2, 1], [3, 2], [4, 2], [5, 3], [10, 4], [17, 3]];
    // Sizes cross the 4-byte word tail, the 4-word unroll and the 16 KiB block boundary.
    for (const size of [1, 3, 4, 13, 16, 4099, 16 * 1024 + 5]) {
      for (const [k, m] of shapes) {
        const shards = randomShards(k, m, size);
        new ReedSolomon(k, m).encode(shards);
        assert.deepEqual(shards.slice(k), referenceParity(shards.slice(0, k), m), `k=${k} m=${m} size=${size}`);
      }
    }
  });

  it('2+1 parity (its table-free pass) is right for every pair of byte values', () => {
    const a = new Uint8Array(65536);
    const b = new Uint8Array(65536);
    for (let i = 0; i < 65536; i++) [a[i], b[i]] = [i & 0xff, i >>> 8];
    const shards = [a, b, new Uint8Array(65536)];
    new ReedSolomon(2, 1).encode(shards);
    assert.deepEqual(shards.slice(2), referenceParity([a, b], 1));
  });

  it('gives the same parity for unaligned views (byte path) as for aligned ones (word path)', () => {
    const [k, m, size] = [4, 2, 1001];
    const aligned = randomShards(k, m, size);
    const backing = new Uint8Array((k + m) * size + 1);
    const unaligned = aligned.map((s, i) => {
      const view = backing.subarray(1 + i * size, 1 + (i + 1) * size);
      view.set(s);
      return view;
    });
    const rs = new ReedSolomon(k, m);
    rs.encode(aligned);
    rs.encode(unaligned);
    assert.deepEqual(unaligned, aligned);
    assert.deepEqual(aligned.slice(k), referenceParity(aligned.slice(0, k), m));
  });

  it('overwrites stale parity rather than accumulating into it', () => {
    const shards = randomShards(3, 2, 64);
    const rs = new ReedSolomon(3, 2);
    rs.encode(shards);
    const first = shards.map((s) => s.slice());
    shards[3]!.fill(0xa5);
    shards[4]!.fill(0x5a);
    rs.encode(shards);
    assert.deepEqual(shards, first);
  });

  it('accepts zero-length shards and m = 0', () => {
    new ReedSolomon(2, 1).encode([new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)]);
    const only = [Uint8Array.of(1, 2, 3)];
    new ReedSolomon(1, 0).encode(only);
    assert.deepEqual([...only[0]!], [1, 2, 3]);
  });

  it('validates its shape and its input', () => {
    for (const [k, m] of [[0, 1], [1, -1], [200, 56], [2.5, 1], [Number.NaN, 1]] as const) {
      assertCairn(() => new ReedSolomon(k, m), 'BAD_REQUEST');
    }
    assert.equal(new ReedSolomon(128, 127).m, 127);
    const rs = new ReedSolomon(2, 1);
    assertCairn(() => rs.encode([new Uint8Array(4), new Uint8Array(4)]), 'BAD_REQUEST');
    assertCairn(() => rs.encode([new Uint8Array(4), new Uint8Array(5), new Uint8Array(4)]), 'BAD_REQUEST');
  });
});

describe('ReedSolomon reconstruct', () => {
  function checkAllLossPatterns(k: number, m: number, size: number, patterns: number[][]): void {
    const rs = new ReedSolomon(k, m);
    const original = randomShards(k, m, size);
    rs.encode(original);
    for (const lost of patterns) {
      const dataOnly: (Uint8Array | null)[] = original.map((s, i) => (lost.includes(i) ? null : s.slice()));
      rs.reconstruct(dataOnly, size);
      for (let i = 0; i < k; i++) assert.deepEqual(dataOnly[i], original[i], `k=${k} m=${m} lost=${lost} shard ${i}`);
      for (const i of lost) if (i >= k) assert.equal(dataOnly[i], null, 'parity left alone unless asked');

      const everything: (Uint8Array | null)[] = original.map((s, i) => (lost.includes(i) ? null : s.slice()));
      rs.reconstruct(everything, size, true);
      assert.deepEqual(everything, original, `k=${k} m=${m} lost=${lost} with parity`);
    }
  }

  for (const [k, m] of [[2, 1], [4, 2], [3, 3]] as const) {
    it(`rebuilds from every choice of k of ${k}+${m} shards`, () => {
      const patterns = Array.from({ length: m + 1 }, (_, lost) => subsets(k + m, lost)).flat();
      checkAllLossPatterns(k, m, 37, patterns);
    });
  }

  it('rebuilds 10+4 from random choices of k shards, across block boundaries', () => {
    const patterns: number[][] = [[], [0], [13], [0, 1, 2, 3], [10, 11, 12, 13], [6, 7, 8, 9]];
    for (let i = 0; i < 20; i++) {
      const order = Array.from({ length: 14 }, (_, j) => j).sort(() => Math.random() - 0.5);
      patterns.push(order.slice(0, 1 + (i % 4)));
    }
    checkAllLossPatterns(10, 4, 40_000 + 3, patterns);
  });

  it('fills caller-supplied output buffers, whatever they held, when given presence flags', () => {
    const rs = new ReedSolomon(4, 2);
    const original = randomShards(4, 2, 64);
    rs.encode(original);
    const outputs = original.map((s) => s.slice());
    outputs[1]!.fill(0xff);
    outputs[4]!.fill(0xff);
    const kept = outputs.slice();
    rs.reconstruct(outputs, 64, true, [true, false, true, true, false, true]);
    assert.deepEqual(outputs, original);
    assert.ok(outputs.every((s, i) => s === kept[i]), 'no shard was replaced by a new buffer');
  });

  it('uses its cached decode matrix correctly on repeated loss patterns', () => {
    const rs = new ReedSolomon(3, 2);
    for (let round = 0; round < 3; round++) {
      const original = randomShards(3, 2, 24);
      rs.encode(original);
      const shards: (Uint8Array | null)[] = original.map((s, i) => (i === 0 || i === 2 ? null : s));
      rs.reconstruct(shards, 24);
      assert.deepEqual(shards.slice(0, 3), original.slice(0, 3));
    }
  });

  it('throws INTEGRITY with fewer than k shards and BAD_REQUEST on malformed input', () => {
    const rs = new ReedSolomon(4, 2);
    const shards = randomShards(4, 2, 16);
    rs.encode(shards);
    assertCairn(() => rs.reconstruct([null, null, null, shards[3]!, shards[4]!, shards[5]!], 16), 'INTEGRITY');
    assertCairn(() => rs.reconstruct([null, ...shards.slice(1)], 17), 'BAD_REQUEST');
    assertCairn(() => rs.reconstruct(shards.slice(1), 16), 'BAD_REQUEST');
    assertCairn(() => rs.reconstruct([...shards], 16, false, [true, true]), 'BAD_REQUEST');
  });
});
