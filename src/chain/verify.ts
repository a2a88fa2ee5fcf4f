/**
 * Verifies one replica from the genesis up: every block's hash, Merkle root and proposer
 * signature, the hash links, every commit certificate (a majority of validators signed exactly
 * this block), and that the stored state equals the state rebuilt from the blocks alone.
 */
import { blockProblems } from './block.js';
import type { ChainStore } from './chain-store.js';

export interface ReplicaReport {
  provider: string;
  ok: boolean;
  height: number;
  head: string;
  certified: number; // highest height covered by a certificate on the chain
  problems: { height: number; problem: string }[];
}

const MAX_PROBLEMS = 100;

/** Blocks checked between two yields to the event loop: an SP keeps its consensus going meanwhile. */
const BLOCKS_PER_TURN = 32;

/** Final history (up to the height applied when it starts): blocks past it may still change. */
export async function verifyReplica(provider: string, store: ChainStore): Promise<ReplicaReport> {
  const problems: ReplicaReport['problems'] = [];
  const report = (height: number, problem: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ height, problem });
  };
  const last = store.applied();
  let prevHash = store.genesisHash;
  let certified = 0;
  const hashes = new Map<number, string>();
  for (let h = 1; h <= last; h++) {
    const block = store.blockOnDisk(h);
    if (!block) {
      report(h, 'block is missing');
      break;
    }
    if (block.header.height !== h) report(h, `block says height ${block.header.height}`);
    if (block.header.prevHash !== prevHash) report(h, 'previous-hash link is broken');
    for (const p of blockProblems(block, store.genesis)) report(h, p);
    for (const cert of block.header.certs) {
      const certifiedHash = hashes.get(cert.height);
      if (certifiedHash !== undefined && certifiedHash !== cert.hash) {
        report(h, `certificate for height ${cert.height} endorses a different block than the one stored`);
      }
      certified = Math.max(certified, cert.height);
    }
    hashes.set(h, block.hash);
    prevHash = block.hash;
    if (h % BLOCKS_PER_TURN === 0) await new Promise((r) => setImmediate(r));
  }
  const digests = await store.stateDigests(BLOCKS_PER_TURN);
  const applied = store.applied();
  if (digests.stored !== digests.rebuilt) report(applied, 'stored state differs from the state rebuilt from blocks');
  const head = store.head();
  return { provider, ok: problems.length === 0, height: head.height, head: head.hash, certified, problems };
}
