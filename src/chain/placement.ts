/**
 * Rendezvous (highest-random-weight) hashing: each (segment, SP) pair gets a score and a
 * segment's shards go to the best-scoring SPs that are up. Adding or removing an SP moves only
 * the shards whose best SPs changed.
 */
import { createHash } from 'node:crypto';

export function rendezvousOrder(seed: string, providers: readonly string[]): string[] {
  const scored = providers.map((id) => ({ id, score: createHash('sha256').update(seed).update('\0').update(id).digest().readBigUInt64BE(0) }));
  scored.sort((a, b) => (a.score === b.score ? (a.id < b.id ? -1 : 1) : a.score > b.score ? -1 : 1));
  return scored.map((s) => s.id);
}
