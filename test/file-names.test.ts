import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contentDisposition } from '../src/client/api.js';
import { wellFormed } from '../src/client/format.js';
import { cleanName } from '../src/client/upload-receiver.js';

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

test('a long name is cut at 255 UTF-16 units, never inside a character', () => {
  const straddling = `${'a'.repeat(254)}😀.txt`; // the emoji's two halves are units 255 and 256
  assert.equal(cleanName(straddling), 'a'.repeat(254));
  const fits = `${'a'.repeat(253)}😀.txt`;
  assert.equal(cleanName(fits), `${'a'.repeat(253)}😀`);
  for (const name of [straddling, fits, `${'😀'.repeat(200)}`, `x\uDC00y`, `\uD83D`]) {
    const clean = cleanName(name);
    assert.ok(clean.length <= 255);
    assert.doesNotMatch(clean, loneSurrogate, JSON.stringify(clean));
  }
  assert.equal(cleanName(' \u0000\u001f '), 'unnamed');
  assert.equal(cleanName('naïve résumé 📄.pdf'), 'naïve résumé 📄.pdf');
  // Bidirectional overrides (a name that reads "invoiceexe.jpg") and C1 controls go.
  assert.equal(cleanName('invoice\u202Egpj.exe'), 'invoicegpj.exe');
  assert.equal(cleanName('a\u0085b\u2066c\u200Fd.txt'), 'abcd.txt');
  assert.equal(cleanName('עברית.txt'), 'עברית.txt', 'right-to-left letters stay');
});

test('Content-Disposition encodes any stored name, a broken one included', () => {
  assert.equal(wellFormed('ok 😀'), 'ok 😀');
  assert.equal(wellFormed(`a\uD83D`), 'a\uFFFD');
  assert.equal(wellFormed(`\uDE00b`), '\uFFFDb');
  // Names cut inside a character before cleanName kept whole characters are still on the chain.
  const header = contentDisposition(`${'a'.repeat(254)}\uD83D`);
  assert.match(header, /^attachment; filename="a{254}_"; filename\*=UTF-8''a{254}%EF%BF%BD$/);
  assert.equal(contentDisposition('résumé "final".pdf'), `attachment; filename="r_sum_ _final_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf`);
});
