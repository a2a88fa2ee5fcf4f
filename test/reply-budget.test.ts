import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCairnError } from '../src/errors.js';
import { ReplyBudget, type ReplyGrant } from '../src/mailbox/reply-budget.js';

/** Whether a promise has settled by the end of this turn's microtasks. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

test('a reply budget lends within its limit, makes the rest wait, and wakes them as bytes come back', async () => {
  const budget = new ReplyBudget(400, 60_000);
  const [a, b, c, d] = [{}, {}, {}, {}];
  const held: ReplyGrant[] = [];
  for (const owner of [a, b, c, d]) held.push(await budget.acquire(owner, 100));
  assert.equal(budget.used, 400);
  const late = budget.acquire({}, 100);
  assert.equal(await settled(late), false, 'no room: it waits');
  assert.equal(budget.waiting, 1);
  held[0]!.resize(40); // the reply came out smaller than reserved: that room is lent again
  assert.equal(await settled(late), false, '60 bytes are not room for 100');
  held[1]!.release();
  held[1]!.release(); // a second release gives nothing back twice
  const grant = await late;
  assert.equal(budget.used, 440 - 100);
  for (const g of [held[0]!, held[2]!, held[3]!, grant]) g.release();
  assert.equal(budget.used, 0);
  assert.equal(budget.waiting, 0);
});

test('one owner holds at most a quarter, so owners that stall leave room for the others', async () => {
  const budget = new ReplyBudget(400, 60_000);
  const stalled = {};
  const mine = [await budget.acquire(stalled, 60), await budget.acquire(stalled, 40)];
  const more = budget.acquire(stalled, 10);
  assert.equal(await settled(more), false, 'its quarter (100) is used up');
  // Another owner is not held up behind it.
  const other = await budget.acquire({}, 250);
  assert.equal(budget.used, 350);
  mine[0]!.release();
  await more;
  assert.equal(budget.used, 300);
  other.release();
});

test('a reply larger than the budget or a share is still lent, alone', async () => {
  const budget = new ReplyBudget(100, 60_000);
  const owner = {};
  const big = await budget.acquire(owner, 1000);
  const next = budget.acquire({}, 1);
  assert.equal(await settled(next), false);
  big.release();
  (await next).release();
  assert.equal(budget.used, 0);
});

test('cancelling an owner fails its waiting requests and no one else\'s', async () => {
  const budget = new ReplyBudget(100, 60_000);
  const first = await budget.acquire({}, 100);
  const gone = {};
  const waitingGone = budget.acquire(gone, 10);
  const waitingOther = budget.acquire({}, 10);
  budget.cancel(gone);
  await assert.rejects(waitingGone, (err) => isCairnError(err, 'CONNECTION_CLOSED'));
  assert.equal(budget.waiting, 1);
  first.release();
  (await waitingOther).release();
  assert.equal(budget.used, 0);
});

test('a request that finds no room within the wait limit is refused OVERLOADED, and tryAcquire never waits', async () => {
  const budget = new ReplyBudget(100, 50);
  const held = budget.tryAcquire({}, 100);
  assert.ok(held, 'room at first');
  assert.equal(budget.tryAcquire({}, 1), undefined, 'none now, and no waiting');
  assert.equal(budget.waiting, 0);
  const waited = budget.wait({}, 10);
  assert.equal(budget.waiting, 1);
  await assert.rejects(waited, (err) => isCairnError(err, 'OVERLOADED') && /50 ms/.test((err as Error).message));
  assert.equal(budget.waiting, 0, 'a refused request waits no more');
  held.release();
  assert.equal(budget.used, 0);
});

test('a request waits on while the budget moves, and is refused only once nothing has been given back for the wait limit', async () => {
  const budget = new ReplyBudget(100, 600);
  const [a, b] = [await budget.acquire({}, 50), await budget.acquire({}, 50)];
  const started = performance.now();
  const waited = budget.wait({}, 60);
  let refusedAt = 0;
  waited.catch(() => (refusedAt = performance.now()));
  await new Promise((r) => setTimeout(r, 300));
  a.release(); // progress, though not room for 60 (50 still held)
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(refusedAt, 0, 'still waiting 700 ms in, 400 ms after bytes came back');
  await assert.rejects(waited, (err) => isCairnError(err, 'OVERLOADED'));
  assert.ok(refusedAt - started >= 880, `refused ${Math.round(refusedAt - started)} ms in: the wait limit counts from the last progress`);
  b.release();
  assert.equal(budget.used, 0);
});
