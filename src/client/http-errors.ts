/**
 * Maps error codes to HTTP statuses and says how to end the request; anything unexpected becomes
 * a 500 without internals.
 */
import { CairnError, type ErrorCode } from '../errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_MESSAGE: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  SHARD_MISSING: 404,
  CONFLICT: 409,
  TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TOO_SLOW: 408,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  NO_MAJORITY: 503,
  NOT_LEADER: 503,
  TIMEOUT: 503,
  OVERLOADED: 503,
  CONNECTION_CLOSED: 503,
  INTEGRITY: 502,
  STORAGE_FULL: 507,
};

export interface HttpError {
  status: number;
  code: string;
  message: string;
  internal: boolean; // log it; the user sees a generic message
  /**
   * Whether the unread rest of the request body may be read (within bounds) before answering, so
   * the client sees the answer and its connection stays usable. Not for a sender already too slow
   * for its upload: it is answered at once and its connection closed.
   */
  drain: boolean;
}

const INTERNAL: HttpError = { status: 500, code: 'INTERNAL', message: 'something went wrong on our side; it has been logged', internal: true, drain: true };

/** Senders these codes name are not waited for again. */
const NO_DRAIN: ReadonlySet<string> = new Set<ErrorCode>(['TOO_SLOW']);

/** Socket codes of a peer that went away or broke HTTP itself mid-request: its doing, not ours. */
const SENDER_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** A request cut off mid-body, a sender that reset its connection, or bytes that are not HTTP (node's parser codes, HPE_*). */
export function senderCaused(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (SENDER_CODES.has(code) || code.startsWith('HPE_'));
}

export function httpError(err: unknown): HttpError {
  if (err instanceof CairnError) {
    const status = STATUS[err.code] ?? 500;
    return status === 500
      ? INTERNAL
      : { status, code: err.code, message: err.message, internal: false, drain: !NO_DRAIN.has(err.code) };
  }
  // The sender's doing, not ours: a body that does not inflate (Content-Encoding) or a request cut
  // off mid-body. Not logged as failures of ours.
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return { status: 400, code: 'BAD_REQUEST', message: `the request body could not be decompressed: ${(err as Error).message}`, internal: false, drain: false };
  }
  if (senderCaused(err)) {
    return { status: 400, code: 'BAD_REQUEST', message: 'the request was cut off before its end', internal: false, drain: false };
  }
  // Koa, koa-body and formidable throw errors that carry an HTTP status.
  const status = (err as { status?: unknown; httpCode?: unknown }).httpCode ?? (err as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = status === 413 ? 'TOO_LARGE' : status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : status === 401 ? 'UNAUTHENTICATED' : status === 404 ? 'NOT_FOUND' : 'BAD_REQUEST';
    return { status, code, message: (err as Error).message, internal: false, drain: true };
  }
  return INTERNAL;
}

/** Node's parser refusals, with the statuses node's own answer gives them. */
const PARSER_REFUSALS: Record<string, { status: number; reason: string; code: ErrorCode; message: string }> = {
  HPE_HEADER_OVERFLOW: { status: 431, reason: 'Request Header Fields Too Large', code: 'TOO_LARGE', message: 'the request line and headers are too large' },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 413, reason: 'Payload Too Large', code: 'TOO_LARGE', message: 'the chunk extensions are too large' },
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, reason: 'Request Timeout', code: 'TOO_SLOW', message: 'the request took too long to arrive' },
};
const MALFORMED = { status: 400, reason: 'Bad Request', code: 'BAD_REQUEST', message: 'the request is not well-formed HTTP' } as const;

/**
 * The whole HTTP response for a request node's parser refused before the app saw it (a malformed
 * line, bad lengths, headers too large): the contract's JSON error, where node answers with an
 * empty body. The connection closes after it.
 */
export function parserRefusal(errorCode: string | undefined): string {
  const r = PARSER_REFUSALS[errorCode ?? ''] ?? MALFORMED;
  const body = JSON.stringify({ error: { code: r.code, message: r.message } });
  return `HTTP/1.1 ${r.status} ${r.reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}
