/**
 * Ed25519 with libsodium (signing; verification first, see verifySignature) and X25519 sealing
 * with node:crypto. Keys travel as raw 32-byte values (hex on the chain); these helpers wrap them
 * in the forms each library wants.
 */
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  verify,
  createCipheriv,
  createDecipheriv,
  type KeyObject,
} from 'node:crypto';
import {
  crypto_scalarmult,
  crypto_sign_detached,
  crypto_sign_ed25519_pk_to_curve25519,
  crypto_sign_ed25519_sk_to_curve25519,
  crypto_sign_seed_keypair,
  crypto_sign_verify_detached,
} from 'sodium-native';
import { CairnError, invariant } from '../errors.js';
import { randomBytesPooled } from './random.js';

const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

type Curve = 'ed25519' | 'x25519';

function checkSeed(curve: Curve, seed: Uint8Array): void {
  if (seed.length !== 32) throw new CairnError('BAD_REQUEST', `${curve} seed must be 32 bytes`);
}

function x25519FromSeed(seed: Uint8Array): KeyObject {
  checkSeed('x25519', seed);
  return createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

const JWK_CURVE = { ed25519: 'Ed25519', x25519: 'X25519' } as const;

// Public keys go through JWK, not DER: OpenSSL 3 parses and writes a DER key in ~190 / ~110 µs,
// a JWK in ~9 / ~2 µs (measured here), and an upload or download handles one or two of them.
function publicFromRaw(curve: Curve, raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new CairnError('BAD_REQUEST', `${curve} public key must be 32 bytes`);
  return createPublicKey({ key: { kty: 'OKP', crv: JWK_CURVE[curve], x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
}

function rawPublic(key: KeyObject): Buffer {
  const x = key.export({ format: 'jwk' }).x;
  invariant(typeof x === 'string', 'an OKP public key exports its x coordinate');
  const raw = Buffer.from(x, 'base64url');
  invariant(raw.length === 32, 'an OKP public key is 32 bytes');
  return raw;
}

export interface SigningKey {
  readonly publicKey: string; // hex
  sign(message: Uint8Array): string; // hex signature
  /**
   * The X25519 agreement of this key with another Ed25519 public key (both mapped to their
   * Montgomery form, as libsodium does for signing keys used to agree): the same bytes on either
   * side, computable only by the holders of the two secret keys.
   */
  agree(peerPublicHex: string): Buffer;
}

/**
 * Signing goes to libsodium: 18 µs a signature against OpenSSL's 36 µs here, and every upload,
 * block and endorsement carries one. Ed25519 signatures are deterministic (RFC 8032), so both
 * libraries make the same bytes from the same seed and message.
 */
export function signingKeyFromSeed(seed: Uint8Array): SigningKey {
  checkSeed('ed25519', seed);
  const publicKey = Buffer.alloc(32);
  const secretKey = Buffer.alloc(64);
  crypto_sign_seed_keypair(publicKey, secretKey, seed);
  const curveSecret = Buffer.alloc(32);
  crypto_sign_ed25519_sk_to_curve25519(curveSecret, secretKey);
  return {
    publicKey: publicKey.toString('hex'),
    sign: (message) => {
      const signature = Buffer.allocUnsafe(64);
      crypto_sign_detached(signature, message, secretKey);
      return signature.toString('hex');
    },
    agree: (peerPublicHex) => {
      const peer = Buffer.from(peerPublicHex, 'hex');
      if (peer.length !== 32) throw new CairnError('BAD_REQUEST', 'an Ed25519 public key is 32 bytes');
      const curvePeer = Buffer.alloc(32);
      const shared = Buffer.alloc(32);
      try {
        crypto_sign_ed25519_pk_to_curve25519(curvePeer, peer);
        crypto_scalarmult(shared, curveSecret, curvePeer); // refuses a small-order point (an all-zero result)
      } catch {
        throw new CairnError('BAD_REQUEST', 'that public key admits no key agreement');
      }
      return shared;
    },
  };
}

export function newSigningSeed(): Buffer {
  return randomBytes(32);
}

/**
 * Verification keys are few (validators and users) and used again and again; turning hex into a
 * KeyObject costs more than the verification itself, so recent ones are kept (bounded).
 */
const verifyKeys = new Map<string, KeyObject>();
const MAX_CACHED_KEYS = 4096;

function verifyKey(publicKeyHex: string): KeyObject {
  let key = verifyKeys.get(publicKeyHex);
  if (!key) {
    key = publicFromRaw('ed25519', Buffer.from(publicKeyHex, 'hex'));
    if (verifyKeys.size >= MAX_CACHED_KEYS) verifyKeys.delete(verifyKeys.keys().next().value!);
    verifyKeys.set(publicKeyHex, key);
  }
  return key;
}

/**
 * Every replica verifies every transaction's signature and the consensus signatures of every
 * block: about a third of an SP's CPU with OpenSSL (105 µs a verification here), half that with
 * libsodium (50 µs). libsodium is the stricter of the two (canonical encodings, no small-order
 * points) and checks the same equation, so what it accepts OpenSSL accepts; what it refuses is
 * put to OpenSSL, whose verdict stands. Every replica, of this build or an earlier one, so reaches
 * the same verdict on every block.
 */
export function verifySignature(publicKeyHex: string, message: Uint8Array, signatureHex: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(publicKeyHex) || !/^[0-9a-f]{128}$/.test(signatureHex)) return false;
  const signature = Buffer.from(signatureHex, 'hex');
  if (crypto_sign_verify_detached(signature, message, Buffer.from(publicKeyHex, 'hex'))) return true;
  try {
    return verify(null, message, verifyKey(publicKeyHex), signature);
  } catch {
    return false;
  }
}

export interface BoxKey {
  readonly publicKey: string; // hex
  readonly privateKey: KeyObject;
}

export function boxKeyFromSeed(seed: Uint8Array): BoxKey {
  const privateKey = x25519FromSeed(seed);
  return { publicKey: rawPublic(createPublicKey(privateKey)).toString('hex'), privateKey };
}

/** A secret sealed to a box public key: ephemeral X25519 + HKDF-SHA256 + AES-256-GCM. */
export interface SealedBox {
  epk: string; // hex ephemeral public key
  nonce: string; // hex, 12 bytes
  ct: string; // hex ciphertext || tag
}

const SEAL_INFO = Buffer.from('cairn-seal-v1');

function sealKey(shared: Buffer, epk: Buffer, recipient: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([epk, recipient]), SEAL_INFO, 32));
}

function seal(key: Buffer, epk: Buffer, secret: Uint8Array, context: string): SealedBox {
  const nonce = randomBytesPooled(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(context));
  const ct = Buffer.concat([cipher.update(secret), cipher.final(), cipher.getAuthTag()]);
  return { epk: epk.toString('hex'), nonce: nonce.toString('hex'), ct: ct.toString('hex') };
}

export function sealTo(recipientPublicHex: string, secret: Uint8Array, context: string): SealedBox {
  const recipient = Buffer.from(recipientPublicHex, 'hex');
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const epk = rawPublic(publicKey);
  return seal(sealKey(diffieHellman({ privateKey, publicKey: publicFromRaw('x25519', recipient) }), epk, recipient), epk, secret, context);
}

/**
 * The key of boxes an account seals to itself: the account's own public key stands in for the
 * ephemeral one, so the agreement X25519(a, A) is the same for every box, computed once per key
 * and kept. Only the holder of `a` can compute it, and openSealed opens these boxes unchanged.
 */
const selfSealKeys = new WeakMap<BoxKey, Buffer>();

function selfSealKey(box: BoxKey): Buffer {
  let key = selfSealKeys.get(box);
  if (!key) {
    const own = Buffer.from(box.publicKey, 'hex');
    key = sealKey(diffieHellman({ privateKey: box.privateKey, publicKey: publicFromRaw('x25519', own) }), own, own);
    selfSealKeys.set(box, key);
  }
  return key;
}

/**
 * Seals a secret (a file key) to the account that holds `box`, without the fresh X25519 key pair
 * and agreement sealTo needs (~0.45 ms, a fifth of the web client's CPU for a 4 KiB upload).
 * Every such box shares one AES key with a random 96-bit nonce each: safe for 2^32 boxes per account.
 */
export function sealToSelf(box: BoxKey, secret: Uint8Array, context: string): SealedBox {
  return seal(selfSealKey(box), Buffer.from(box.publicKey, 'hex'), secret, context);
}

export function openSealed(box: BoxKey, sealed: SealedBox, context: string): Buffer {
  try {
    const epk = Buffer.from(sealed.epk, 'hex');
    const recipient = Buffer.from(box.publicKey, 'hex');
    const key =
      sealed.epk === box.publicKey
        ? selfSealKey(box)
        : sealKey(diffieHellman({ privateKey: box.privateKey, publicKey: publicFromRaw('x25519', epk) }), epk, recipient);
    const ct = Buffer.from(sealed.ct, 'hex');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.nonce, 'hex'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(ct.subarray(ct.length - 16));
    return Buffer.concat([decipher.update(ct.subarray(0, ct.length - 16)), decipher.final()]);
  } catch (err) {
    throw new CairnError('INTEGRITY', 'a sealed key could not be opened with this account\'s key', { cause: err });
  }
}

/** Symmetric AEAD for small values (file name and type in a record), with the file key. */
export function sealSmall(key: Uint8Array, plaintext: Uint8Array, context: string): string {
  const nonce = randomBytesPooled(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(context));
  return Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]).toString('hex');
}

export function openSmall(key: Uint8Array, sealedHex: string, context: string): Buffer {
  const b = Buffer.from(sealedHex, 'hex');
  if (b.length < 28) throw new CairnError('INTEGRITY', 'sealed value is too short');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, b.subarray(0, 12));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(b.subarray(b.length - 16));
    return Buffer.concat([decipher.update(b.subarray(12, b.length - 16)), decipher.final()]);
  } catch (err) {
    throw new CairnError('INTEGRITY', 'sealed value failed authentication', { cause: err });
  }
}
