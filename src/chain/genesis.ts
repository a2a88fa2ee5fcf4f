/**
 * The genesis names the validator set: the SPs, their mailbox addresses and their public keys.
 * Its hash is height 0 of every replica's chain, so two clusters can never mix blocks.
 */
import { sha256Hex } from '../crypto/hash.js';
import * as v from '../validate.js';
import { canonical } from './canonical.js';

export const validatorP = v.object({
  id: v.str({ min: 1, max: 64, pattern: /^[a-z0-9-]+$/ }),
  address: v.str({ min: 3, max: 255, pattern: /^[^\s:]+:\d{1,5}$/ }),
  signKey: v.hex32,
});
export type Validator = v.Parsed<typeof validatorP>;

export const genesisP = v.object({
  chainId: v.str({ min: 1, max: 64 }),
  time: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  validators: v.array(validatorP, { min: 1, max: 64 }),
});
export type Genesis = v.Parsed<typeof genesisP>;

export function genesisHash(g: Genesis): string {
  return sha256Hex(canonical(g));
}

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}
