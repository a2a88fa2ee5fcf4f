import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isCairnError } from '../src/errors.js';
import { FrameDecoder, FrameWriter, FRAME_PREFIX_BYTES, encodeFrame, type Frame } from '../src/mailbox/frame.js';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { BufferPool } from '../src/codec/buffer-pool.js';

function wire(header: unknown, payload?: Uint8Array): Buffer {
  return Buffer.concat(encodeFrame(header, payload));
}

/** Pushes each chunk and pulls every frame it completes, as a socket reader does. */
function decodeChunks(decoder: FrameDecoder, chunks: Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let f = decoder.next(); f; f = decoder.next()) out.push(f);
  }
  return out;
}

function assertCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => isCairnError(err) && err.code === code);
}

test('round trip without and with a payload', () => {
  const header = { t: 'x.y', id: 7, from: 'sp1', body: { a: [1, 'two', null], b: new Uint8Array([1, 2, 3]) } };
  const payload = randomBytes(1000);
  const plain = encodeFrame(header, undefined);
  assert.equal(plain.length, 1);
  const pieces = encodeFrame(header, payload);
  assert.equal(pieces.length, 2);
  assert.equal(pieces[1], payload, 'the payload is passed through, not copied');

  const frames = decodeChunks(new FrameDecoder(), [Buffer.concat([...plain, ...pieces])]);
  assert.equal(frames.length, 2);
  assert.deepEqual(frames[0]!.header, { ...header, body: { ...header.body, b: Buffer.from([1, 2, 3]) } });
  assert.equal(frames[0]!.payload, undefined);
  assert.deepEqual(Buffer.from(frames[1]!.payload!), payload);
});

test('the length prefix counts every byte after itself', () => {
  const bytes = wire({ t: 'a' }, new Uint8Array(10));
  assert.equal(bytes.readUInt32BE(0), bytes.length - 4);
  assert.equal(bytes.readUInt32BE(4), bytes.length - FRAME_PREFIX_BYTES - 10);
});

test('a stream split at every byte boundary decodes the same', () => {
  const stream = Buffer.concat([wire({ t: 'one', id: 1 }, Buffer.from('payload-bytes')), wire({ t: 'two', id: 2, body: 'x' })]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const frames = decodeChunks(new FrameDecoder(), [stream.subarray(0, cut), stream.subarray(cut)]);
    assert.equal(frames.length, 2, `cut at ${cut}`);
    assert.deepEqual(frames[0]!.header, { t: 'one', id: 1 });
    assert.equal(Buffer.from(frames[0]!.payload!).toString(), 'payload-bytes');
    assert.deepEqual(frames[1]!.header, { t: 'two', id: 2, body: 'x' });
  }
  const oneByteChunks = [...stream].map((b) => Buffer.from([b]));
  assert.equal(decodeChunks(new FrameDecoder(), oneByteChunks).length, 2);
});

test('many frames in one chunk come out in order as views of that chunk', () => {
  const n = 2000;
  const chunk = Buffer.concat(Array.from({ length: n }, (_, i) => wire({ t: 'm', id: i }, Buffer.from([i & 0xff]))));
  const decoder = new FrameDecoder();
  const frames = decodeChunks(decoder, [chunk]);
  assert.equal(frames.length, n);
  frames.forEach((f, i) => {
    assert.equal((f.header as { id: number }).id, i);
    assert.equal(f.payload!.buffer, chunk.buffer, 'payload is a view, not a copy');
    assert.equal(f.payload![0], i & 0xff);
  });
  assert.equal(decoder.buffered, 0);
});

test('a frame spread over chunks is assembled into one exactly sized buffer', () => {
  const payload = randomBytes(100_000);
  const bytes = wire({ t: 'big' }, payload);
  const decoder = new FrameDecoder();
  const frames = decodeChunks(decoder, [bytes.subarray(0, 3), bytes.subarray(3, 50_000), bytes.subarray(50_000)]);
  assert.equal(frames.length, 1);
  assert.deepEqual(Buffer.from(frames[0]!.payload!), payload);
  assert.equal(frames[0]!.payload!.buffer.byteLength, bytes.length - 4);
});

test('an oversize length is refused from its first four bytes, before any allocation', () => {
  const decoder = new FrameDecoder(1024);
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(0xffff_fff0, 0);
  decoder.push(prefix);
  assertCode(() => decoder.next(), 'FRAME_TOO_LARGE');
  assert.equal(decoder.buffered, 0, 'nothing is held after the refusal');
  // And the decoder stays failed: the stream is out of sync.
  assertCode(() => decoder.push(Buffer.from([1])), 'FRAME_TOO_LARGE');

  const justOver = new FrameDecoder(1024);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(1021, 0);
  head.writeUInt32BE(1, 4);
  justOver.push(head);
  assertCode(() => justOver.next(), 'FRAME_TOO_LARGE');
  assertCode(() => encodeFrame({ t: 'x' }, new Uint8Array(1024), 1024), 'FRAME_TOO_LARGE');
});

test('inconsistent lengths and undecodable headers are BAD_FRAME', () => {
  const frame = (total: number, headerLength: number, rest: number[] = []): Buffer => {
    const b = Buffer.alloc(8 + rest.length);
    b.writeUInt32BE(total, 0);
    b.writeUInt32BE(headerLength, 4);
    Buffer.from(rest).copy(b, 8);
    return b;
  };
  const cases: Buffer[] = [
    frame(3, 0), // shorter than its own header-length field
    frame(6, 3, [0x90, 0x90]), // header longer than the frame
    frame(4, 0), // empty header
    frame(7, 3, [0xd9, 0x05, 0x61]), // a 5-byte string with 1 byte present
    frame(6, 2, [0x92, 0x01]), // array of two with one element
    frame(6, 2, [0x01, 0x02]), // trailing bytes after the header value
  ];
  for (const bytes of cases) {
    const decoder = new FrameDecoder();
    decoder.push(bytes);
    assertCode(() => decoder.next(), 'BAD_FRAME');
  }
});

test('a header that would decode to far more memory than its size is refused undecoded; real big ones pass', () => {
  const frameOf = (header: Buffer): Buffer => {
    const prefix = Buffer.alloc(8);
    prefix.writeUInt32BE(4 + header.length, 0);
    prefix.writeUInt32BE(header.length, 4);
    return Buffer.concat([prefix, header]);
  };
  // 4 MiB of empty maps (0x80) in one array: ~256 MiB of objects once decoded (a 23 MiB one took an SP to 1.7 GiB).
  const n = 4 * 1024 * 1024;
  const bomb = Buffer.concat([Buffer.from([0xdd, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 0x80)]);
  // The same shape under the envelope, in a field of the body, as a request would carry it.
  const nested = Buffer.concat([Buffer.from([0x82, 0xa1, 0x74, 0xa4, ...Buffer.from('echo'), 0xa4, ...Buffer.from('body')]), bomb]);
  for (const header of [bomb, nested]) {
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    decoder.push(frameOf(header));
    const heapBefore = process.memoryUsage().heapUsed;
    assert.throws(() => decoder.next(), (err: unknown) => isCairnError(err) && err.code === 'BAD_FRAME' && /memory to decode/.test((err as Error).message));
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'refused before it was decoded');
  }
  // Extensions decode to objects the walk cannot price (a Set reads the value after it, a record
  // definition makes later bytes objects): refused, whatever follows.
  for (const ext of [[0xd4, 0x73, 0x00], [0xd4, 0x72, 0x40], [0xd4, 0x65, 0x00], [0xc7, 0x01, 0x69, 0x00]]) {
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    decoder.push(frameOf(Buffer.concat([Buffer.from([0x92, ...ext]), bomb.subarray(0, 1024)])));
    assert.throws(() => decoder.next(), (err: unknown) => isCairnError(err) && err.code === 'BAD_FRAME' && /extension type/.test((err as Error).message), ext.join(','));
  }
  // Big real headers decode as ever, undefined and dates (the encoder's own extensions) included:
  // a file record of 4,096 segments (a 16 GiB file, ~1 MB); a repair's placement of 4,096 shards,
  // mostly small integers under repeated keys (~100 KB).
  const segments = Array.from({ length: 4096 }, (_, i) => ({ sealedLength: 4194320, shards: ['sp1', 'sp2', 'sp3'].map((sp, j) => ({ hash: (i * 3 + j).toString(16).padStart(64, '0'), sp })) }));
  const record = { t: 'chain.submit', id: 1, from: 'client1', body: { tx: { body: { type: 'file.put', file: { id: 'a'.repeat(32), segments } }, sig: 'c'.repeat(128) } }, at: new Date(5), none: undefined };
  const placements = Array.from({ length: 4096 }, (_, i) => ({ segment: i % 99, shard: i % 3, sp: 'sp4' }));
  const place = { t: 'chain.submit', id: 2, from: 'sp1', body: { tx: { body: { type: 'file.place', fileId: 'a'.repeat(32), placements }, sig: 'c'.repeat(128) } } };
  for (const header of [record, place]) {
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    decoder.push(wire(header));
    assert.deepEqual(decoder.next()?.header, header);
  }
});

test('a truncated frame yields nothing and keeps its bytes', () => {
  const bytes = wire({ t: 'cut' }, randomBytes(64));
  const decoder = new FrameDecoder();
  assert.equal(decodeChunks(decoder, [bytes.subarray(0, bytes.length - 1)]).length, 0);
  assert.equal(decoder.buffered, bytes.length - 1);
  assert.equal(decodeChunks(decoder, [bytes.subarray(bytes.length - 1)]).length, 1);
});

test('random garbage never escapes as anything but a CairnError', () => {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed;
  };
  for (let i = 0; i < 2000; i++) {
    const bytes = Buffer.alloc(1 + (rand() % 64));
    for (let j = 0; j < bytes.length; j++) bytes[j] = rand() & 0xff;
    // Small lengths so some garbage parses as whole frames with garbage headers.
    if (i % 2 === 0 && bytes.length >= 8) {
      bytes.writeUInt32BE(bytes.length - 4, 0);
      bytes.writeUInt32BE(rand() % (bytes.length - 7), 4);
    }
    const decoder = new FrameDecoder(4096);
    try {
      decodeChunks(decoder, [bytes]);
    } catch (err) {
      assert.ok(isCairnError(err, 'BAD_FRAME') || isCairnError(err, 'FRAME_TOO_LARGE'), String(err));
    }
  }
});

test('frames split across chunks are assembled in pooled buffers that can be reused safely', () => {
  const pool = new BufferPool(1024 * 1024);
  const decoder = new FrameDecoder(undefined, pool);
  const header = { t: 'shard.put', id: 1, from: 'c', body: { sig: new Uint8Array([9, 8, 7]) } };
  const first = wire(header, randomBytes(10_000));
  const [a] = decodeChunks(decoder, [first.subarray(0, 100), first.subarray(100)]);
  assert.ok(a?.assembled, 'an assembled frame names its pooled buffer');
  assert.equal(a.payload!.buffer, a.assembled, 'the payload lies in it');
  const sig = (a.header as { body: { sig: Uint8Array } }).body.sig;
  assert.notEqual(sig.buffer, a.assembled, 'header binaries are copied out of the frame buffer');
  pool.give(a.assembled);
  const second = wire({ ...header, id: 2 }, randomBytes(10_000));
  const [b] = decodeChunks(decoder, [second.subarray(0, 50), second.subarray(50)]);
  assert.equal(b?.assembled, a.assembled, 'the same size reuses the given-back buffer');
  assert.deepEqual([...sig], [9, 8, 7], 'and the first header is untouched by the reuse');
  assert.equal(pool.stats().reused, 1);
  // Shard frames differ by a few bytes (the key's digits): they share one size class.
  pool.give(b!.assembled!);
  const longer = wire({ ...header, id: 3, key: 'x'.repeat(7) }, randomBytes(10_003));
  const [d] = decodeChunks(decoder, [longer.subarray(0, 70), longer.subarray(70)]);
  assert.equal(d?.assembled, a.assembled, 'a frame a few bytes longer reuses it too');
  assert.equal(d.payload!.length, 10_003);
  assert.equal(pool.stats().reused, 2);
  // A frame that arrives whole in one chunk is a view of that chunk: nothing to give back.
  const [c] = decodeChunks(decoder, [wire(header, randomBytes(100))]);
  assert.equal(c?.assembled, undefined);
});

/**
 * Feeds a stream as a socket with a SocketReader does: each read fills as much of readTarget() as
 * the next read size allows, and the frames it completes are pulled before the next read.
 */
function decodeReads(decoder: FrameDecoder, stream: Buffer, readSizes: () => number): { frames: Frame[]; straightIntoFrame: number } {
  const frames: Frame[] = [];
  let straightIntoFrame = 0;
  for (let at = 0; at < stream.length; ) {
    const into = decoder.readTarget();
    const n = Math.min(into.length, readSizes(), stream.length - at);
    stream.copy(into, 0, at, at + n);
    at += n;
    // A read that lands past a buffer's start is the rest of a frame being assembled.
    if (into.byteOffset > 0) straightIntoFrame += n;
    decoder.landed(into, n);
    for (let f = decoder.next(); f; f = decoder.next()) frames.push(f);
  }
  return { frames, straightIntoFrame };
}

test('direct reads: shard bytes land in the frame they belong to, small payloads survive the reuse of the scratch', () => {
  const pool = new BufferPool(8 * 1024 * 1024);
  const big = randomBytes(1_000_000);
  const smalls = Array.from({ length: 50 }, (_, i) => randomBytes(1 + ((i * 37) % 300)));
  const stream = Buffer.concat([
    ...smalls.slice(0, 25).map((p, i) => wire({ t: 's', id: i }, p)),
    wire({ t: 'big', id: 100 }, big),
    wire({ t: 'bare', id: 101 }),
    ...smalls.slice(25).map((p, i) => wire({ t: 's', id: 25 + i }, p)),
    wire({ t: 'big', id: 102 }, big),
  ]);
  let seed = 7;
  const sizes = [() => 16_384, () => 1, () => 100_000, () => ((seed = (seed * 1103515245 + 12345) >>> 0) % 20_000) + 1];
  for (const readSizes of sizes) {
    const { frames, straightIntoFrame } = decodeReads(new FrameDecoder(undefined, pool), stream, readSizes);
    assert.deepEqual(frames.map((f) => (f.header as { id: number }).id), [...Array.from({ length: 25 }, (_, i) => i), 100, 101, ...Array.from({ length: 25 }, (_, i) => 25 + i), 102]);
    const payloads = frames.filter((f) => (f.header as { t: string }).t === 's').map((f) => Buffer.from(f.payload!));
    assert.deepEqual(payloads, smalls, 'payloads that came whole in one read were copied out before the next read');
    for (const f of frames.filter((x) => (x.header as { t: string }).t === 'big')) {
      assert.ok(f.assembled, 'a frame over several reads is assembled in a pooled buffer');
      assert.ok(Buffer.from(f.payload!).equals(big));
      pool.give(f.assembled);
    }
    assert.equal(frames.find((f) => (f.header as { t: string }).t === 'bare')!.payload, undefined);
    assert.ok(straightIntoFrame >= 2 * big.length - 2 * 100_000, `${straightIntoFrame} bytes read straight into their frame`);
  }
  const decoder = new FrameDecoder();
  assert.throws(() => decoder.landed(Buffer.alloc(10), 10), /neither/, 'a read into a buffer the decoder did not hand out');
  const broken = Buffer.alloc(8);
  broken.writeUInt32BE(3, 0);
  const target = decoder.readTarget();
  broken.copy(target);
  decoder.landed(target, 8);
  assertCode(() => decoder.next(), 'BAD_FRAME');
  assert.equal(decoder.error?.code, 'BAD_FRAME', 'the decoder remembers why the stream broke');
  assertCode(() => decoder.landed(decoder.readTarget(), 1), 'BAD_FRAME');
});

test('buffer pool: exact sizes, bounded, detached buffers ignored', () => {
  const pool = new BufferPool(3000);
  const x = pool.take(1000);
  const y = pool.take(1000);
  pool.give(x);
  pool.give(y);
  assert.equal(pool.take(1000), y, 'last given, first taken');
  assert.notEqual(pool.take(999), x, 'only an exact size is reused');
  pool.give(pool.take(2000)); // 1000 + 2000 pooled: at the bound
  pool.give(new ArrayBuffer(1500)); // over it: the oldest size class makes room
  assert.ok(pool.stats().pooledBytes <= 3000, `pooled ${pool.stats().pooledBytes} bytes, bound 3000`);
  const moved = new ArrayBuffer(500);
  structuredClone(moved, { transfer: [moved] });
  pool.give(moved);
  assert.ok(pool.stats().pooledBytes <= 3000);
  assert.throws(() => {
    const z = pool.take(1500);
    pool.give(z);
    pool.give(z);
  }, /once/);
});

test('frames written in one turn leave in one write, a shard-sized payload leaves alone, and all arrive in order', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  const peer = await accepted;
  try {
    const decoder = new FrameDecoder(8 << 20);
    const got: Frame[] = [];
    peer.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      for (let f = decoder.next(); f; f = decoder.next()) got.push(f);
    });
    // Log what reaches the socket's underlying handle: the byte sizes of each write's buffers.
    const handleWrites: number[][] = [];
    const counted = client as unknown as {
      _writev: (chunks: { chunk: Buffer }[], cb: unknown) => unknown;
      _write: (chunk: Buffer, enc: unknown, cb: unknown) => unknown;
    };
    counted._writev = ((original) => (chunks: { chunk: Buffer }[], cb: unknown) => {
      handleWrites.push(chunks.map((c) => c.chunk.length));
      return original(chunks, cb);
    })(counted._writev.bind(client));
    counted._write = ((original) => (chunk: Buffer, enc: unknown, cb: unknown) => {
      handleWrites.push([chunk.length]);
      return original(chunk, enc, cb);
    })(counted._write.bind(client));
    const writer = new FrameWriter(client);
    const arrived = async (count: number) => {
      const deadline = Date.now() + 5_000;
      while (got.length < count && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    };

    await Promise.all([1, 2, 3].map((id) => writer.write(encodeFrame({ t: 'x', id, from: 'a' }, Buffer.alloc(100, id)))));
    await arrived(3);
    assert.deepEqual(got.map((f) => (f.header as { id: number }).id), [1, 2, 3]);
    assert.equal(handleWrites.length, 1, 'three frames of one turn went out in one write');

    // Shards: Node's TLS copies a multi-buffer write whole, so a big payload must never share one.
    const big = 1 << 20;
    handleWrites.length = 0;
    const sizes = [big, 10, big, big, 10];
    await Promise.all(sizes.map((size, i) => writer.write(encodeFrame({ t: 'x', id: 4 + i, from: 'a' }, Buffer.alloc(size, i)))));
    await arrived(3 + sizes.length);
    assert.deepEqual(got.slice(3).map((f) => (f.header as { id: number }).id), [4, 5, 6, 7, 8]);
    assert.deepEqual(got.slice(3).map((f) => f.payload?.length), sizes);
    const alone = handleWrites.filter((w) => w.length === 1 && w[0] === big).length;
    assert.equal(alone, 3, `each 1 MiB payload went to the handle in a write of its own (writes: ${JSON.stringify(handleWrites)})`);
    assert.ok(handleWrites.every((w) => w.length === 1 || w.every((n) => n < big)), 'no big payload shared a writev');
  } finally {
    client.destroy();
    peer.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
