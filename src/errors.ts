/**
 * Every error that crosses a module, process or network boundary is a CairnError: a stable
 * machine-readable code, a message a person can act on, and whether retrying may help.
 */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'BAD_CONFIG'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'CONFLICT'
  | 'TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'TOO_SLOW'
  | 'RATE_LIMITED'
  | 'UNAVAILABLE'
  | 'NO_MAJORITY'
  | 'NOT_LEADER'
  | 'TIMEOUT'
  | 'OVERLOADED'
  | 'FRAME_TOO_LARGE'
  | 'BAD_FRAME'
  | 'BAD_MESSAGE'
  | 'UNKNOWN_MESSAGE'
  | 'CONNECTION_CLOSED'
  | 'HASH_MISMATCH'
  | 'INTEGRITY'
  | 'INVALID_TX'
  | 'INVALID_BLOCK'
  | 'SHARD_MISSING'
  | 'STORAGE_FULL'
  | 'STORAGE_FAILED'
  | 'INTERNAL';

const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'UNAVAILABLE',
  'NO_MAJORITY',
  'NOT_LEADER',
  'TIMEOUT',
  'OVERLOADED',
  'CONNECTION_CLOSED',
  'RATE_LIMITED',
  'STORAGE_FULL',
]);

export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** True when a peer answered with this error (it is alive), false when it arose here. */
  readonly remote: boolean;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; remote?: boolean }) {
    super(message, options);
    this.name = 'CairnError';
    this.code = code;
    this.retryable = RETRYABLE.has(code);
    this.remote = options?.remote ?? false;
  }
}

export function isCairnError(err: unknown, code?: ErrorCode): err is CairnError {
  return err instanceof CairnError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a CairnError without losing a code that is already there. */
export function toCairnError(err: unknown, fallback: ErrorCode = 'INTERNAL'): CairnError {
  if (err instanceof CairnError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CairnError(fallback, message, { cause: err });
}

/**
 * Invariant check in the TigerBeetle manner: a broken invariant means our own code is wrong,
 * and continuing could corrupt data, so it throws loudly instead of returning an error value.
 */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
