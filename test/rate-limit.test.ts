import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCairnError } from '../src/errors.js';
import { FailureLimiter, SignInLimiter } from '../src/client/rate-limit.js';

const limited = (err: unknown) => isCairnError(err, 'RATE_LIMITED');

test('after the free failures each attempt waits twice as long as the last; a success forgets the key', () => {
  const l = new FailureLimiter(3, 1_000, 8_000);
  const t = 1_000_000;
  for (let i = 0; i < 3; i++) l.begin('k', t).failed(t);
  l.begin('k', t).failed(t); // the 4th: locked for 1 s
  assert.throws(() => l.begin('k', t + 999), limited);
  assert.doesNotThrow(() => l.begin('other', t + 999).abandoned(), 'another key is its own');
  l.begin('k', t + 1_000).abandoned(); // not a failure: the lock stays as it was
  l.begin('k', t + 1_000).failed(t + 1_000); // the 5th: locked for 2 s
  assert.throws(() => l.begin('k', t + 2_999), limited);
  l.begin('k', t + 3_000).failed(t + 3_000); // the 6th: 4 s
  l.begin('k', t + 7_000).failed(t + 7_000); // the 7th: 8 s, the cap
  l.begin('k', t + 15_000).failed(t + 15_000); // the 8th: still 8 s
  assert.throws(() => l.begin('k', t + 22_999), limited);
  l.begin('k', t + 23_000).succeeded();
  for (let i = 0; i < 3; i++) l.begin('k', t + 23_000).failed(t + 23_000); // forgotten: three free ones again
  assert.doesNotThrow(() => l.begin('k', t + 23_000).abandoned());
});

test('attempts being checked count against the free failures; each ends once', () => {
  const l = new FailureLimiter(3);
  const now = 5_000;
  const a = [l.begin('k', now), l.begin('k', now), l.begin('k', now)];
  assert.throws(() => l.begin('k', now), limited, 'a 4th at once is refused');
  a[0]!.failed();
  a[0]!.failed(); // ended already: no second failure
  assert.throws(() => l.begin('k', now), limited, 'one failure and two in check use up the three');
  a[1]!.failed();
  a[2]!.abandoned();
  const b = l.begin('k', now); // two failures: one more may be checked at a time
  assert.throws(() => l.begin('k', now), limited);
  b.succeeded();
  assert.equal([l.begin('k', now), l.begin('k', now), l.begin('k', now)].length, 3, 'a success forgets the failures');
});

test('guesses spread over many account names from one address soon wait too; a success elsewhere does not clear them', () => {
  const l = new SignInLimiter(new FailureLimiter(3), new FailureLimiter(5));
  const now = 10_000;
  for (let i = 0; i < 5; i++) l.begin(`made-up-${i}`, '10.0.0.9', now).failed(now); // the address's free ones
  l.begin('mine', '10.0.0.9', now).succeeded(); // the attacker's own account: clears nothing
  l.begin('made-up-5', '10.0.0.9', now).failed(now); // the 6th locks the address for 1 s
  assert.throws(() => l.begin('made-up-6', '10.0.0.9', now + 500), limited, 'the address waits, whatever the name');
  assert.doesNotThrow(() => l.begin('made-up-7', '10.0.0.10', now + 500).abandoned(), 'another address is its own');
});

test('failures long past are forgotten', () => {
  const l = new FailureLimiter(3, 1_000, 8_000, 50_000, 60_000);
  for (let i = 0; i < 4; i++) l.begin('k', 0).failed(0); // locked for 1 s
  l.begin('k', 61_000).failed(61_000); // a minute later: counted from zero again, so no lock
  assert.doesNotThrow(() => l.begin('k', 61_001).abandoned());
});
