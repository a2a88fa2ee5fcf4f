/**
 * Blocks: hash-linked, Merkle-rooted batches of transactions, signed by their proposer.
 * A block may carry the commit certificate of an earlier block: the signatures of a majority of
 * validators over that block's hash, so anyone holding the genesis can check history was endorsed.
 */
import { invariant } from '../errors.js';
import { merkleRoot, sha256Hex } from '../crypto/hash.js';
import { verifySignature, type SigningKey } from '../crypto/keys.js';
import * as v from '../validate.js';
import { canonical } from './canonical.js';
import { majority, type Genesis } from './genesis.js';
import { inlineBytes, LIMITS, txLeafHash, txP, txWireBytes, type Tx } from './tx.js';

export const MAX_TXS_PER_BLOCK = 512;
/**
 * Inline file bytes one block may carry: keeps a block under ~0.6 MiB and a Raft append of
 * MAX_ENTRIES_PER_APPEND blocks well inside a mailbox frame.
 */
export const MAX_INLINE_BYTES_PER_BLOCK = 256 * 1024;
// Else a transaction at the per-file bound could never be proposed, and would wait forever.
invariant(LIMITS.maxInlineBytes <= MAX_INLINE_BYTES_PER_BLOCK, 'one inline file fits in a block');
/**
 * What a proposer puts in one block, in wire bytes (blockWireBytes): records of large files are
 * big (~0.7 MiB for 10 GiB in 4 MiB segments), and a block, like a Raft append of several, must fit
 * a mailbox frame. A single transaction above it still gets a block of its own, so none is stuck.
 */
export const MAX_BLOCK_BYTES = 4 * 1024 * 1024;
const BLOCK_WIRE_OVERHEAD = 256;

const endorsementP = v.object({ sp: v.str({ min: 1, max: 64 }), sig: v.str({ min: 128, max: 128, pattern: /^[0-9a-f]+$/ }) });
export const certificateP = v.object({
  height: v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  hash: v.hex32,
  sigs: v.array(endorsementP, { min: 1, max: 64 }),
});
export type Certificate = v.Parsed<typeof certificateP>;

export const headerP = v.object({
  height: v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  prevHash: v.hex32,
  time: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  txRoot: v.hex32,
  proposer: v.str({ min: 1, max: 64 }),
  term: v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  certs: v.array(certificateP, { max: 64 }),
});
export type BlockHeader = v.Parsed<typeof headerP>;

export const blockP = v.object({
  header: headerP,
  txs: v.array(txP, { max: MAX_TXS_PER_BLOCK }),
  hash: v.hex32,
  sig: v.str({ min: 128, max: 128, pattern: /^[0-9a-f]+$/ }),
});
export type Block = v.Parsed<typeof blockP>;

/**
 * Takes from the front of `pending` what the next block can carry: within the count, the
 * inline-bytes and the wire-bytes bounds (the last one yields to a lone transaction).
 */
export function takeBlockTxs(pending: Tx[]): Tx[] {
  let count = 0;
  let inline = 0;
  let bytes = 0;
  for (const tx of pending) {
    if (count === MAX_TXS_PER_BLOCK || inline + inlineBytes(tx) > MAX_INLINE_BYTES_PER_BLOCK) break;
    if (count > 0 && bytes + txWireBytes(tx) > MAX_BLOCK_BYTES) break;
    inline += inlineBytes(tx);
    bytes += txWireBytes(tx);
    count += 1;
  }
  return pending.splice(0, count);
}

const wireBytes = new WeakMap<Block, number>();

/** A block's size in a message, never undercounted (see txWireBytes); blocks never change, so it is kept. */
export function blockWireBytes(block: Block): number {
  let bytes = wireBytes.get(block);
  if (bytes === undefined) {
    bytes = JSON.stringify(block.header).length + block.txs.reduce((n, tx) => n + txWireBytes(tx), 0) + BLOCK_WIRE_OVERHEAD;
    wireBytes.set(block, bytes);
  }
  return bytes;
}

export function headerHash(h: BlockHeader): string {
  return sha256Hex(canonical(h));
}

/** Leaves commit to whole transactions, signatures included, so no byte of a block can change unseen. */
export function txRoot(txs: readonly Tx[]): string {
  return merkleRoot(txs.map(txLeafHash));
}

export function makeBlock(
  fields: Omit<BlockHeader, 'txRoot'>,
  txs: Tx[],
  key: SigningKey,
): Block {
  const header: BlockHeader = { ...fields, txRoot: txRoot(txs) };
  const hash = headerHash(header);
  return { header, txs, hash, sig: key.sign(Buffer.from(hash, 'hex')) };
}

/** What an endorsing validator signs: domain-separated so it can never pass for a proposal signature. */
export function endorsementMessage(hash: string): Buffer {
  return Buffer.concat([Buffer.from('cairn-endorse-v1:'), Buffer.from(hash, 'hex')]);
}

/** Says whether a replica already verified (or made) this endorsement, so it need not again. */
export type KnownEndorsement = (cert: Certificate, e: Certificate['sigs'][number]) => boolean;

/**
 * Checks everything about a block that does not depend on chain state: its hash, its Merkle
 * root, its proposer's signature and the certificates it carries. Returns the problems found.
 */
export function blockProblems(block: Block, genesis: Genesis, known: KnownEndorsement = () => false): string[] {
  const problems: string[] = [];
  const keys = new Map(genesis.validators.map((val) => [val.id, val.signKey]));
  if (headerHash(block.header) !== block.hash) problems.push('header hash does not match');
  if (txRoot(block.txs) !== block.header.txRoot) problems.push('transaction Merkle root does not match');
  const inline = block.txs.reduce((sum, tx) => sum + inlineBytes(tx), 0);
  if (inline > MAX_INLINE_BYTES_PER_BLOCK) problems.push(`carries ${inline} inline file bytes, more than ${MAX_INLINE_BYTES_PER_BLOCK}`);
  const proposerKey = keys.get(block.header.proposer);
  if (!proposerKey) problems.push(`proposer ${block.header.proposer} is not a validator`);
  else if (!verifySignature(proposerKey, Buffer.from(block.hash, 'hex'), block.sig)) {
    problems.push('proposer signature does not verify');
  }
  for (const cert of block.header.certs) {
    if (cert.height >= block.header.height) problems.push(`certificate for height ${cert.height} is not for an earlier block`);
    // Cheap checks first: a certificate names each SP once, so it never costs more verifications
    // than there are SPs (the wire allows 64 signatures a certificate).
    const named = new Set(cert.sigs.map((e) => e.sp));
    if (named.size !== cert.sigs.length || cert.sigs.length > genesis.validators.length) {
      problems.push(`certificate for height ${cert.height} names an SP twice or more SPs than there are`);
      continue;
    }
    const signers = new Set<string>();
    for (const e of cert.sigs) {
      const key = keys.get(e.sp);
      if (key && !signers.has(e.sp) && (known(cert, e) || verifySignature(key, endorsementMessage(cert.hash), e.sig))) signers.add(e.sp);
    }
    if (signers.size < majority(genesis.validators.length)) {
      problems.push(`certificate for height ${cert.height} has ${signers.size} valid signatures, needs ${majority(genesis.validators.length)}`);
    }
  }
  return problems;
}
