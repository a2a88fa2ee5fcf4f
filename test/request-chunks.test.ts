/**
 * RequestChunks: every chunk in order; an interrupt fails a read waiting on a stalled sender at
 * once and leaves the body readable; and chunks already read are not kept alive.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { RequestChunks } from '../src/client/request-chunks.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('request chunks', () => {
  it('yields every chunk in order', async () => {
    const parts = ['a', 'bb', 'ccc'].map((s) => Buffer.from(s));
    const seen: string[] = [];
    for await (const chunk of new RequestChunks(Readable.from(parts))) seen.push(chunk.toString());
    assert.deepEqual(seen, ['a', 'bb', 'ccc']);
  });

  it('fails a read that waits on a stalled sender when interrupted, and leaves the body readable', async () => {
    const body = new PassThrough();
    const chunks = new RequestChunks(body);
    body.write('first');
    const seen: string[] = [];
    const reading = (async () => {
      for await (const chunk of chunks) seen.push(chunk.toString());
    })();
    const deadline = Date.now() + 5_000;
    while (seen.length === 0) {
      assert.ok(Date.now() < deadline, 'the first chunk was read');
      await new Promise((r) => setImmediate(r));
    }
    chunks.interrupt(new Error('too slow'));
    await assert.rejects(reading, /too slow/);
    assert.equal(body.destroyed, false, 'the body can still be drained');
    body.end('rest');
    const drained: string[] = [];
    for await (const chunk of body) drained.push(chunk.toString());
    assert.ok(drained.join('').endsWith('rest'), `drained ${JSON.stringify(drained)}`);
  });

  it('keeps no chunk it has handed out alive', async () => {
    const refs: WeakRef<Buffer>[] = [];
    const source = Readable.from((function* () {
      for (let i = 0; i < 64; i++) yield Buffer.alloc(256 * 1024, i);
    })());
    let alive = -1;
    for await (const chunk of new RequestChunks(source)) {
      refs.push(new WeakRef(chunk));
      if (refs.length < 48) continue;
      // Mid-body, as an upload is: the reader and all it holds are still in use.
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setImmediate(r));
        gc();
      }
      alive = refs.slice(0, 40).filter((r) => r.deref() !== undefined).length;
      break;
    }
    assert.equal(alive, 0, `${alive} of the first 40 chunks are still reachable`);
  });
});
