/**
 * A tiny schema validator for everything that crosses a process or network boundary.
 * Each parser checks once, at the edge, and returns a typed value; past the edge code trusts types.
 */
import { CairnError, type ErrorCode } from './errors.js';

export type Parser<T> = (value: unknown, path?: string) => T;
export type Parsed<P> = P extends Parser<infer T> ? T : never;

function fail(path: string, what: string): never {
  throw new CairnError('BAD_MESSAGE', `${path || 'value'}: ${what}`);
}

/** Runs a parser so that its failures carry `code` (BAD_REQUEST at the HTTP edge, BAD_MESSAGE on mailboxes). */
export function parseWith<T>(parser: Parser<T>, value: unknown, code: ErrorCode, path = ''): T {
  try {
    return parser(value, path);
  } catch (err) {
    if (err instanceof CairnError && err.code === 'BAD_MESSAGE' && code !== 'BAD_MESSAGE') {
      throw new CairnError(code, err.message);
    }
    throw err;
  }
}

export function str(opts: { min?: number; max: number; pattern?: RegExp }): Parser<string> {
  return (v, path = '') => {
    if (typeof v !== 'string') fail(path, 'must be a string');
    if (v.length < (opts.min ?? 0)) fail(path, `must have at least ${opts.min} characters`);
    if (v.length > opts.max) fail(path, `must have at most ${opts.max} characters`);
    if (opts.pattern && !opts.pattern.test(v)) fail(path, `has an invalid format`);
    return v;
  };
}

export function int(opts: { min: number; max: number }): Parser<number> {
  return (v, path = '') => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(path, 'must be an integer');
    if (v < opts.min || v > opts.max) fail(path, `must be between ${opts.min} and ${opts.max}`);
    return v;
  };
}

export const bool: Parser<boolean> = (v, path = '') => {
  if (typeof v !== 'boolean') fail(path, 'must be true or false');
  return v;
};

/** Binary as msgpack delivers it (a Buffer/Uint8Array view); never copied here. */
export function bytes(opts: { min?: number; max: number }): Parser<Uint8Array> {
  return (v, path = '') => {
    if (!(v instanceof Uint8Array)) fail(path, 'must be binary');
    if (v.length < (opts.min ?? 0) || v.length > opts.max) {
      fail(path, `must be ${opts.min ?? 0}..${opts.max} bytes long`);
    }
    return v;
  };
}

export function literal<const T extends string | number | boolean>(...allowed: T[]): Parser<T> {
  return (v, path = '') => {
    if (!allowed.includes(v as T)) fail(path, `must be one of ${allowed.join(', ')}`);
    return v as T;
  };
}

export function array<T>(item: Parser<T>, opts: { min?: number; max: number }): Parser<T[]> {
  return (v, path = '') => {
    if (!Array.isArray(v)) fail(path, 'must be a list');
    if (v.length < (opts.min ?? 0) || v.length > opts.max) {
      fail(path, `must have ${opts.min ?? 0}..${opts.max} items`);
    }
    return v.map((x, i) => item(x, `${path}[${i}]`));
  };
}

export function optional<T>(p: Parser<T>): Parser<T | undefined> {
  return (v, path) => (v === undefined || v === null ? undefined : p(v, path));
}

export function nullable<T>(p: Parser<T>): Parser<T | null> {
  return (v, path) => (v === null || v === undefined ? null : p(v, path));
}

type Shape = Record<string, Parser<unknown>>;
type ObjectOf<S extends Shape> = {
  [K in keyof S as undefined extends Parsed<S[K]> ? never : K]: Parsed<S[K]>;
} & {
  [K in keyof S as undefined extends Parsed<S[K]> ? K : never]?: Parsed<S[K]>;
};

/** Unknown keys are dropped, so nothing unvalidated reaches the inside. */
export function object<S extends Shape>(shape: S): Parser<ObjectOf<S>> {
  return (v, path = '') => {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) {
      fail(path, 'must be an object');
    }
    const src = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape)) {
      const parsed = shape[key]!(src[key], path ? `${path}.${key}` : key);
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as ObjectOf<S>;
  };
}

export function oneOf<T>(tagKey: string, variants: Record<string, Parser<T>>): Parser<T> {
  return (v, path = '') => {
    if (typeof v !== 'object' || v === null) fail(path, 'must be an object');
    const tag = (v as Record<string, unknown>)[tagKey];
    const variant = typeof tag === 'string' ? variants[tag] : undefined;
    if (!variant || !Object.hasOwn(variants, tag as string)) {
      fail(path ? `${path}.${tagKey}` : tagKey, `must be one of ${Object.keys(variants).join(', ')}`);
    }
    return variant(v, path);
  };
}

export const hex32 = str({ min: 64, max: 64, pattern: /^[0-9a-f]{64}$/ });
