/** The hedged-request primitive shard reads and chain reads share (src/client/hedged.ts). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hedged } from '../src/client/hedged.js';

/** A promise and its resolver, for an answer that comes only when the test says so. */
function later<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('hedged requests', () => {
  it('asks one more candidate while one stalls, and hands the stalled answer back late', async () => {
    const stalled = later<string | undefined>();
    const late: string[] = [];
    let hedges = 0;
    const ask = (c: string) => (c === 'a' ? stalled.promise : Promise.resolve(`from ${c}`));
    const result = await hedged(['a', 'b', 'c', 'd'], ask, { need: 2, hedgeMs: 5, onHedge: () => hedges++, onLate: (x) => late.push(x) });
    assert.deepEqual(result.answers.map((a) => a.answer), ['from b', 'from c']);
    assert.equal(result.asked, 3, 'd was never needed');
    assert.equal(hedges, 1, 'c was asked early, because a stalled');
    stalled.resolve('from a');
    await stalled.promise;
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(late, ['from a'], 'the answer after the end is handed to onLate');
  });

  it('asks the next candidate when one gives up, and never early without hedgeMs', async () => {
    const asked: string[] = [];
    let hedges = 0;
    const ask = async (c: string) => {
      asked.push(c);
      return c === 'b' ? 'ok' : undefined;
    };
    const result = await hedged(['a', 'b', 'c'], ask, { need: 1, hedgeMs: null, onHedge: () => hedges++ });
    assert.deepEqual(asked, ['a', 'b']);
    assert.deepEqual(result.answers, [{ candidate: 'b', answer: 'ok' }]);
    assert.equal(hedges, 0);
  });

  it('settles with what it has once every candidate was tried', async () => {
    const result = await hedged([1, 2, 3], async (c) => (c === 2 ? c * 10 : undefined), { need: 2, hedgeMs: 5, onHedge: () => undefined });
    assert.deepEqual(result, { answers: [{ candidate: 2, answer: 20 }], asked: 3 });
    assert.deepEqual(await hedged([], async () => 1, { need: 1, hedgeMs: 5, onHedge: () => undefined }), { answers: [], asked: 0 });
  });

  it('ends at once with the error of a candidate that throws', async () => {
    const never = later<number | undefined>();
    const ask = (c: number) => (c === 1 ? Promise.reject(new Error('a bug')) : never.promise);
    await assert.rejects(hedged([0, 1, 2], ask, { need: 2, hedgeMs: 5, onHedge: () => undefined }), /a bug/);
  });
});
