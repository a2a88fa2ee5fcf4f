import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { boxKeyFromSeed, openSealed, sealTo, sealToSelf, type SealedBox } from '../src/crypto/keys.js';
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
