/**
 * Arithmetic in GF(2^8) with the generating polynomial x^8+x^4+x^3+x^2+1 (0x11d) and generator 2,
 * the field Backblaze JavaReedSolomon and klauspost/reedsolomon use, so our parity matches theirs.
 * Also the small dense-matrix operations the Reed-Solomon coder needs.
 */
import { CairnError, invariant } from '../errors.js';

const POLYNOMIAL = 0x11d;

/** LOG[a] = n such that 2^n = a (LOG[0] is unused). */
const LOG = new Uint8Array(256);
/** EXP[n] = 2^n, doubled in length so EXP[LOG[a] + LOG[b]] needs no modulo. */
const EXP = new Uint8Array(510);

{
  let x = 1;
  for (let n = 0; n < 255; n++) {
    EXP[n] = x;
    EXP[n + 255] = x;
    LOG[x] = n;
    x <<= 1;
    if (x & 0x100) x ^= POLYNOMIAL;
  }
}

/** MUL[a << 8 | b] = a·b: one 64 KiB table, so a row for coefficient a is MUL.subarray(a << 8, (a + 1) << 8). */
export const MUL = new Uint8Array(65536);

for (let a = 1; a < 256; a++) {
  const la = LOG[a]!;
  for (let b = 1; b < 256; b++) MUL[(a << 8) | b] = EXP[la + LOG[b]!]!;
}

export function mul(a: number, b: number): number {
  return MUL[((a & 0xff) << 8) | (b & 0xff)]!;
}

export function div(a: number, b: number): number {
  invariant(b !== 0, 'GF(256) division by zero');
  if (a === 0) return 0;
  return EXP[LOG[a]! + 255 - LOG[b]!]!;
}

/** a^n, with 0^0 = 1 as the Vandermonde construction needs. */
export function pow(a: number, n: number): number {
  if (n === 0) return 1;
  if (a === 0) return 0;
  return EXP[(LOG[a]! * n) % 255]!;
}

/** A rows×cols matrix of field elements, row-major. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Uint8Array;
}

export function matrix(rows: number, cols: number, data?: Uint8Array): Matrix {
  invariant(data === undefined || data.length === rows * cols, 'matrix data has the wrong size');
  return { rows, cols, data: data ?? new Uint8Array(rows * cols) };
}

function get(m: Matrix, r: number, c: number): number {
  return m.data[r * m.cols + c]!;
}

export function identity(n: number): Matrix {
  const m = matrix(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

/** Entry (r, c) = r^c: any `cols` of its rows are linearly independent, which is what makes any k shards enough. */
export function vandermonde(rows: number, cols: number): Matrix {
  const m = matrix(rows, cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m.data[r * cols + c] = pow(r, c);
  return m;
}

export function multiply(a: Matrix, b: Matrix): Matrix {
  invariant(a.cols === b.rows, 'matrix shapes do not chain');
  const out = matrix(a.rows, b.cols);
  for (let r = 0; r < a.rows; r++) {
    for (let c = 0; c < b.cols; c++) {
      let acc = 0;
      for (let i = 0; i < a.cols; i++) acc ^= mul(get(a, r, i), get(b, i, c));
      out.data[r * b.cols + c] = acc;
    }
  }
  return out;
}

/** The rows [from, to) of m. */
export function subRows(m: Matrix, from: number, to: number): Matrix {
  return matrix(to - from, m.cols, m.data.slice(from * m.cols, to * m.cols));
}

/** Gauss-Jordan inversion; throws INTEGRITY for a singular matrix (cannot happen for rows of our encoding matrix). */
export function invert(m: Matrix): Matrix {
  invariant(m.rows === m.cols, 'only square matrices invert');
  const n = m.rows;
  const w = 2 * n;
  // Work on [m | I] and reduce the left half to I; the right half is then m^-1.
  const a = new Uint8Array(n * w);
  for (let r = 0; r < n; r++) {
    a.set(m.data.subarray(r * n, (r + 1) * n), r * w);
    a[r * w + n + r] = 1;
  }
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && a[pivot * w + col] === 0) pivot++;
    if (pivot === n) throw new CairnError('INTEGRITY', 'matrix is singular');
    if (pivot !== col) {
      const tmp = a.slice(pivot * w, (pivot + 1) * w);
      a.copyWithin(pivot * w, col * w, (col + 1) * w);
      a.set(tmp, col * w);
    }
    const scale = div(1, a[col * w + col]!);
    for (let c = 0; c < w; c++) a[col * w + c] = mul(a[col * w + c]!, scale);
    for (let r = 0; r < n; r++) {
      const factor = a[r * w + col]!;
      if (r === col || factor === 0) continue;
      for (let c = 0; c < w; c++) a[r * w + c]! ^= mul(factor, a[col * w + c]!);
    }
  }
  const out = matrix(n, n);
  for (let r = 0; r < n; r++) out.data.set(a.subarray(r * w + n, (r + 1) * w), r * n);
  return out;
}
