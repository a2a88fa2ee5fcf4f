/**
 * The genesis names the validator set: the SPs and their public keys. Its hash is height 0 of
 * every replica's chain, so two clusters can never mix blocks. Addresses are not part of it
 * (they live in the cluster file) so an SP can move without forking history.
 */
import { sha256Hex } from '../crypto/hash.js';
import * as v from '../validate.js';
import { canonical } from './canonical.js';

export const validatorP = v.object({
  id: v.str({ min: 1, max: 64, pattern: /^[a-z0-9-]+$/ }),
  signKey: v.hex32,
});
export type Validator = v.Parsed<typeof validatorP>;

export const genesisP = v.object({
  chainId: v.str({ min: 1, max: 64 }),
  time: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  validators: v.array(validatorP, { min: 1, max: 64 }),
});
export type Genesis = v.Parsed<typeof genesisP>;

const hashes = new WeakMap<Genesis, string>();

/** The chain's name in its transactions and blocks; a genesis never changes once read, so it is kept. */
export function genesisHash(g: Genesis): string {
  let hash = hashes.get(g);
  if (hash === undefined) {
    hash = sha256Hex(canonical(g));
    hashes.set(g, hash);
  }
  return hash;
}

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}
