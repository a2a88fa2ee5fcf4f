import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newFileId } from '../src/client/file-id.js';

test('file ids are 32 hex digits that sort by creation time and never repeat within a millisecond', () => {
  const now = Date.UTC(2026, 11, 6, 12, 0, 0, 123);
  const sameMs = new Set(Array.from({ length: 1000 }, () => newFileId(now)));
  assert.equal(sameMs.size, 1000, 'ids made in the same millisecond differ');
  for (const id of sameMs) {
    assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(parseInt(id.slice(0, 12), 16), now, 'the first 12 digits are the time');
  }
  const times = [0, 1, now - 1, now, now + 1, 2 ** 48 - 1];
  const ids = times.map((t) => newFileId(t));
  assert.deepEqual([...ids].sort(), ids, 'later ids sort after earlier ones');
  assert.ok(newFileId() > newFileId(Date.now() - 1000), 'the default is the current time');
  assert.throws(() => newFileId(2 ** 48), /48 bits/);
  assert.throws(() => newFileId(-1), /48 bits/);
});
