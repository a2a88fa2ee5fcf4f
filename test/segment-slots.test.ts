import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SegmentSlots } from '../src/client/segment-slots.js';

test('segment slots: never more in use than the budget, handed out first come first served', async () => {
  const slots = new SegmentSlots(2);
  const a = await slots.acquire();
  const b = await slots.acquire();
  const order: string[] = [];
  const later = ['c', 'd', 'e'].map((name) => slots.acquire().then((release) => (order.push(name), release)));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [], 'no slot while both are taken');
  assert.deepEqual(slots.stats(), { limit: 2, inUse: 2, waiting: 3 });
  a();
  const c = await later[0]!;
  assert.deepEqual(order, ['c']);
  b();
  c();
  const [d, e] = await Promise.all([later[1]!, later[2]!]);
  assert.deepEqual(order, ['c', 'd', 'e']);
  assert.deepEqual(slots.stats(), { limit: 2, inUse: 2, waiting: 0 });
  d();
  e();
  assert.deepEqual(slots.stats(), { limit: 2, inUse: 0, waiting: 0 });
  assert.throws(() => e(), /released once/);
  assert.throws(() => new SegmentSlots(0), /positive integer/);
});

test('tryAcquire takes a free slot or nothing, and never waits', async () => {
  const slots = new SegmentSlots(1);
  const a = slots.tryAcquire();
  assert.ok(a);
  assert.equal(slots.tryAcquire(), null, 'none free: nothing taken, no waiter queued');
  assert.deepEqual(slots.stats(), { limit: 1, inUse: 1, waiting: 0 });
  const waiter = slots.acquire();
  a();
  (await waiter)();
  assert.deepEqual(slots.stats(), { limit: 1, inUse: 0, waiting: 0 });
});
