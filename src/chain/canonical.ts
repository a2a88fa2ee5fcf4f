/**
 * Canonical encoding for everything that is hashed or signed: JSON with keys sorted at every
 * level. Binary values are hex strings before they get here, so the encoding is unambiguous
 * and any implementation can reproduce it byte for byte.
 */
import { invariant } from '../errors.js';

function normalise(value: unknown): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    invariant(Number.isSafeInteger(value), `canonical numbers are safe integers, got ${value}`);
    return value;
  }
  if (Array.isArray(value)) return value.map(normalise);
  invariant(typeof value === 'object' && !(value instanceof Uint8Array), 'canonical values are plain JSON');
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
