import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CairnError } from '../src/errors.js';
import { httpError } from '../src/client/http-errors.js';

test('errors map to a status, a stable code and whether the rest of the body is read first', () => {
  const tooSlow = httpError(new CairnError('TOO_SLOW', 'send it faster'));
  assert.deepEqual(tooSlow, { status: 408, code: 'TOO_SLOW', message: 'send it faster', internal: false, drain: false });
  const tooLarge = httpError(new CairnError('TOO_LARGE', 'over the quota'));
  assert.deepEqual(tooLarge, { status: 413, code: 'TOO_LARGE', message: 'over the quota', internal: false, drain: true });
  assert.equal(httpError(new CairnError('NO_MAJORITY', 'x')).status, 503);

  // Koa and formidable carry an HTTP status of their own.
  assert.deepEqual(httpError(Object.assign(new Error('body too big'), { httpCode: 413 })), {
    status: 413, code: 'TOO_LARGE', message: 'body too big', internal: false, drain: true,
  });
  assert.equal(httpError(Object.assign(new Error('bad'), { status: 422 })).code, 'BAD_REQUEST');
  assert.equal(httpError(Object.assign(new Error('Unsupported Content-Encoding: br'), { status: 415 })).code, 'UNSUPPORTED_MEDIA_TYPE');
  assert.equal(httpError(new CairnError('UNSUPPORTED_MEDIA_TYPE', 'x')).status, 415);

  // The sender's doing: a body that does not inflate, a request cut off. Not logged as ours.
  assert.deepEqual(httpError(Object.assign(new Error('incorrect header check'), { code: 'Z_DATA_ERROR' })), {
    status: 400, code: 'BAD_REQUEST', message: 'the request body could not be decompressed: incorrect header check', internal: false, drain: false,
  });
  assert.equal(httpError(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })).internal, false);

  // Anything else is internal: logged, and the user sees no internals.
  for (const err of [new Error('secret path /var/x'), new CairnError('BAD_CONFIG', 'broken'), 'a string', Object.assign(new Error('x'), { status: 502 })]) {
    const e = httpError(err);
    assert.equal(e.status, 500);
    assert.equal(e.code, 'INTERNAL');
    assert.equal(e.internal, true);
    assert.doesNotMatch(e.message, /secret|broken/);
  }
});
