/**
 * Account keys come from the password alone (with a salt published on the chain), so any client
 * can sign a user in without a password database: derive, then compare with the registered keys.
 */
import { scrypt as scryptCb, randomBytes, hkdfSync } from 'node:crypto';
import { promisify } from 'node:util';
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

/** 2^15 × 8 × 128 B = 32 MiB and ~100 ms here: OWASP's scrypt floor, cheap enough for a sign-in. */
export function newKdfParams(): KdfParams {
  return { alg: 'scrypt', N: 1 << 15, r: 8, p: 1, salt: randomBytes(16).toString('hex') };
}

export async function deriveAccountKeys(password: string, params: KdfParams): Promise<AccountKeys> {
  const master = await scrypt(password.normalize('NFKC'), Buffer.from(params.salt, 'hex'), 32, {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 256 * params.N * params.r + 1024 * 1024,
  });
  const seed = (info: string) => Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), info, 32));
  return { signing: signingKeyFromSeed(seed('cairn-sign-v1')), box: boxKeyFromSeed(seed('cairn-box-v1')) };
}
