import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';
import { crypto_sign_verify_detached } from 'sodium-native';
import { boxKeyFromSeed, openSealed, sealTo, sealToSelf, signingKeyFromSeed, verifySignature, type SealedBox } from '../src/crypto/keys.js';
import { deriveAccountKeys, newKdfParams } from '../src/crypto/password.js';
import { randomBytesPooled } from '../src/crypto/random.js';
import { kdfP } from '../src/chain/tx.js';
import { isCairnError } from '../src/errors.js';

const alice = boxKeyFromSeed(randomBytes(32));
const bob = boxKeyFromSeed(randomBytes(32));

function refused(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return isCairnError(err, 'INTEGRITY');
  }
}

test('keys: a box sealed to an account opens with its key only, in its context only', () => {
  const secret = randomBytes(32);
  for (const [label, box] of [
    ['sealTo', sealTo(alice.publicKey, secret, 'file/1')],
    ['sealToSelf', sealToSelf(alice, secret, 'file/1')],
  ] as const) {
    assert.ok(openSealed(alice, box, 'file/1').equals(secret), `${label}: opens`);
    assert.ok(refused(() => openSealed(bob, box, 'file/1')), `${label}: another account cannot open it`);
    assert.ok(refused(() => openSealed(alice, box, 'file/2')), `${label}: bound to its context`);
    const flipped: SealedBox = { ...box, ct: (box.ct[0] === '0' ? '1' : '0') + box.ct.slice(1) };
    assert.ok(refused(() => openSealed(alice, flipped, 'file/1')), `${label}: tampering is found`);
  }
});

test('keys: boxes sealed to oneself need no fresh key pair, yet never repeat a nonce and open in a new session', () => {
  const seed = randomBytes(32);
  const session1 = boxKeyFromSeed(seed);
  const boxes = Array.from({ length: 50 }, (_, i) => sealToSelf(session1, Buffer.alloc(32, i), `file/${i}`));
  assert.ok(boxes.every((b) => b.epk === session1.publicKey), 'the account key stands in for the ephemeral key');
  assert.equal(new Set(boxes.map((b) => b.nonce)).size, boxes.length, 'every box has its own nonce');
  const session2 = boxKeyFromSeed(seed);
  boxes.forEach((b, i) => assert.ok(openSealed(session2, b, `file/${i}`).equals(Buffer.alloc(32, i))));
  // Bob sealing to himself uses a different key: Alice's boxes stay closed to him even with her epk.
  const bobSelf = sealToSelf(bob, Buffer.alloc(32, 9), 'file/0');
  assert.ok(refused(() => openSealed(session2, bobSelf, 'file/0')));
  assert.ok(refused(() => openSealed(bob, { ...boxes[0]!, epk: bob.publicKey }, 'file/0')));
});

/** OpenSSL's verdict, what every replica of every earlier build reached. */
function opensslVerdict(publicKeyHex: string, message: Uint8Array, signatureHex: string): boolean {
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKeyHex, 'hex').toString('base64url') }, format: 'jwk' });
  return verify(null, message, key, Buffer.from(signatureHex, 'hex'));
}

test('keys: a seed signs as it did with OpenSSL: the same public key and the same signature bytes', () => {
  // Keys and signatures made by earlier builds (OpenSSL) must stay what libsodium makes now:
  // accounts derive their signing key from a password, validators from a stored seed.
  for (let i = 0; i < 20; i++) {
    const seed = randomBytes(32);
    const openssl = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
    const raw = Buffer.from(createPublicKey(openssl).export({ format: 'jwk' }).x!, 'base64url').toString('hex');
    const key = signingKeyFromSeed(seed);
    assert.equal(key.publicKey, raw);
    const message = randomBytes(1 + i * 37);
    assert.equal(key.sign(message), sign(null, message, openssl).toString('hex'));
  }
  assert.throws(() => signingKeyFromSeed(randomBytes(31)), /seed must be 32 bytes/);
});

test('keys: signatures get the verdict OpenSSL gives, including where libsodium is stricter', () => {
  const signer = signingKeyFromSeed(randomBytes(32));
  const message = Buffer.from('file.put 42');
  const sig = signer.sign(message);
  assert.equal(verifySignature(signer.publicKey, message, sig), true);
  assert.equal(verifySignature(signer.publicKey, Buffer.from('file.put 43'), sig), false, 'another message');
  assert.equal(verifySignature(signingKeyFromSeed(randomBytes(32)).publicKey, message, sig), false, 'another key');
  const flipped = (sig[0] === '0' ? '1' : '0') + sig.slice(1);
  assert.equal(verifySignature(signer.publicKey, message, flipped), false, 'a changed signature');
  // s + L: the same signature with a non-canonical scalar; both libraries refuse it.
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  const s = BigInt('0x' + Buffer.from(sig.slice(64), 'hex').reverse().toString('hex'));
  const sPlusL = Buffer.from((s + L).toString(16).padStart(64, '0'), 'hex').reverse().toString('hex');
  assert.equal(verifySignature(signer.publicKey, message, sig.slice(0, 64) + sPlusL), false, 'a non-canonical scalar');
  assert.equal(verifySignature('zz', message, sig), false, 'a malformed key');
  // The identity point as key and as R, with s = 0, satisfies the cofactorless equation for any
  // message: OpenSSL accepts it, libsodium refuses small-order points. Replicas must agree with
  // the blocks earlier builds accepted, so OpenSSL decides whatever libsodium refuses.
  const identity = '01' + '00'.repeat(31);
  const degenerate = identity + '00'.repeat(32);
  assert.equal(crypto_sign_verify_detached(Buffer.from(degenerate, 'hex'), message, Buffer.from(identity, 'hex')), false);
  assert.equal(opensslVerdict(identity, message, degenerate), true);
  assert.equal(verifySignature(identity, message, degenerate), true);
  for (let i = 0; i < 20; i++) {
    const m = randomBytes(1 + i * 13);
    const k = signingKeyFromSeed(randomBytes(32));
    const good = k.sign(m);
    assert.equal(verifySignature(k.publicKey, m, good), opensslVerdict(k.publicKey, m, good));
    const bad = good.slice(0, 126) + (good.slice(126) === 'ff' ? '00' : 'ff');
    assert.equal(verifySignature(k.publicKey, m, bad), opensslVerdict(k.publicKey, m, bad));
  }
});

test('keys: pooled random bytes are fresh every time, across refills, and handed out whole', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const b = randomBytesPooled(1 + (i % 48)); // 49 KiB in all: the 4 KiB pool refills a dozen times
    assert.equal(b.length, 1 + (i % 48));
    if (b.length >= 16) {
      assert.ok(!seen.has(b.toString('hex')), `draw ${i} repeats an earlier one`);
      assert.ok(b.some((x) => x !== 0), `draw ${i} is all zeros (wiped before it was copied?)`);
      seen.add(b.toString('hex'));
    }
  }
  const a = randomBytesPooled(16);
  const kept = Buffer.from(a);
  randomBytesPooled(16);
  assert.ok(a.equals(kept), 'a buffer handed out is its own: later draws do not change it');
  assert.equal(randomBytesPooled(0).length, 0);
  assert.equal(randomBytesPooled(4096).length, 4096, 'large requests go straight to node:crypto');
  assert.throws(() => randomBytesPooled(-1), /byte count/);
});

test('password keys: only scrypt settings within the limits are used, whoever stored them; the chain refuses others', async () => {
  const salt = '00'.repeat(16);
  const keys = await deriveAccountKeys('a password', { alg: 'scrypt', N: 1 << 14, r: 8, p: 1, salt });
  assert.equal((await deriveAccountKeys('a password', { alg: 'scrypt', N: 1 << 14, r: 8, p: 1, salt })).signing.publicKey, keys.signing.publicKey);
  // Each would cost a sign-in seconds to hours and up to gigabytes: refused before any work.
  for (const bad of [{ N: 1 << 20, r: 8, p: 1 }, { N: 1 << 15, r: 32, p: 1 }, { N: 1 << 15, r: 8, p: 16384 }, { N: 3 << 14, r: 8, p: 1 }, { N: 1 << 10, r: 8, p: 1 }]) {
    await assert.rejects(deriveAccountKeys('a password', { alg: 'scrypt', ...bad, salt }), (err: unknown) => isCairnError(err, 'INTEGRITY'), JSON.stringify(bad));
    assert.throws(() => kdfP({ alg: 'scrypt', ...bad, salt }), (err: unknown) => isCairnError(err, 'BAD_MESSAGE'), `the chain refuses ${JSON.stringify(bad)}`);
  }
  assert.deepEqual(kdfP(newKdfParams()).r, 8, 'what a client registers, the chain takes');
});
