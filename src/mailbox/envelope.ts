/**
 * The envelope every mailbox frame carries: who sent what, and which request a reply answers.
 * Its shape is checked here, at the edge; message bodies are checked by each handler's parser.
 */
import { CairnError, type ErrorCode } from '../errors.js';
import { int, literal, object, optional, str, type Parser } from '../validate.js';

export const MAX_ENVELOPE_STRING = 256;

export interface WireError {
  code: string;
  message: string;
}

export interface EnvelopeHeader {
  /** Message type, e.g. 'shard.put'. */
  t: string;
  /** Correlation id; 0 marks a one-way message that gets no reply. */
  id: number;
  /** Sender id as the sender states it (the TLS-PSK link proves cluster membership, not identity). */
  from: string;
  body?: unknown;
  err?: WireError;
  re?: true;
  /** The request's payload comes on the connection's lane (src/mailbox/lane.ts): this many bytes, */
  b?: number;
  /** on the lane with this number. */
  l?: number;
}

export interface Envelope extends EnvelopeHeader {
  payload?: Uint8Array;
}

const wireString = str({ max: MAX_ENVELOPE_STRING });
const anyValue: Parser<unknown> = (v) => v;

const parseHeaderShape = object({
  t: str({ min: 1, max: MAX_ENVELOPE_STRING }),
  id: int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  from: wireString,
  body: anyValue,
  err: optional(object({ code: wireString, message: wireString })),
  re: optional(literal(true)),
  b: optional(int({ min: 1, max: Number.MAX_SAFE_INTEGER })),
  l: optional(int({ min: 1, max: Number.MAX_SAFE_INTEGER })),
});

/** Validates a decoded frame header; throws CairnError('BAD_MESSAGE'). */
export function parseEnvelopeHeader(header: unknown): EnvelopeHeader {
  const h = parseHeaderShape(header, 'envelope');
  const out: EnvelopeHeader = { t: h.t, id: h.id, from: h.from };
  if (h.body !== undefined) out.body = h.body;
  if (h.err) out.err = h.err;
  if (h.re) out.re = true;
  if (h.b !== undefined) out.b = h.b;
  if (h.l !== undefined) out.l = h.l;
  return out;
}

/** The correlation id of a header that failed validation, when it has a usable one. */
export function salvageId(header: unknown): number {
  if (typeof header !== 'object' || header === null) return 0;
  const id = (header as Record<string, unknown>)['id'];
  return typeof id === 'number' && Number.isSafeInteger(id) && id > 0 ? id : 0;
}

/** Drops absent fields so msgpack does not spend bytes on them. */
export function headerOf(e: EnvelopeHeader): EnvelopeHeader {
  const out: EnvelopeHeader = { t: e.t, id: e.id, from: e.from };
  if (e.body !== undefined) out.body = e.body;
  if (e.err) out.err = { code: clip(e.err.code), message: clip(e.err.message) };
  if (e.re) out.re = true;
  if (e.b !== undefined) out.b = e.b;
  if (e.l !== undefined) out.l = e.l;
  return out;
}

function clip(s: string): string {
  return s.length <= MAX_ENVELOPE_STRING ? s : `${s.slice(0, MAX_ENVELOPE_STRING - 1)}…`;
}

// Typed as a record over ErrorCode so the compiler flags this list when a code is added.
const KNOWN_CODES: Record<ErrorCode, true> = {
  BAD_REQUEST: true,
  BAD_CONFIG: true,
  UNAUTHENTICATED: true,
  FORBIDDEN: true,
  NOT_FOUND: true,
  METHOD_NOT_ALLOWED: true,
  CONFLICT: true,
  TOO_LARGE: true,
  UNSUPPORTED_MEDIA_TYPE: true,
  TOO_SLOW: true,
  RATE_LIMITED: true,
  UNAVAILABLE: true,
  NO_MAJORITY: true,
  NOT_LEADER: true,
  TIMEOUT: true,
  OVERLOADED: true,
  FRAME_TOO_LARGE: true,
  BAD_FRAME: true,
  BAD_MESSAGE: true,
  UNKNOWN_MESSAGE: true,
  CONNECTION_CLOSED: true,
  HASH_MISMATCH: true,
  INTEGRITY: true,
  INVALID_TX: true,
  INVALID_BLOCK: true,
  SHARD_MISSING: true,
  STORAGE_FULL: true,
  STORAGE_FAILED: true,
  INTERNAL: true,
};

/** Rebuilds a peer's error reply; a code this build does not know becomes INTERNAL. */
export function errorFromWire(err: WireError, peer: string): CairnError {
  if (Object.hasOwn(KNOWN_CODES, err.code)) {
    return new CairnError(err.code as ErrorCode, err.message, { remote: true });
  }
  return new CairnError('INTERNAL', `${peer} answered with unknown code ${err.code}: ${err.message}`, { remote: true });
}
