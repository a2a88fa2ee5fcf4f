/**
 * The chain's state machine: the pure rules that turn final blocks into state (users, files,
 * shares, placements). Every SP applies the same blocks with these rules and gets the same
 * state; a transaction that breaks a rule is recorded as rejected and changes nothing.
 */
import { sealedLength } from '../codec/segment-seal.js';
import { sha256Hex, merkleRoot } from '../crypto/hash.js';
import type { SealedBox } from '../crypto/keys.js';
import type { Block } from './block.js';
import { genesisHash, type Genesis } from './genesis.js';
import { inlineSealed, txId, verifyTx, type FileRecord, type Tx, type TxBody } from './tx.js';

export interface UserRecord {
  username: string;
  signKey: string;
  boxKey: string;
  kdf: Extract<TxBody, { type: 'user.register' }>['kdf'];
  createdAt: number;
  height: number;
}

export interface StoredFile {
  record: FileRecord;
  shares: Record<string, SealedBox>; // username → file key sealed to that user
  height: number; // block that holds the file.put
  updatedAt: number; // block that last changed it
}

export interface TxResult {
  height: number;
  ok: boolean;
  error?: string;
}

/** State keys; a reader of the LMDB files can tell what each holds. */
export const keys = {
  user: (name: string) => `u/${name}`,
  file: (id: string) => `f/${id}`,
  owned: (owner: string, id: string) => `o/${owner}/${id}`,
  shared: (user: string, id: string) => `s/${user}/${id}`,
  /**
   * A transaction's outcome, under the transaction's own time: new outcomes land side by side on
   * the last pages of the state's B-tree, where keys by a random tx id put each on a page of its
   * own (measured on LMDB, a block of 11 inline file.puts: 61-75 -> 50-62 µs of CPU per
   * transaction, half the system time) and, once the tree outgrows memory, a disk read each.
   */
  txResult: (time: number, id: string) => `r/${time.toString(16).padStart(TIME_HEX, '0')}/${id}`,
  /** Where outcomes were kept before txResult: still read, so a transaction final before the change is never applied again. */
  legacyTxResult: (id: string) => `t/${id}`,
  /** Set by the first transaction that names its chain: from then on, one that names none is refused. */
  chainNamed: () => 'c/named',
};

/** Hex digits of a transaction time (a safe integer) in its outcome's key, so key order is time order. */
const TIME_HEX = 14;
const TX_RESULT_KEY = new RegExp(`^r/[0-9a-f]{${TIME_HEX}}/([0-9a-f]{64})$`);

export type StateValue = UserRecord | StoredFile | TxResult | 1;

export interface StateView {
  get(key: string): StateValue | undefined;
}

/** The state changes of one block, in order, with the outcome of each transaction. */
export interface BlockEffects {
  writes: Map<string, StateValue | null>; // null = delete
  results: Map<string, TxResult>;
}

class RuleError extends Error {}

function rule(condition: unknown, message: string): asserts condition {
  if (!condition) throw new RuleError(message);
}

/** Segment 0 holds up to firstSegmentSize bytes, every later one up to segmentSize. */
export function expectedSegments(size: number, segmentSize: number, firstSegmentSize = segmentSize): number {
  return size <= firstSegmentSize ? 1 : 1 + Math.ceil((size - firstSegmentSize) / segmentSize);
}

/** The root over every shard hash of a file, segment by segment; an inline file's is over its sealed bytes. */
export function fileRoot(file: { segments: FileRecord['segments']; inline?: Uint8Array | string | undefined }): string {
  const inline = inlineSealed(file);
  if (inline !== undefined) return merkleRoot([sha256Hex(inline)]);
  return merkleRoot(file.segments.flatMap((s) => s.shards.map((sh) => sh.hash)));
}

/** A transaction's outcome if it is final already, under either key. */
export function txOutcome(read: (key: string) => unknown, tx: Tx, id = txId(tx)): TxResult | undefined {
  return (read(keys.txResult(tx.time, id)) ?? read(keys.legacyTxResult(id))) as TxResult | undefined;
}

export function applyBlock(view: StateView, block: Block, genesis: Genesis): BlockEffects {
  const writes = new Map<string, StateValue | null>();
  const results = new Map<string, TxResult>();
  const read = (key: string): StateValue | undefined => {
    if (writes.has(key)) return writes.get(key) ?? undefined;
    return view.get(key);
  };
  const validators = new Map(genesis.validators.map((val) => [val.id, val.signKey]));
  const chain = genesisHash(genesis);
  for (const tx of block.txs) {
    const id = txId(tx);
    // A replayed transaction is applied once only; whoever waits for it learns the first outcome.
    const earlier = txOutcome(read, tx, id);
    if (earlier !== undefined) {
      results.set(id, earlier);
      continue;
    }
    const pending = new Map<string, StateValue | null>();
    let result: TxResult;
    try {
      applyTx(tx, read, (k, val) => pending.set(k, val), validators, chain, block.header.height, block.header.time);
      for (const [k, val] of pending) writes.set(k, val);
      result = { height: block.header.height, ok: true };
    } catch (err) {
      if (!(err instanceof RuleError)) throw err;
      result = { height: block.header.height, ok: false, error: err.message };
    }
    writes.set(keys.txResult(tx.time, id), result);
    results.set(id, result);
  }
  return { writes, results };
}

/**
 * The key a transaction must be signed with, as far as the state tells now: the one it registers,
 * its SP's, or its user's (undefined for a user not registered yet: the block decides).
 */
export function signerKey(tx: Tx, read: (key: string) => StateValue | undefined, genesis: Genesis): string | undefined {
  if (tx.body.type === 'user.register') return tx.body.signKey;
  if (tx.body.type === 'file.place') return genesis.validators.find((val) => val.id === tx.signer)?.signKey;
  return (read(keys.user(tx.signer)) as UserRecord | undefined)?.signKey;
}

function applyTx(
  tx: Tx,
  read: (key: string) => StateValue | undefined,
  write: (key: string, value: StateValue | null) => void,
  validators: Map<string, string>,
  chain: string,
  height: number,
  time: number,
): void {
  const body = tx.body;
  rule(tx.chain === undefined || tx.chain === chain, 'signed for another chain');
  // Transactions made before they named their chain still apply from the blocks that hold them,
  // but none is taken once this chain has taken one that names it: an old one read off another
  // cluster's chain could otherwise still be put in a block here.
  const named = read(keys.chainNamed()) !== undefined;
  rule(tx.chain !== undefined || !named, 'names no chain, and this chain has taken transactions that name it');
  if (tx.chain !== undefined && !named) write(keys.chainNamed(), 1);
  if (body.type === 'user.register') {
    rule(tx.signer === body.username, 'a user registers themselves only');
    rule(verifyTx(tx, body.signKey), 'signature does not match the registered key');
    rule(read(keys.user(body.username)) === undefined, `username ${body.username} is taken`);
    const user: UserRecord = {
      username: body.username,
      signKey: body.signKey,
      boxKey: body.boxKey,
      kdf: body.kdf,
      createdAt: time,
      height,
    };
    write(keys.user(body.username), user);
    return;
  }
  if (body.type === 'file.place') {
    const spKey = validators.get(tx.signer);
    rule(spKey !== undefined, `${tx.signer} is not a storage provider of this cluster`);
    rule(verifyTx(tx, spKey), 'signature does not match the provider key');
    const stored = read(keys.file(body.fileId)) as StoredFile | undefined;
    rule(stored !== undefined, 'unknown file');
    const segments = stored.record.segments.map((s) => ({ ...s, shards: s.shards.map((sh) => ({ ...sh })) }));
    for (const p of body.placements) {
      const shard = segments[p.segment]?.shards[p.shard];
      rule(shard !== undefined, `no shard ${p.shard} in segment ${p.segment}`);
      rule(validators.has(p.sp), `${p.sp} is not a storage provider of this cluster`);
      shard.sp = p.sp;
    }
    for (const seg of segments) {
      const sps = seg.shards.map((sh) => sh.sp).filter((sp) => sp !== null);
      rule(new Set(sps).size === sps.length, 'shards of one segment must stay on distinct providers');
    }
    write(keys.file(body.fileId), { ...stored, record: { ...stored.record, segments }, updatedAt: height });
    return;
  }

  const user = read(keys.user(tx.signer)) as UserRecord | undefined;
  rule(user !== undefined, `unknown user ${tx.signer}`);
  rule(verifyTx(tx, user.signKey), 'signature does not match the user key');

  if (body.type === 'file.put') {
    const f = body.file;
    rule(f.owner === tx.signer, 'a user stores files as themselves only');
    rule(read(keys.file(f.id)) === undefined, 'file id already exists');
    rule(f.k + f.m <= validators.size, `k+m = ${f.k + f.m} needs that many providers, the cluster has ${validators.size}`);
    rule((f.firstSegmentSize ?? f.segmentSize) <= f.segmentSize, 'the first segment is not longer than the others');
    if (f.inline !== undefined) {
      rule(f.segments.length === 0, 'an inline file has no segments');
      rule(inlineSealed(f)!.length === sealedLength(f.size), 'inline bytes do not match the size');
    } else {
      rule(f.segments.length === expectedSegments(f.size, f.segmentSize, f.firstSegmentSize), 'segment count does not match size');
    }
    for (const seg of f.segments) {
      rule(seg.shards.length === f.k + f.m, 'every segment has k+m shard slots');
      const sps = seg.shards.map((sh) => sh.sp).filter((sp): sp is string => sp !== null);
      rule(sps.length >= f.k, 'a segment needs at least k stored shards');
      rule(sps.every((sp) => validators.has(sp)), 'shards name unknown providers');
      rule(new Set(sps).size === sps.length, 'shards of one segment must be on distinct providers');
    }
    rule(fileRoot(f) === f.root, 'Merkle root over shard hashes does not match');
    write(keys.file(f.id), { record: f, shares: {}, height, updatedAt: height });
    write(keys.owned(f.owner, f.id), 1);
    return;
  }

  const stored = read(keys.file(body.fileId)) as StoredFile | undefined;
  rule(stored !== undefined, 'unknown file');
  rule(stored.record.owner === tx.signer, 'only the owner may do this');
  if (body.type === 'file.delete') {
    write(keys.file(body.fileId), null);
    write(keys.owned(stored.record.owner, body.fileId), null);
    for (const name of Object.keys(stored.shares)) write(keys.shared(name, body.fileId), null);
    return;
  }
  if (body.type === 'file.share') {
    rule(body.to !== stored.record.owner, 'the owner already has the file');
    rule(read(keys.user(body.to)) !== undefined, `unknown user ${body.to}`);
    write(keys.file(body.fileId), { ...stored, shares: { ...stored.shares, [body.to]: body.key }, updatedAt: height });
    write(keys.shared(body.to, body.fileId), 1);
    return;
  }
  const never: never = body;
  throw new Error(`unhandled transaction ${JSON.stringify(never)}`);
}

/** A replacer that sees the value before toJSON: a Buffer and a Uint8Array of the same bytes digest alike. */
function binaryAsHex(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Uint8Array ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('hex') : value;
}

/**
 * A digest of a whole state, to compare a stored state with one rebuilt from blocks. Outcomes
 * count under their legacy key, wherever they are kept: a replica that stored some before
 * txResult keys came holds the same state as one rebuilt with txResult keys alone.
 */
export function stateDigest(entries: Iterable<[string, unknown]>): string {
  const parts: [string, string][] = [];
  for (const [k, val] of entries) {
    const result = TX_RESULT_KEY.exec(k);
    parts.push([result ? keys.legacyTxResult(result[1]!) : k, JSON.stringify(val, binaryAsHex)]);
  }
  parts.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return sha256Hex(parts.map(([k, val]) => `${k}=${val}`).join('\n'));
}
