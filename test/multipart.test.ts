import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MultipartParser, boundaryOf, type MultipartEvent, type PartHeaders } from '../src/client/multipart.js';
import { isCairnError } from '../src/errors.js';

const LIMITS = { maxParts: 8, maxHeaderBytes: 1024 };

interface Part {
  headers: PartHeaders;
  bytes: Buffer;
}

/** Feeds `body` cut at the given offsets and collects whole parts; checks the event order on the way. */
function parse(boundary: string, body: Buffer, cuts: number[], limits = LIMITS): Part[] {
  const parser = new MultipartParser(boundary, limits);
  const parts: Part[] = [];
  let open: { headers: PartHeaders; chunks: Buffer[] } | null = null;
  const take = (events: MultipartEvent[]) => {
    for (const e of events) {
      if (e.kind === 'part') {
        assert.equal(open, null, 'a part starts only after the last one ended');
        open = { headers: e.headers, chunks: [] };
      } else if (e.kind === 'data') {
        assert.ok(open, 'data belongs to a part');
        assert.ok(e.bytes.length > 0, 'no empty data events');
        open.chunks.push(Buffer.from(e.bytes));
      } else {
        assert.ok(open, 'a part ends after it started');
        parts.push({ headers: open.headers, bytes: Buffer.concat(open.chunks) });
        open = null;
      }
    }
  };
  let from = 0;
  for (const cut of [...cuts, body.length]) {
    take(parser.push(body.subarray(from, cut)));
    from = cut;
  }
  parser.end();
  assert.equal(open, null);
  return parts;
}

function form(boundary: string, parts: { head: string; bytes: Buffer }[], preamble = '', epilogue = ''): Buffer {
  const pieces: Buffer[] = [Buffer.from(preamble ? `${preamble}\r\n` : '')];
  for (const p of parts) pieces.push(Buffer.from(`--${boundary}\r\n${p.head}\r\n\r\n`), p.bytes, Buffer.from('\r\n'));
  pieces.push(Buffer.from(`--${boundary}--\r\n${epilogue}`));
  return Buffer.concat(pieces);
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isCairnError(err) ? err.code : 'not a CairnError';
  }
  return undefined;
}

test('multipart: files and fields come out whole, wherever the chunks are cut', () => {
  const boundary = '----cairnBoundary7MA4YWxk';
  // Bytes that look like the start of a boundary, inside the data, must stay data.
  const tricky = Buffer.from(`a\r\n--${boundary.slice(0, 10)}x\r\n-\r\n--${boundary.slice(0, -1)}Z\r`);
  const body = form(
    boundary,
    [
      { head: 'Content-Disposition: form-data; name="_csrf"', bytes: Buffer.from('token') },
      { head: 'Content-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream', bytes: tricky },
      { head: 'content-disposition: form-data; name="file"; filename="empty.txt"', bytes: Buffer.alloc(0) },
    ],
    'preamble to ignore',
    'epilogue to ignore',
  );
  const expected = [
    { field: '_csrf', filename: null, contentType: null, bytes: 'token' },
    { field: 'file', filename: 'a.bin', contentType: 'application/octet-stream', bytes: tricky.toString('latin1') },
    { field: 'file', filename: 'empty.txt', contentType: null, bytes: '' },
  ];
  const summary = (parts: Part[]) => parts.map((p) => ({ ...p.headers, bytes: p.bytes.toString('latin1') }));
  assert.deepEqual(summary(parse(boundary, body, [])), expected);
  for (let cut = 0; cut <= body.length; cut++) assert.deepEqual(summary(parse(boundary, body, [cut])), expected, `cut at ${cut}`);
  for (let cut = 0; cut + 3 <= body.length; cut++) {
    assert.deepEqual(summary(parse(boundary, body, [cut, cut + 1, cut + 3])), expected, `cuts at ${cut}, +1, +3`);
  }
});

test('multipart: random data in random chunks is returned byte for byte', () => {
  const boundary = randomBytes(12).toString('hex');
  for (let round = 0; round < 40; round++) {
    const files = [randomBytes(1 + ((round * 7919) % 200_000)), randomBytes(round % 5)];
    // Plant partial delimiters in the data, each followed by a byte no (hex) boundary holds: a
    // random byte there completed the delimiter in about one run in 256.
    Buffer.from(`\r\n--${boundary.slice(0, round % boundary.length)}!`).copy(files[0]!, files[0]!.length >> 1);
    const body = form(boundary, files.map((bytes, i) => ({ head: `Content-Disposition: form-data; name="file"; filename="f${i}"`, bytes })));
    const cuts: number[] = [];
    for (let at = 0, i = 0; i < 64; i++) {
      at += 1 + Math.floor(Math.random() * (body.length / 16));
      if (at >= body.length) break;
      cuts.push(at);
    }
    const parts = parse(boundary, body, cuts);
    assert.equal(parts.length, 2);
    parts.forEach((p, i) => assert.ok(p.bytes.equals(files[i]!), `round ${round}, file ${i}`));
  }
});

test('multipart: names keep their characters; the HTML form escapes for ", CR and LF are undone', () => {
  const boundary = 'b';
  const name = 'résumé "final"\u{1F600}.txt';
  const escaped = name.replace(/"/g, '%22');
  const body = form(boundary, [{ head: `Content-Disposition: form-data; name="file"; filename="${escaped}"`, bytes: Buffer.from('x') }]);
  assert.equal(parse(boundary, body, [])[0]!.headers.filename, name);
  const unquoted = form(boundary, [{ head: 'Content-Disposition: form-data; name=file; filename=plain.txt', bytes: Buffer.from('x') }]);
  assert.deepEqual(parse(boundary, unquoted, [])[0]!.headers, { field: 'file', filename: 'plain.txt', contentType: null });
  // Only an RFC 8187 name, as some clients send: used; a plain filename wins when both are there.
  const extended = form(boundary, [{ head: "Content-Disposition: form-data; name=file; filename*=UTF-8''%F0%9F%98%80%20r%C3%A9sum%C3%A9.txt", bytes: Buffer.from('x') }]);
  assert.equal(parse(boundary, extended, [])[0]!.headers.filename, '😀 résumé.txt');
  const both = form(boundary, [{ head: "Content-Disposition: form-data; name=file; filename=\"a.txt\"; filename*=UTF-8''b.txt", bytes: Buffer.from('x') }]);
  assert.equal(parse(boundary, both, [])[0]!.headers.filename, 'a.txt');
  // Browsers and curl send a name's backslashes as they are (a quote as %22): never undone as
  // quoted-pairs, which would change `a\\b` and break a name ending in a backslash.
  for (const raw of ['dir\\name.txt', 'a\\\\b.txt', 'backup\\']) {
    const sent = form(boundary, [{ head: `Content-Disposition: form-data; name="file"; filename="${raw}"`, bytes: Buffer.from('x') }]);
    assert.equal(parse(boundary, sent, [])[0]!.headers.filename, raw);
  }
});

test('multipart: the boundary is read from the Content-Type, quoted or not, and checked', () => {
  assert.equal(boundaryOf('multipart/form-data; boundary=abc-123'), 'abc-123');
  assert.equal(boundaryOf('multipart/form-data; charset=utf-8; boundary="a b:c"'), 'a b:c');
  for (const bad of [undefined, 'multipart/form-data', 'multipart/form-data; boundary=', `multipart/form-data; boundary=${'x'.repeat(71)}`, 'multipart/form-data; boundary="ends in space "']) {
    assert.equal(code(() => boundaryOf(bad)), 'BAD_REQUEST', String(bad));
  }
});

test('multipart: malformed bodies get a clear error', () => {
  const boundary = 'xyz';
  const ok = { head: 'Content-Disposition: form-data; name="file"; filename="a"', bytes: Buffer.from('data') };
  const whole = form(boundary, [ok]);
  // Cut off before the closing boundary.
  assert.equal(code(() => parse(boundary, whole.subarray(0, whole.length - 8), [])), 'BAD_REQUEST');
  assert.equal(code(() => parse(boundary, Buffer.from('no boundary at all'), [])), 'BAD_REQUEST');
  // A boundary must be followed by CRLF or "--".
  assert.equal(code(() => parse(boundary, Buffer.from(`--${boundary}Xjunk`), [])), 'BAD_REQUEST');
  // Parts need a form-data disposition with a field name.
  assert.equal(code(() => parse(boundary, form(boundary, [{ head: 'Content-Type: text/plain', bytes: Buffer.from('x') }]), [])), 'BAD_REQUEST');
  assert.equal(code(() => parse(boundary, form(boundary, [{ head: 'Content-Disposition: form-data; filename="a"', bytes: Buffer.from('x') }]), [])), 'BAD_REQUEST');
  assert.equal(code(() => parse(boundary, form(boundary, [{ head: 'no colon here', bytes: Buffer.from('x') }]), [])), 'BAD_REQUEST');
  // Bounds: parts and header size.
  assert.equal(code(() => parse(boundary, form(boundary, Array.from({ length: 9 }, () => ok)), [])), 'TOO_LARGE');
  const longHead = { head: `Content-Disposition: form-data; name="file"; filename="${'n'.repeat(2000)}"`, bytes: Buffer.from('x') };
  assert.equal(code(() => parse(boundary, form(boundary, [longHead]), [100, 600, 1200])), 'TOO_LARGE');
  // After the closing boundary nothing more is read.
  assert.equal(parse(boundary, Buffer.concat([whole, Buffer.from(`--${boundary}\r\nContent-Disposition: bogus\r\n\r\n`)]), []).length, 1);
});
