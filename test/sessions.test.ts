import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AccountKeys } from '../src/crypto/password.js';
import { Sessions } from '../src/client/sessions.js';

const keys = {} as AccountKeys; // never read by the store

test("one account signing in over and over displaces only its own oldest sessions", () => {
  const sessions = new Sessions(60_000, 6, 2);
  const alice = sessions.create('alice', keys);
  const [m1, m2, m3] = [sessions.create('mallory', keys), sessions.create('mallory', keys), sessions.create('mallory', keys)];
  for (let i = 0; i < 50; i++) sessions.create('mallory', keys);
  assert.equal(sessions.get(alice.token)?.username, 'alice', "alice's session outlives mallory's sign-ins");
  for (const m of [m1, m2, m3]) assert.equal(sessions.get(m.token), undefined, "mallory's oldest went");
  // Past the total bound, the oldest session of all goes.
  const others = ['b', 'c', 'd', 'e', 'f'].map((u) => sessions.create(u, keys));
  assert.equal(sessions.get(alice.token), undefined);
  assert.ok(others.every((s) => sessions.get(s.token)));
  sessions.delete(others[0]!.token);
  assert.equal(sessions.get(others[0]!.token), undefined);
  // Its bookkeeping survived the delete: 'b' may hold two sessions again.
  const [b1, b2] = [sessions.create('b', keys), sessions.create('b', keys)];
  assert.equal(sessions.get(b1.token)?.username, 'b');
  assert.equal(sessions.get(b2.token)?.username, 'b');
});

test('an expired session is gone, and so is its place in its user\'s count', async () => {
  const sessions = new Sessions(1, 10, 1);
  const first = sessions.create('alice', keys);
  const until = Date.now() + 1_000;
  while (Date.now() <= first.expiresAt) assert.ok(Date.now() < until, 'the clock moves');
  assert.equal(sessions.get(first.token), undefined);
  // Its place in alice's count is free again (one per user here): a stale place would have the
  // store delete a token it no longer holds, over and over.
  assert.doesNotThrow(() => sessions.create('alice', keys));
  const second = new Sessions(60_000, 10, 1);
  const a = second.create('alice', keys);
  const b = second.create('alice', keys);
  assert.equal(second.get(a.token), undefined, 'one per user here');
  assert.equal(second.get(b.token)?.username, 'alice');
});
