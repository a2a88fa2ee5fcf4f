/**
 * Transactions: what users (and, for placement changes, SPs) ask the chain to record.
 * Every transaction is signed; its id is the hash of its signed content.
 */
import { TAG_BYTES } from '../codec/segment-seal.js';
import { sha256Hex } from '../crypto/hash.js';
import { verifySignature, type SigningKey } from '../crypto/keys.js';
import { SHARD_HASH_ALGS } from '../crypto/shard-hash.js';
import { KDF_LIMITS, KDF_N_CHOICES } from '../crypto/password.js';
import { randomBytesPooled } from '../crypto/random.js';
import { invariant } from '../errors.js';
import * as v from '../validate.js';
import { canonical } from './canonical.js';

export const LIMITS = {
  maxSegments: 100_000,
  maxShardsPerSegment: 32,
  maxSharesPerTx: 1,
  maxPlacementsPerTx: 4096,
  /**
   * Sealed bytes a small file may carry inside its record instead of as shards (Storj's inline
   * segments, MinIO's inline data): every replica then holds them, and the file costs no shard
   * puts, fsyncs or fetches. 64 KiB bounds what one transaction can add to a block.
   */
  maxInlineBytes: 64 * 1024,
} as const;

export const USERNAME = /^[a-z0-9][a-z0-9_.-]{2,31}$/;
const usernameP = v.str({ min: 3, max: 32, pattern: USERNAME });
const fileIdP = v.str({ min: 32, max: 32, pattern: /^[0-9a-f]{32}$/ });
const spIdP = v.str({ min: 1, max: 64, pattern: /^[a-z0-9-]+$/ });
const hexP = (max: number) => v.str({ min: 0, max, pattern: /^[0-9a-f]*$/ });

const inlineBinaryP = v.bytes({ min: TAG_BYTES, max: LIMITS.maxInlineBytes });
const inlineHexP = v.str({ min: 2 * TAG_BYTES, max: 2 * LIMITS.maxInlineBytes, pattern: /^(?:[0-9a-f]{2})*$/ });
/**
 * A small file's sealed bytes: binary, or hex as records made before they went binary hold them.
 * Hex is still read (its signatures and roots were made over the hex, and canonical encoding keeps
 * a string a string, so they still verify) but never written: read it through `inlineSealed`.
 */
const inlineP: v.Parser<Uint8Array | string> = (value, path = '') => (typeof value === 'string' ? inlineHexP(value, path) : inlineBinaryP(value, path));

export const sealedBoxP = v.object({ epk: v.hex32, nonce: v.str({ min: 24, max: 24, pattern: /^[0-9a-f]{24}$/ }), ct: hexP(256) });

/** Exactly what any client accepts at sign-in (KDF_LIMITS), so no account can make one costly. */
export const kdfP = v.object({
  alg: v.literal('scrypt'),
  N: v.literal(...KDF_N_CHOICES),
  r: v.int({ min: KDF_LIMITS.r, max: KDF_LIMITS.r }),
  p: v.int({ min: 1, max: KDF_LIMITS.maxP }),
  salt: v.str({ min: 32, max: 64, pattern: /^[0-9a-f]+$/ }),
});

const shardRefP = v.object({ hash: v.hex32, sp: v.nullable(spIdP) });
export const segmentRefP = v.object({
  sealedLength: v.int({ min: 16, max: 1 << 30 }),
  // One shard is a cluster of k 1, m 0: one copy, kept by one SP (a single-SP cluster).
  shards: v.array(shardRefP, { min: 1, max: LIMITS.maxShardsPerSegment }),
});

export const fileRecordP = v.object({
  id: fileIdP,
  owner: usernameP,
  size: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  createdAt: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  k: v.int({ min: 1, max: 16 }),
  m: v.int({ min: 0, max: 16 }),
  segmentSize: v.int({ min: 4096, max: 256 * 1024 * 1024 }),
  /** Plaintext bytes of segment 0 when it is cut shorter than the rest (absent: segmentSize). */
  firstSegmentSize: v.optional(v.int({ min: 4096, max: 256 * 1024 * 1024 })),
  meta: hexP(8192), // name and type, sealed with the file key
  ownerKey: sealedBoxP, // the file key, sealed to the owner
  /**
   * Absent for a file stored as shards; present, its single sealed segment is here (binary: no
   * hex to check and stringify on every replica) and `segments` is empty.
   */
  inline: v.optional(inlineP),
  segments: v.array(segmentRefP, { min: 0, max: LIMITS.maxSegments }),
  /** The hash of every shard in `segments` (src/crypto/shard-hash.ts); absent: SHA-256. */
  hashAlg: v.optional(v.literal(...SHARD_HASH_ALGS)),
  root: v.hex32,
});
export type FileRecord = v.Parsed<typeof fileRecordP>;
export type SegmentRef = v.Parsed<typeof segmentRefP>;

const registerP = v.object({
  type: v.literal('user.register'),
  username: usernameP,
  signKey: v.hex32,
  boxKey: v.hex32,
  kdf: kdfP,
});
const putP = v.object({ type: v.literal('file.put'), file: fileRecordP });
const deleteP = v.object({ type: v.literal('file.delete'), fileId: fileIdP });
const shareP = v.object({ type: v.literal('file.share'), fileId: fileIdP, to: usernameP, key: sealedBoxP });
const placeP = v.object({
  type: v.literal('file.place'),
  fileId: fileIdP,
  placements: v.array(
    v.object({ segment: v.int({ min: 0, max: LIMITS.maxSegments }), shard: v.int({ min: 0, max: 64 }), sp: spIdP }),
    { min: 1, max: LIMITS.maxPlacementsPerTx },
  ),
});

export type TxBody =
  | v.Parsed<typeof registerP>
  | v.Parsed<typeof putP>
  | v.Parsed<typeof deleteP>
  | v.Parsed<typeof shareP>
  | v.Parsed<typeof placeP>;

const bodyP: v.Parser<TxBody> = v.oneOf<TxBody>('type', {
  'user.register': registerP,
  'file.put': putP,
  'file.delete': deleteP,
  'file.share': shareP,
  'file.place': placeP,
});

export const txP = v.object({
  body: bodyP,
  signer: v.str({ min: 1, max: 64 }), // a username, or an SP id for file.place
  /**
   * The chain it is signed for (its genesis hash), so it cannot be replayed on another cluster.
   * Absent only in transactions made before it was signed in: blocks holding them still apply,
   * and a leader takes no new one without it.
   */
  chain: v.optional(v.hex32),
  nonce: v.str({ min: 32, max: 32, pattern: /^[0-9a-f]{32}$/ }),
  time: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  sig: v.str({ min: 128, max: 128, pattern: /^[0-9a-f]{128}$/ }),
});
export type Tx = v.Parsed<typeof txP>;

/**
 * A replica needs a transaction's signed bytes several times (its id on submit, at apply, for
 * the signature check), and canonical encoding is not free; a transaction is never changed once
 * made or received, so its bytes are kept with it.
 */
const signedBytes = new WeakMap<object, Buffer>();

function signedContent(tx: Omit<Tx, 'sig'>): Buffer {
  let bytes = signedBytes.get(tx);
  if (!bytes) {
    // Canonical encoding leaves out an absent chain: older transactions keep their signed bytes.
    bytes = canonical({ body: tx.body, chain: tx.chain, signer: tx.signer, nonce: tx.nonce, time: tx.time });
    signedBytes.set(tx, bytes);
  }
  return bytes;
}

/** An inline file's sealed bytes, whichever form its record holds them in; undefined for a sharded file. */
export function inlineSealed(file: { inline?: Uint8Array | string | undefined }): Buffer | undefined {
  const { inline } = file;
  if (inline === undefined) return undefined;
  return typeof inline === 'string' ? Buffer.from(inline, 'hex') : Buffer.from(inline.buffer, inline.byteOffset, inline.byteLength);
}

/** Sealed bytes a transaction carries inline (0 for all but an inline file.put). */
export function inlineBytes(tx: Tx): number {
  if (tx.body.type !== 'file.put' || tx.body.file.inline === undefined) return 0;
  const { inline } = tx.body.file;
  return typeof inline === 'string' ? inline.length / 2 : inline.length;
}

/** Room for what a transaction's wire form has beyond its signed content: the signature and its key. */
const TX_WIRE_OVERHEAD = 256;

/**
 * A transaction's size in a message, never undercounted: its canonical JSON (which a replica keeps
 * anyway; msgpack is no longer for these shapes), the inline bytes it stands in for by their hash,
 * and the signature.
 */
export function txWireBytes(tx: Tx): number {
  return signedContent(tx).length + inlineBytes(tx) + TX_WIRE_OVERHEAD;
}

export function txId(tx: Tx): string {
  return sha256Hex(signedContent(tx));
}

const leafHashes = new WeakMap<object, string>();

/**
 * The hash of a whole transaction, signature included: its leaf in a block's Merkle root. It is
 * the hash of the transaction's canonical encoding, made here from the signed bytes a replica
 * keeps anyway: canonical keys are sorted (body, nonce, sig, signer, time), so the whole encoding
 * is the signed one with `"sig":…,` put in front of `"signer":`. That spares every replica a second
 * canonical encoding of each transaction (the signed content's hash of inline bytes included).
 */
export function txLeafHash(tx: Tx): string {
  let hash = leafHashes.get(tx);
  if (hash === undefined) {
    const signed = signedContent(tx);
    const tail = Buffer.from(`,"signer":${JSON.stringify(tx.signer)},"time":${tx.time}}`);
    const at = signed.length - tail.length;
    invariant(at > 0 && signed.subarray(at).equals(tail), 'signed content ends with the signer and the time');
    hash = sha256Hex(signed.subarray(0, at), `,"sig":${JSON.stringify(tx.sig)}`, tail);
    leafHashes.set(tx, hash);
  }
  return hash;
}

/** Signs `body` as `signer` for the chain whose genesis hash is `chain`. */
export function signTx(body: TxBody, signer: string, key: SigningKey, chain: string, now = Date.now()): Tx {
  invariant(/^[0-9a-f]{64}$/.test(chain), 'a transaction is signed for a chain named by its genesis hash');
  const unsigned = { body, signer, chain, nonce: randomBytesPooled(16).toString('hex'), time: now };
  return { ...unsigned, sig: key.sign(signedContent(unsigned)) };
}

/**
 * The key and signature each transaction object was verified with. A leader checks a transaction
 * when it is submitted and again when its block is applied (the rules need the state's key then),
 * on the same object; the second check of the same key and signature is answered from here (an
 * Ed25519 verification costs ~60 µs here: a fifth of a leader's CPU at 64 concurrent small uploads).
 */
const verifiedWith = new WeakMap<object, string>();

export function verifyTx(tx: Tx, publicKeyHex: string): boolean {
  const checked = `${publicKeyHex}:${tx.sig}`;
  if (verifiedWith.get(tx) === checked) return true;
  const ok = verifySignature(publicKeyHex, signedContent(tx), tx.sig);
  if (ok) verifiedWith.set(tx, checked);
  return ok;
}
