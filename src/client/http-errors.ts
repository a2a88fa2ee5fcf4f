/** Maps error codes to HTTP statuses; anything unexpected becomes a 500 without internals. */
import { CairnError, type ErrorCode } from '../errors.js';

const STATUS: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_MESSAGE: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  SHARD_MISSING: 404,
  CONFLICT: 409,
  TOO_LARGE: 413,
  TOO_SLOW: 408,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
  NO_MAJORITY: 503,
  NOT_LEADER: 503,
  TIMEOUT: 503,
  OVERLOADED: 503,
  CONNECTION_CLOSED: 503,
  INTEGRITY: 502,
};

export interface HttpError {
  status: number;
  code: string;
  message: string;
  internal: boolean; // log it; the user sees a generic message
}

export function httpError(err: unknown): HttpError {
  if (err instanceof CairnError) {
    const status = STATUS[err.code] ?? 500;
    return status === 500
      ? { status, code: 'INTERNAL', message: 'something went wrong on our side; it has been logged', internal: true }
      : { status, code: err.code, message: err.message, internal: false };
  }
  // Koa, koa-body and formidable throw errors that carry an HTTP status.
  const status = (err as { status?: unknown; httpCode?: unknown }).httpCode ?? (err as { status?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = status === 413 ? 'TOO_LARGE' : status === 401 ? 'UNAUTHENTICATED' : status === 404 ? 'NOT_FOUND' : 'BAD_REQUEST';
    return { status, code, message: (err as Error).message, internal: false };
  }
  return { status: 500, code: 'INTERNAL', message: 'something went wrong on our side; it has been logged', internal: true };
}
