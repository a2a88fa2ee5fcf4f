/**
 * Random bytes for the ids, keys and nonces every upload draws (five of them for a small file),
 * cut from a buffer of node:crypto's CSPRNG output refilled 4 KiB at a time, as node's own
 * randomUUID does. One `randomBytes` call cost ~7 µs in a busy web client here (OpenSSL checks for
 * a fork with a system call and takes a lock every time): 7 % of the client's CPU per small
 * upload. Bytes handed out are wiped from the buffer, so none of them is ever kept behind.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { invariant } from '../errors.js';

const POOL_BYTES = 4096;
/** Larger requests are rare and go straight to node:crypto. */
const MAX_POOLED = 64;

const pool = Buffer.alloc(POOL_BYTES);
let next = POOL_BYTES; // all used: the first call fills it

export function randomBytesPooled(n: number): Buffer {
  invariant(Number.isSafeInteger(n) && n >= 0, `a byte count, got ${n}`);
  if (n > MAX_POOLED) return randomBytes(n);
  if (next + n > POOL_BYTES) {
    randomFillSync(pool);
    next = 0;
  }
  const out = Buffer.from(pool.subarray(next, next + n));
  pool.fill(0, next, next + n);
  next += n;
  return out;
}
