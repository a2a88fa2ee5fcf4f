import { freePorts } from '../src/config/free-ports.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor as waitUntil } from './support/cluster.js';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { CairnError, isCairnError } from '../src/errors.js';
import { MailboxClient, type MailboxClientOptions } from '../src/mailbox/client.js';
import { MailboxServer, type MailboxServerOptions, type MailboxLog } from '../src/mailbox/server.js';
import { FrameDecoder, encodeFrame, type Frame } from '../src/mailbox/frame.js';
import { tcpTransport, tlsPskTransport, type Transport } from '../src/mailbox/transport.js';
import { int, object, str } from '../src/validate.js';

const quiet: MailboxLog = () => {};
const parseEcho = object({ text: str({ max: 100 }) });
const parseNothing = (v: unknown): unknown => v;

/** Polls a condition every 2 ms until it holds, failing after the deadline. */
const waitFor = (cond: () => boolean, what: string, deadlineMs = 3_000): Promise<boolean> => waitUntil(what, cond, deadlineMs, 2);

/** A promise the test opens by hand, to hold handlers in flight. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<CairnError> {
  try {
    await p;
  } catch (err) {
    assert.ok(isCairnError(err), `expected a CairnError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

interface Pair {
  server: MailboxServer;
  client: MailboxClient;
  port: number;
  close(): Promise<void>;
}

async function start(
  setup: (s: MailboxServer) => void,
  opts: { server?: Partial<MailboxServerOptions>; client?: Partial<MailboxClientOptions>; transport?: Transport } = {},
): Promise<Pair> {
  const transport = opts.transport ?? tcpTransport();
  const server = new MailboxServer({ id: 'sp1', transport, log: quiet, ...opts.server });
  setup(server);
  const { port } = await server.listen(0);
  const client = new MailboxClient({ id: 'client1', address: `127.0.0.1:${port}`, transport, ...opts.client });
  return {
    server,
    client,
    port,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

function echoServer(s: MailboxServer): void {
  s.handle('echo', parseEcho, async (body, ctx) => {
    const result: { body: unknown; payload?: Uint8Array } = { body: { text: body.text, from: ctx.from } };
    if (ctx.payload) result.payload = ctx.payload;
    return result;
  });
}

/** Raw socket speaking frames by hand, for what MailboxClient would never send. */
/** Sends raw bytes; resolves with the frames answered once the peer closed, and fails if it does not close within waitFor's deadline. */
async function rawExchange(port: number, bytes: Buffer, opts: { end?: boolean } = {}): Promise<{ frames: Frame[]; closed: boolean }> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    for (let f = decoder.next(); f; f = decoder.next()) frames.push(f);
  });
  socket.on('error', () => {});
  const done = new Promise<void>((r) => socket.once('close', () => {
    closed = true;
    r();
  }));
  await new Promise<void>((r) => socket.once('connect', r));
  socket.write(bytes);
  if (opts.end ?? true) socket.end();
  await Promise.race([done, waitFor(() => closed, 'raw socket close')]);
  return { frames, closed };
}

for (const kind of ['tcp', 'tls-psk'] as const) {
  const transport = (): Transport => (kind === 'tcp' ? tcpTransport() : tlsPskTransport(Buffer.alloc(32, 1)));

  test(`${kind}: request/reply with body and a 1 MiB payload`, async () => {
    const pair = await start(echoServer, { transport: transport() });
    try {
      const small = await pair.client.request('echo', { text: 'hello' });
      assert.deepEqual(small.body, { text: 'hello', from: 'client1' });
      assert.equal(small.payload, undefined);
      assert.ok(pair.client.connected);

      const payload = randomBytes(1024 * 1024);
      const big = await pair.client.request('echo', { text: 'big' }, payload);
      assert.deepEqual(Buffer.from(big.payload!), payload);

      const many = await Promise.all(Array.from({ length: 50 }, (_, i) => pair.client.request('echo', { text: `m${i}` })));
      many.forEach((r, i) => assert.deepEqual(r.body, { text: `m${i}`, from: 'client1' }));
    } finally {
      await pair.close();
    }
  });
}

test('error replies carry the code; other errors become a generic INTERNAL', async () => {
  const logged: string[] = [];
  const pair = await start(
    (s) => {
      echoServer(s);
      s.handle('missing', parseNothing, async () => {
        throw new CairnError('NOT_FOUND', 'no such shard');
      });
      s.handle('buggy', parseNothing, async () => {
        throw new TypeError('secret internal detail');
      });
    },
    { server: { log: (level, message) => logged.push(`${level}:${message}`) } },
  );
  try {
    const nf = await rejectsWith(pair.client.request('missing', {}), 'NOT_FOUND');
    assert.equal(nf.message, 'no such shard');
    const internal = await rejectsWith(pair.client.request('buggy', {}), 'INTERNAL');
    assert.doesNotMatch(internal.message, /secret/);
    assert.ok(logged.some((l) => l.startsWith('error:')), 'the detail is logged on the server');
    await rejectsWith(pair.client.request('echo', { text: 42 }), 'BAD_MESSAGE');
    await rejectsWith(pair.client.request('nope', {}), 'UNKNOWN_MESSAGE');
    // The connection carries on after error replies.
    assert.deepEqual((await pair.client.request('echo', { text: 'still here' })).body, { text: 'still here', from: 'client1' });
  } finally {
    await pair.close();
  }
});

test('one-way messages reach the handler and get no reply', async () => {
  const seen: number[] = [];
  const pair = await start((s) => {
    echoServer(s);
    s.handle('note', object({ n: int({ min: 0, max: 1000 }) }), async (body) => {
      seen.push(body.n);
    });
  });
  try {
    await pair.client.request('echo', { text: 'connect' });
    for (let n = 0; n < 10; n++) assert.equal(pair.client.send('note', { n }), true);
    await waitFor(() => seen.length === 10, 'ten one-way messages');
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

    // On the wire: a one-way frame followed by a request gets exactly one reply, the request's.
    const bytes = Buffer.concat([
      ...encodeFrame({ t: 'note', id: 0, from: 'raw', body: { n: 99 } }, undefined),
      ...encodeFrame({ t: 'echo', id: 5, from: 'raw', body: { text: 'r' } }, undefined),
    ]);
    const { frames } = await rawExchange(pair.port, bytes);
    assert.equal(frames.length, 1);
    assert.deepEqual(frames[0]!.header, { t: 'echo', id: 5, from: 'sp1', re: true, body: { text: 'r', from: 'raw' } });
    assert.ok(seen.includes(99));
  } finally {
    await pair.close();
  }
});

test('a slow handler times out; the late reply is ignored and the link stays usable', async () => {
  const hold = gate();
  let started = 0;
  const pair = await start((s) => {
    echoServer(s);
    s.handle('slow', parseNothing, async () => {
      started += 1;
      await hold.wait;
      return { body: 'late' };
    });
  });
  try {
    await rejectsWith(pair.client.request('slow', {}, undefined, { timeoutMs: 100 }), 'TIMEOUT');
    assert.equal(started, 1);
    hold.open();
    await waitFor(() => pair.server.stats.inFlight === 0, 'slow handler to finish');
    assert.deepEqual((await pair.client.request('echo', { text: 'after' })).body, { text: 'after', from: 'client1' });
  } finally {
    await pair.close();
  }
});

test('a down peer fails fast with UNAVAILABLE, and a restarted one is reached again', async () => {
  const port = (await freePorts(1, '127.0.0.1'))[0]!;

  const client = new MailboxClient({
    id: 'c',
    address: `127.0.0.1:${port}`,
    transport: tcpTransport(),
    requestTimeoutMs: 60_000, // a client that waited for it would answer TIMEOUT, a minute later
    reconnectBackoffMs: { min: 20, max: 40 },
  });
  try {
    await rejectsWith(client.request('echo', { text: 'x' }), 'UNAVAILABLE');
    await rejectsWith(client.request('echo', { text: 'x' }), 'UNAVAILABLE');
    assert.equal(client.send('echo', { text: 'x' }), false, 'one-way to a down peer is dropped');

    const server = new MailboxServer({ id: 'sp1', transport: tcpTransport(), log: quiet });
    echoServer(server);
    await server.listen(port);
    try {
      // Retry until the backoff (at most 40 ms here) lets a new connect through.
      let reply: unknown;
      const until = Date.now() + 3_000;
      while (reply === undefined && Date.now() < until) {
        reply = await client.request('echo', { text: 'back' }).then((r) => r.body, () => undefined);
        if (reply === undefined) await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(reply, { text: 'back', from: 'c' });
    } finally {
      await client.close();
      await server.close();
    }
  } finally {
    await client.close();
  }
});

test('losing the connection rejects pending requests with CONNECTION_CLOSED; close() is bounded', async () => {
  const hold = gate();
  const pair = await start(
    (s) => {
      s.handle('hang', parseNothing, async () => {
        await hold.wait;
      });
    },
    { server: { closeGraceMs: 100 } },
  );
  try {
    const outcome = rejectsWith(pair.client.request('hang', {}), 'CONNECTION_CLOSED');
    await waitFor(() => pair.server.stats.inFlight === 1, 'handler to start');
    await pair.server.close(); // returns although the handler never ends: close waits a bounded time
    await outcome;
    await waitFor(() => !pair.client.connected, 'client to see the close');
  } finally {
    hold.open();
    await pair.close();
  }
});

test('close() lets in-flight handlers finish and their replies go out', async () => {
  const hold = gate();
  const pair = await start((s) => {
    s.handle('work', parseNothing, async () => {
      await hold.wait;
      return { body: 'done' };
    });
  });
  try {
    const pending = pair.client.request('work', {});
    await waitFor(() => pair.server.stats.inFlight === 1, 'handler to start');
    const closing = pair.server.close();
    hold.open();
    assert.equal((await pending).body, 'done');
    await closing;
  } finally {
    await pair.close();
  }
});

/** A 'work' handler that waits on `hold`, counting how many run at once. */
function heldWork(hold: ReturnType<typeof gate>) {
  const load = {
    running: 0,
    peak: 0,
    register(s: MailboxServer) {
      s.handle('work', parseNothing, async () => {
        load.running += 1;
        load.peak = Math.max(load.peak, load.running);
        await hold.wait;
        load.running -= 1;
        return { body: 'ok' };
      });
    },
  };
  return load;
}

test('client bounds: maxInFlight, then maxQueued, then OVERLOADED', async () => {
  const hold = gate();
  const load = heldWork(hold);
  const pair = await start(
    (s) => load.register(s),
    { client: { maxInFlight: 2, maxQueued: 3 } },
  );
  try {
    const accepted = Array.from({ length: 5 }, () => pair.client.request('work', {}));
    await rejectsWith(pair.client.request('work', {}), 'OVERLOADED');
    await waitFor(() => load.running === 2, 'two in flight');
    hold.open();
    const replies = await Promise.all(accepted);
    assert.deepEqual(replies.map((r) => r.body), ['ok', 'ok', 'ok', 'ok', 'ok'], 'every accepted request is answered by its handler');
    assert.equal(load.peak, 2);
  } finally {
    await pair.close();
  }
});

test('server bounds in-flight handlers per connection by pausing the socket', async () => {
  const hold = gate();
  const load = heldWork(hold);
  const pair = await start(
    (s) => load.register(s),
    { server: { maxInFlightPerConnection: 3 }, client: { maxInFlight: 20 } },
  );
  try {
    const all = Array.from({ length: 20 }, () => pair.client.request('work', {}));
    await waitFor(() => load.running === 3, 'three handlers running');
    // The other 17 requests are in the socket or the server's pending chunk, not dispatched.
    assert.equal(pair.server.stats.framesReceived, 3);
    hold.open();
    await Promise.all(all);
    assert.equal(load.peak, 3);
    assert.equal(pair.server.stats.framesReceived, 20);
  } finally {
    await pair.close();
  }
});

test('connections past maxConnections are closed at once', async () => {
  const pair = await start(echoServer, { server: { maxConnections: 1 } });
  try {
    await pair.client.request('echo', { text: 'first' });
    const extra = await rawExchange(pair.port, Buffer.concat(encodeFrame({ t: 'echo', id: 1, from: 'x', body: { text: 'y' } }, undefined)), { end: false });
    assert.equal(extra.frames.length, 0);
    await waitFor(() => pair.server.stats.rejectedConnections === 1, 'the refusal counted');
    assert.deepEqual((await pair.client.request('echo', { text: 'second' })).body, { text: 'second', from: 'client1' });
  } finally {
    await pair.close();
  }
});

test('a bad frame gets an error reply and only that connection is closed', async () => {
  const pair = await start(echoServer);
  try {
    await pair.client.request('echo', { text: 'before' });
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(0x7fff_ffff, 0);
    const oversize = await rawExchange(pair.port, huge, { end: false });
    assert.equal(oversize.frames.length, 1);
    assert.deepEqual((oversize.frames[0]!.header as { err: unknown }).err, {
      code: 'FRAME_TOO_LARGE',
      message: `frame of ${0x7fff_ffff + 4} bytes exceeds the limit of ${32 * 1024 * 1024} bytes`,
    });

    const badEnvelope = await rawExchange(pair.port, Buffer.concat(encodeFrame({ t: 7, id: 3 }, undefined)));
    assert.equal(badEnvelope.frames.length, 1);
    assert.equal((badEnvelope.frames[0]!.header as { id: number }).id, 3);
    assert.equal((badEnvelope.frames[0]!.header as { err: { code: string } }).err.code, 'BAD_MESSAGE');

    assert.equal(pair.server.stats.badFrames, 1);
    assert.ok(pair.client.connected, 'the good connection is untouched');
    assert.deepEqual((await pair.client.request('echo', { text: 'after' })).body, { text: 'after', from: 'client1' });
  } finally {
    await pair.close();
  }
});

test('a frame over the server limit closes the link; pending requests learn why', async () => {
  const pair = await start(echoServer, { server: { maxFrameBytes: 64 * 1024 } });
  try {
    const err = await rejectsWith(pair.client.request('echo', { text: 'big' }, new Uint8Array(100_000)), 'CONNECTION_CLOSED');
    assert.match(err.message, /FRAME_TOO_LARGE/);
    assert.deepEqual((await pair.client.request('echo', { text: 'small' })).body, { text: 'small', from: 'client1' });
  } finally {
    await pair.close();
  }
});

test('TLS-PSK: a peer with the wrong key, or without TLS, gets no frame parsed', async () => {
  let handled = 0;
  const pair = await start(
    (s) =>
      s.handle('echo', parseEcho, async (b) => {
        handled += 1;
        return { body: b };
      }),
    { transport: tlsPskTransport(Buffer.alloc(32, 1)) },
  );
  const intruder = new MailboxClient({ id: 'mallory', address: `127.0.0.1:${pair.port}`, transport: tlsPskTransport(Buffer.alloc(32, 2)) });
  try {
    await rejectsWith(intruder.request('echo', { text: 'let me in' }), 'UNAUTHENTICATED');
    await rejectsWith(intruder.request('echo', { text: 'again' }), 'UNAUTHENTICATED');
    const plain = await rawExchange(pair.port, Buffer.concat(encodeFrame({ t: 'echo', id: 1, from: 'x', body: { text: 'y' } }, undefined)), { end: false });
    assert.equal(plain.frames.length, 0);
    await waitFor(() => pair.server.stats.rejectedConnections >= 2, 'both refusals counted');
    assert.equal(pair.server.stats.framesReceived, 0);
    assert.equal(handled, 0);
    assert.deepEqual((await pair.client.request('echo', { text: 'member' })).body, { text: 'member' });
    assert.equal(handled, 1);
  } finally {
    await intruder.close();
    await pair.close();
  }
  assert.throws(() => tlsPskTransport(Buffer.alloc(16)), (e: unknown) => isCairnError(e, 'BAD_CONFIG'));
});

test('TLS-PSK: a stranger whose bytes begin a long TLS record is dropped when the handshake times out', async () => {
  let rejected = 0;
  const pair = await start((s) => s, { transport: tlsPskTransport(Buffer.alloc(32, 1), { handshakeTimeoutMs: 300 }) });
  try {
    // A handshake record header announcing 16 KiB, or half a header: the TLS layer waits for more.
    for (const bytes of [Buffer.concat([Buffer.from('1603034000', 'hex'), randomBytes(3000)]), Buffer.from('1603', 'hex')]) {
      const plain = await rawExchange(pair.port, bytes, { end: false });
      rejected += 1;
    }
    await waitFor(() => pair.server.stats.rejectedConnections >= rejected, 'both refusals counted');
  } finally {
    await pair.close();
  }
});

test('requests after close() fail with CONNECTION_CLOSED, one-way sends are dropped', async () => {
  const pair = await start(echoServer);
  await pair.client.request('echo', { text: 'x' });
  await pair.client.close();
  await rejectsWith(pair.client.request('echo', { text: 'x' }), 'CONNECTION_CLOSED');
  assert.equal(pair.client.send('echo', { text: 'x' }), false);
  assert.equal(pair.client.connected, false);
  await pair.server.close();
  await waitFor(() => pair.server.stats.connections === 0, 'server connections gone');
});

test('a request given up on mid-frame never sends its payload later: the link is dropped, not put out of step', async () => {
  // A handler that stalls (a slow disk) while puts queue behind it and time out; their callers
  // then reuse the payloads' memory (here: moved to another thread, as the codec pool does).
  const SIZE = 2 * 1024 * 1024;
  let stall = true;
  const seen: { i: number; intact: boolean }[] = [];
  const server = new MailboxServer({ id: 'sp', transport: tcpTransport(), maxInFlightPerConnection: 1, log: quiet });
  server.handle('put', (b) => b as { i: number }, async (b, ctx) => {
    seen.push({ i: b.i, intact: ctx.payload?.length === SIZE && ctx.payload.every((x) => x === b.i + 1) });
    for (let waits = 0; stall && waits < 600; waits++) await new Promise((r) => setTimeout(r, 50));
    return { body: 'stored' };
  });
  server.handle('ping', parseNothing, async () => ({ body: 'pong' }));
  const { port } = await server.listen(0);
  const client = new MailboxClient({ id: 'c', address: `127.0.0.1:${port}`, transport: tcpTransport() });
  try {
    const payloads = Array.from({ length: 6 }, (_, i) => new Uint8Array(new ArrayBuffer(SIZE)).fill(i + 1));
    const outcomes = await Promise.all(payloads.map((p, i) => client.request('put', { i }, p, { timeoutMs: 500 }).then(() => 'ok', (e: CairnError) => e.code)));
    assert.ok(outcomes.every((o) => o === 'TIMEOUT' || o === 'CONNECTION_CLOSED'), outcomes.join(','));
    for (const p of payloads) structuredClone(p.buffer, { transfer: [p.buffer] });
    stall = false;
    // The link works again (a new connection), and every put the server read was whole.
    for (let j = 0; j < 3; j++) assert.equal((await client.request('ping', {}, undefined, { timeoutMs: 5_000 })).body, 'pong');
    assert.ok(seen.every((s) => s.intact), JSON.stringify(seen));
    assert.equal(server.stats.badFrames, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a peer that reads none of its replies gets no reply made while the last waits, and is dropped once stalled', async () => {
  let handled = 0;
  const reply = Buffer.alloc(512 * 1024, 1);
  const pair = await start(
    (s) =>
      s.handle('big', (b) => b, async () => {
        handled += 1;
        return { body: {}, payload: reply };
      }),
    { server: { stalledMs: 300 } },
  );
  try {
    assert.equal((await pair.client.request('big', {})).payload?.byteLength, reply.length);
    handled = 0;
    const socket = net.connect({ port: pair.port, host: '127.0.0.1' });
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', r));
    socket.pause(); // reads nothing, ever (so it never sees the server close it either)
    await waitFor(() => pair.server.stats.connections === 2, 'both connected');
    // 32 MiB of replies asked for at once: all of it held for a peer that never takes it, before.
    socket.write(Buffer.concat(Array.from({ length: 64 }, (_, i) => Buffer.concat(encodeFrame({ t: 'big', id: i + 1, from: 'x', body: {} }, undefined)))));
    // Dropped within the stall time, plus what the queued bytes take at the slowest rate waited for.
    await waitFor(() => handled > 0 && pair.server.stats.connections === 1, 'the stalled peer dropped', 15_000);
    assert.ok(handled < 64, `replies made for a peer not reading: ${handled} of 64`);
    socket.destroy();
    // Everyone else is served as before.
    assert.equal((await pair.client.request('big', {})).payload?.byteLength, reply.length);
  } finally {
    await pair.close();
  }
});

/** Peers that pipeline `requests` bulk requests each and read nothing, ever. */
async function stalledPeers(port: number, peers: number, requests: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let p = 0; p < peers; p++) {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.on('error', () => {});
    sockets.push(socket);
    await new Promise<void>((r) => socket.once('connect', r));
    socket.pause();
    socket.write(Buffer.concat(Array.from({ length: requests }, (_, i) => Buffer.concat(encodeFrame({ t: 'big', id: i + 1, from: 'x', body: {} }, undefined)))));
  }
  return sockets;
}

test('bulk replies made for peers that read nothing stay within the server-wide budget, and others are still served', async () => {
  const MiB = 1024 * 1024;
  let handled = 0;
  let most = 0; // bulk reply bytes the server held, seen each time it made one
  const reply = Buffer.alloc(MiB / 2, 2);
  const pair = await start(
    (s) =>
      s.handle(
        'big',
        (b) => b,
        async () => {
          handled += 1;
          most = Math.max(most, s.stats.replyBytes);
          return { body: {}, payload: reply };
        },
        { replyBytes: () => reply.length },
      ),
    // 4 MiB over all connections, 1 MiB a connection; no stall deadline or wait limit within the test.
    { server: { maxReplyBytes: 4 * MiB, stalledMs: 60_000, replyWaitMs: 60_000 } },
  );
  // 100 MiB of replies asked for at once, by each of three peers.
  const stalled = await stalledPeers(pair.port, 3, 200);
  try {
    await waitFor(() => pair.server.stats.replyWaiting >= 3, 'requests of the stalled peers wait for room', 10_000);
    // Someone who reads is served while they stall.
    assert.equal((await pair.client.request('big', {}, undefined, { timeoutMs: 5_000 })).payload?.byteLength, reply.length);
    // Three quarters for the stalled peers, and the reader's reply (each reserved when made).
    assert.ok(most <= 3 * MiB + reply.length, `bulk replies held at once: ${most} bytes`);
    assert.ok(handled < 3 * 200, `replies made for peers reading none: ${handled} of ${3 * 200}`);
    for (const socket of stalled) socket.destroy();
    // Their connections gone, what they held and what they waited for is given back.
    await waitFor(() => pair.server.stats.replyBytes === 0 && pair.server.stats.replyWaiting === 0, 'the budget given back', 5_000);
  } finally {
    for (const socket of stalled) socket.destroy();
    await pair.close();
  }
});

test('when stalled peers hold the whole reply budget, bulk requests are refused OVERLOADED in time and the rest of a connection moves on', async () => {
  const MiB = 1024 * 1024;
  const reply = Buffer.alloc(MiB / 2, 2);
  let notes = 0;
  const pair = await start(
    (s) =>
      s
        .handle('big', (b) => b, async () => ({ body: {}, payload: reply }), { replyBytes: () => reply.length })
        .handle('note', (b) => b, async () => void (notes += 1))
        .handle('ping', (b) => b, async () => ({ body: 'pong' })),
    // Stalled peers are never dropped within the test: only the wait limit frees anyone.
    { server: { maxReplyBytes: 4 * MiB, stalledMs: 60_000, replyWaitMs: 300, maxInFlightPerConnection: 8 } },
  );
  // Four connections (one peer may open them all) take a quarter each: the whole budget.
  const stalled = await stalledPeers(pair.port, 4, 200);
  try {
    await waitFor(() => pair.server.stats.replyBytes === 4 * MiB, 'the stalled peers hold the whole budget', 10_000);
    // A healthy peer fills its connection with bulk requests, then sends a one-way message and a ping.
    const bulk = Array.from({ length: 8 }, () => pair.client.request('big', {}, undefined, { timeoutMs: 10_000 }).then(() => 'ok', (err: unknown) => (isCairnError(err) ? err.code : String(err))));
    pair.client.send('note', {});
    assert.equal((await pair.client.request('ping', {}, undefined, { timeoutMs: 5_000 })).body, 'pong', 'answered while the bulk requests wait');
    assert.equal(notes, 1, 'the one-way message sent before the ping was handled');
    // None gets room while the stalled peers hold it; each is told so instead of waiting 60 s.
    assert.deepEqual(await Promise.all(bulk), Array.from({ length: 8 }, () => 'OVERLOADED'));
    for (const socket of stalled) socket.destroy();
    await waitFor(() => pair.server.stats.replyBytes === 0 && pair.server.stats.replyWaiting === 0, 'the budget given back', 5_000);
    assert.equal((await pair.client.request('big', {}, undefined, { timeoutMs: 5_000 })).payload?.byteLength, reply.length);
  } finally {
    for (const socket of stalled) socket.destroy();
    await pair.close();
  }
});

test('a request waiting for reply room is still answered when its peer has half-closed', async () => {
  const MiB = 1024 * 1024;
  const reply = Buffer.alloc(MiB / 2, 3);
  const pair = await start((s) => s.handle('big', (b) => b, async () => ({ body: {}, payload: reply }), { replyBytes: () => reply.length }), {
    server: { maxReplyBytes: 4 * MiB, stalledMs: 60_000, replyWaitMs: 60_000 },
  });
  const stalled = await stalledPeers(pair.port, 4, 200);
  const asker = new net.Socket();
  try {
    await waitFor(() => pair.server.stats.replyBytes === 4 * MiB, 'the stalled peers hold the whole budget', 10_000);
    await new Promise<void>((r) => asker.connect({ port: pair.port, host: '127.0.0.1' }, r));
    const chunks: Buffer[] = [];
    asker.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((r) => asker.once('end', r));
    const waitingBefore = pair.server.stats.replyWaiting;
    asker.end(Buffer.concat(encodeFrame({ t: 'big', id: 7, from: 'x', body: {} }, undefined))); // one request, then FIN
    await waitFor(() => pair.server.stats.replyWaiting > waitingBefore, 'its request waits for room', 5_000);
    for (const socket of stalled) socket.destroy(); // room again
    await ended;
    const decoder = new FrameDecoder(64 * MiB);
    decoder.push(Buffer.concat(chunks));
    const frame = decoder.next();
    assert.ok(frame, 'a reply came before the server closed its side');
    assert.equal((frame.header as { id?: number }).id, 7);
    assert.equal(frame.payload?.byteLength, reply.length);
  } finally {
    asker.destroy();
    for (const socket of stalled) socket.destroy();
    await pair.close();
  }
});

test('a peer that sends part of a frame and then nothing is dropped once stalled; an idle one stays', async () => {
  const pair = await start(echoServer, { server: { stalledMs: 300 } });
  try {
    // Opened first, so it has been idle longer than the stalled one when that one goes.
    const idle = net.connect({ port: pair.port, host: '127.0.0.1' });
    await new Promise<void>((r) => idle.once('connect', r));
    const socket = net.connect({ port: pair.port, host: '127.0.0.1' });
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', r));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    const prefix = Buffer.alloc(8);
    prefix.writeUInt32BE(4 + 1024 * 1024, 0); // a 1 MiB frame…
    prefix.writeUInt32BE(16, 4);
    socket.write(Buffer.concat([prefix, Buffer.alloc(1000)])); // …of which 1 KB ever comes
    await closed;
    assert.equal(idle.destroyed, false, 'a connection holding no part of a frame is not stalled');
    assert.deepEqual((await pair.client.request('echo', { text: 'fine' })).body, { text: 'fine', from: 'client1' });
    idle.destroy();
  } finally {
    await pair.close();
  }
});
