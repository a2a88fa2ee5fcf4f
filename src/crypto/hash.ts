import { createHash } from 'node:crypto';

export function sha256(...parts: (Uint8Array | string)[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function sha256Hex(...parts: (Uint8Array | string)[]): string {
  return sha256(...parts).toString('hex');
}

const LEAF = Buffer.from([0]);
const NODE = Buffer.from([1]);

/**
 * Binary Merkle root over leaf hashes (hex). Leaves and inner nodes are domain-separated
 * (0x00 / 0x01 prefixes, as RFC 6962) so a leaf can never pass for an inner node; an odd
 * node is promoted unchanged. The root of no leaves is the hash of the empty string.
 */
export function merkleRoot(leafHashes: readonly string[]): string {
  if (leafHashes.length === 0) return sha256Hex('');
  let level = leafHashes.map((h) => sha256(LEAF, Buffer.from(h, 'hex')));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      const right = level[i + 1];
      next.push(right ? sha256(NODE, level[i]!, right) : level[i]!);
    }
    level = next;
  }
  return level[0]!.toString('hex');
}
