/**
 * Canonical encoding for everything that is hashed or signed: JSON with keys sorted at every
 * level, so any implementation can reproduce it byte for byte. Bulk binary (a small file's
 * sealed bytes) stands in as `{"sha256": hex}` of its bytes: a signature over that commits to
 * them as firmly (SHA-256 is collision resistant) and costs a hash instead of stringifying
 * twice the bytes as hex on every replica. Schemas fix where binary may appear, so such an
 * object is never confused with a value a record could hold there.
 */
import { sha256Hex } from '../crypto/hash.js';
import { invariant } from '../errors.js';

function normalise(value: unknown): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    invariant(Number.isSafeInteger(value), `canonical numbers are safe integers, got ${value}`);
    return value;
  }
  if (Array.isArray(value)) return value.map(normalise);
  if (value instanceof Uint8Array) return { sha256: sha256Hex(value) };
  invariant(typeof value === 'object', 'canonical values are plain JSON');
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value as object).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = normalise(v);
  }
  return out;
}

export function canonical(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(normalise(value)));
}
