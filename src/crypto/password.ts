/**
 * Account keys come from the password alone (with a salt published on the chain), so any client
 * can sign a user in without a password database: derive, then compare with the registered keys.
 */
import { scrypt as scryptCb, randomBytes, hkdfSync } from 'node:crypto';
import { promisify } from 'node:util';
import { CairnError } from '../errors.js';
import { boxKeyFromSeed, signingKeyFromSeed, type BoxKey, type SigningKey } from './keys.js';

const scrypt = promisify(scryptCb) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

export interface KdfParams {
  alg: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string; // hex
}

export interface AccountKeys {
  signing: SigningKey;
  box: BoxKey;
}

/**
 * The scrypt settings an account may have: the chain refuses others at registration, and a client
 * refuses others at sign-in (a reply it cannot otherwise check), so no account can make a sign-in
 * cost more than 2^17 × 8 × 128 B = 128 MiB and a few hundred ms, whatever its password.
 */
export const KDF_LIMITS = { r: 8, maxP: 2 } as const;
/** N is a power of two (scrypt's own rule), 2^14 to 2^17. */
export const KDF_N_CHOICES = [1 << 14, 1 << 15, 1 << 16, 1 << 17] as const;
const MAX_MEMORY = 128 * Math.max(...KDF_N_CHOICES) * KDF_LIMITS.r + 1024 * 1024;

/** 2^15 × 8 × 128 B = 32 MiB and ~100 ms here: OWASP's scrypt floor, cheap enough for a sign-in. */
export function newKdfParams(): KdfParams {
  return { alg: 'scrypt', N: 1 << 15, r: KDF_LIMITS.r, p: 1, salt: randomBytes(16).toString('hex') };
}

function kdfWithinLimits(p: Pick<KdfParams, 'N' | 'r' | 'p'>): boolean {
  return (KDF_N_CHOICES as readonly number[]).includes(p.N) && p.r === KDF_LIMITS.r && Number.isSafeInteger(p.p) && p.p >= 1 && p.p <= KDF_LIMITS.maxP;
}

export async function deriveAccountKeys(password: string, params: KdfParams): Promise<AccountKeys> {
  if (!kdfWithinLimits(params)) {
    throw new CairnError('INTEGRITY', `this account's key settings (scrypt N=${params.N}, r=${params.r}, p=${params.p}) are outside what cairn accepts; it cannot be signed in to here`);
  }
  const master = await scrypt(password.normalize('NFKC'), Buffer.from(params.salt, 'hex'), 32, {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: MAX_MEMORY,
  });
  const seed = (info: string) => Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), info, 32));
  return { signing: signingKeyFromSeed(seed('cairn-sign-v1')), box: boxKeyFromSeed(seed('cairn-box-v1')) };
}
