/**
 * Lanes beside TLS-PSK mailbox connections (src/mailbox/lane.ts), on real sockets: big payloads
 * take them, everything else stays on TLS, and a lane nobody was given, or one that lies, costs
 * only its own requests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net, { type Socket } from 'node:net';
import { waitFor } from './support/cluster.js';
import { freePorts } from '../src/config/free-ports.js';
import { isCairnError } from '../src/errors.js';
import { MailboxClient } from '../src/mailbox/client.js';
import { FrameDecoder, encodeFrame } from '../src/mailbox/frame.js';
import { LANE_ACK, LANE_OPEN_TYPE, parseLaneOffer } from '../src/mailbox/lane.js';
import { MailboxServer, type HandlerContext, type MailboxServerOptions } from '../src/mailbox/server.js';
import { tlsPskTransport } from '../src/mailbox/transport.js';

const KEY = Buffer.alloc(32, 7);
const KiB = 1024;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const LANES: ReadonlySet<string> = new Set(['digest', 'put']);

/** A TLS-PSK server whose one handler says how many payload bytes it got and their hash. */
async function digestServer(opts: Partial<MailboxServerOptions> = {}): Promise<{ server: MailboxServer; client: MailboxClient; close: () => Promise<void> }> {
  const server = new MailboxServer({ id: 'sp1', transport: tlsPskTransport(KEY), log: () => {}, ...opts });
  const digest = async (_b: unknown, ctx: HandlerContext) => ({ body: { bytes: ctx.payload?.byteLength ?? 0, sha: ctx.payload ? sha(ctx.payload) : null } });
  server.handle('digest', (b) => b, digest, { lane: true });
  server.handle('digest.tls', (b) => b, digest); // takes no lane
  const { port } = await server.listen(0);
  const client = new MailboxClient({ id: 'c1', address: `127.0.0.1:${port}`, transport: tlsPskTransport(KEY), laneTypes: LANES });
  return {
    server,
    client,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}

async function digestOf(client: MailboxClient, payload: Uint8Array): Promise<void> {
  const reply = await client.request('digest', {}, payload);
  assert.deepEqual(reply.body, { bytes: payload.byteLength, sha: sha(payload) });
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

test('payloads of 64 KiB and more take the lane once it is open; smaller ones stay on TLS', async () => {
  const { server, client, close } = await digestServer();
  try {
    await digestOf(client, randomBytes(KiB));
    assert.equal(server.stats.lanePayloads, 0);
    // The first big payload goes on TLS and asks for the lane; later ones take it once it is up.
    await waitFor('a payload to come on the lane', async () => {
      await digestOf(client, randomBytes(256 * KiB));
      return server.stats.lanePayloads > 0;
    }, 5_000, 1);
    const before = server.stats.lanePayloads;
    await Promise.all(Array.from({ length: 12 }, (_, i) => digestOf(client, randomBytes(64 * KiB + i * 97 * KiB))));
    assert.equal(server.stats.lanePayloads, before + 12, 'every big payload took the lane');
    await digestOf(client, randomBytes(64 * KiB - 1));
    assert.equal(server.stats.lanePayloads, before + 12, 'a payload under 64 KiB did not');
    const big = randomBytes(256 * KiB);
    assert.deepEqual((await client.request('digest.tls', {}, big)).body, { bytes: big.length, sha: sha(big) });
    assert.equal(server.stats.lanePayloads, before + 12, 'nor one of a type the client sends on TLS');
  } finally {
    await close();
  }
});

test('lanes on a port of its own choosing: opened with the mailbox, offered, used; a taken one stops the start cleanly', async () => {
  const [lanePort] = await freePorts(1, '127.0.0.1');
  const { server, client, close } = await digestServer({ lanePort: lanePort! });
  try {
    // Listening before any lane is asked for: a firewall rule for it can be tested at once.
    const probe = net.connect(lanePort!, '127.0.0.1');
    await new Promise<void>((resolve, reject) => probe.once('connect', resolve).once('error', reject));
    probe.destroy();
    const offer = parseLaneOffer((await client.request(LANE_OPEN_TYPE, {})).body);
    assert.equal(offer?.port, lanePort);
    await waitFor('a payload to come on the lane', async () => {
      await digestOf(client, randomBytes(256 * KiB));
      return server.stats.lanePayloads > 0;
    }, 5_000, 1);
  } finally {
    await close();
  }
  // The same port taken (by a listener of someone else's): the mailbox does not start, and lets its own port go.
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(lanePort!, '127.0.0.1', resolve));
  const server2 = new MailboxServer({ id: 'sp1', transport: tlsPskTransport(KEY), log: () => {}, lanePort: lanePort! });
  try {
    const [mailboxPort] = await freePorts(1, '127.0.0.1');
    await assert.rejects(server2.listen(mailboxPort!), (err: unknown) => isCairnError(err) && err.code === 'UNAVAILABLE' && err.message.includes(`127.0.0.1:${lanePort}`));
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => again.once('error', reject).listen(mailboxPort!, '127.0.0.1', resolve));
    again.close();
  } finally {
    taken.close();
    await server2.close();
  }
});

test('a server that takes no lanes gets every payload on TLS', async () => {
  const { server, client, close } = await digestServer({ lanes: false });
  try {
    for (let i = 0; i < 5; i++) await digestOf(client, randomBytes(300 * KiB));
    await assert.rejects(client.request(LANE_OPEN_TYPE, {}), (err: unknown) => isCairnError(err, 'UNKNOWN_MESSAGE'));
    assert.equal(server.stats.lanePayloads, 0);
  } finally {
    await close();
  }
});

test('a lane with a wrong token is dropped, and a token is good once', async () => {
  const { server, client, close } = await digestServer();
  try {
    const offer = parseLaneOffer((await client.request(LANE_OPEN_TYPE, {})).body);
    assert.ok(offer);
    const stranger = net.connect({ host: '127.0.0.1', port: offer.port });
    stranger.write(randomBytes(32));
    await closed(stranger);
    const rightful = net.connect({ host: '127.0.0.1', port: offer.port });
    rightful.write(Buffer.from(offer.token, 'hex'));
    const copycat = net.connect({ host: '127.0.0.1', port: offer.port });
    copycat.write(Buffer.from(offer.token, 'hex'));
    await closed(copycat);
    assert.equal(rightful.destroyed, false, 'the first lane with the token is kept');
    assert.equal(server.stats.rejectedLanes, 2);
    rightful.destroy();
    await digestOf(client, randomBytes(KiB)); // the server carries on
  } finally {
    await close();
  }
});

test('a lane payload of the wrong length, or a broken lane, fails its own request and nothing else', async () => {
  const { server, client, close } = await digestServer();
  const tls = await tlsPskTransport(KEY).connect('127.0.0.1', Number(client.address.split(':')[1]), 2_000);
  const replies = new Map<number, { body?: unknown; err?: { code: string; message: string } }>();
  const decoder = new FrameDecoder();
  tls.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    for (let f = decoder.next(); f; f = decoder.next()) {
      const h = f.header as { id: number; body?: unknown; err?: { code: string; message: string } };
      replies.set(h.id, h);
    }
  });
  const reply = (id: number) => waitFor(`the reply to ${id}`, () => replies.get(id), 5_000, 5);
  const ask = (header: object) => tls.write(Buffer.concat(encodeFrame({ from: 'raw', ...header }, undefined)));
  try {
    ask({ t: LANE_OPEN_TYPE, id: 1, body: {} });
    const offer = parseLaneOffer((await reply(1)).body);
    assert.ok(offer);
    const lane = net.connect({ host: '127.0.0.1', port: offer.port });
    lane.write(Buffer.from(offer.token, 'hex'));
    const ack = await new Promise<Buffer>((resolve) => lane.once('data', resolve)); // requests go on the lane only once it is taken
    assert.deepEqual([...ack], [LANE_ACK]);
    const onLane = (id: unknown, payload: Uint8Array) => lane.write(Buffer.concat(encodeFrame({ i: id }, payload)));

    ask({ t: 'digest', id: 2, body: {}, b: 100, l: offer.lane });
    onLane(2, randomBytes(50));
    assert.match((await reply(2)).err?.message ?? '', /announced 100/);

    const good = randomBytes(100);
    ask({ t: 'digest', id: 3, body: {}, b: 100, l: offer.lane });
    onLane(3, good);
    assert.deepEqual((await reply(3)).body, { bytes: 100, sha: sha(good) });

    // Requests refused before their handler (unknown type) still take their payloads off the lane:
    // more of them than a connection may have unclaimed, and the lane still carries the next one.
    for (let id = 10; id < 50; id++) {
      ask({ t: 'no.such.type', id, body: {}, b: 70 * KiB, l: offer.lane });
      onLane(id, randomBytes(70 * KiB));
    }
    for (let id = 10; id < 50; id++) assert.equal((await reply(id)).err?.code, 'UNKNOWN_MESSAGE');
    const after = randomBytes(200 * KiB);
    ask({ t: 'digest', id: 50, body: {}, b: after.length, l: offer.lane });
    onLane(50, after);
    assert.deepEqual((await reply(50)).body, { bytes: after.length, sha: sha(after) });

    // Nor do requests refused before they are read (a reply sent as a request), and a route that
    // takes no lane refuses a payload from one.
    for (let id = 60; id < 80; id++) {
      ask({ t: 'digest', id, body: {}, b: 70 * KiB, re: true, l: offer.lane });
      onLane(id, randomBytes(70 * KiB));
    }
    ask({ t: 'digest.tls', id: 80, body: {}, b: 70 * KiB, l: offer.lane });
    onLane(80, randomBytes(70 * KiB));
    assert.match((await reply(80)).err?.message ?? '', /takes no payload from a lane/);
    ask({ t: 'digest', id: 81, body: {}, b: after.length, l: offer.lane });
    onLane(81, after);
    assert.deepEqual((await reply(81)).body, { bytes: after.length, sha: sha(after) });

    ask({ t: 'digest', id: 4, body: {}, b: 10, l: offer.lane });
    onLane('four', randomBytes(10)); // not a request id: the lane is dropped
    assert.equal((await reply(4)).err?.code, 'CONNECTION_CLOSED');
    await closed(lane);

    await digestOf(client, randomBytes(KiB)); // other connections carry on
    assert.equal(server.stats.lanePayloads, 44, 'every payload of the right length was taken');
  } finally {
    tls.destroy();
    await close();
  }
});

test('a request given up on while its payload is in the lane drops the lane, and nothing torn is read', async () => {
  // As the TLS test in mailbox.test.ts, on a lane: puts stall behind a slow handler, time out, and
  // their callers reuse the payloads' memory (moved to another thread, as the codec pool does).
  // Ten 4 MiB payloads: more than the sockets' kernel buffers hold, so one is mid-write when all time out.
  const SIZE = 4 * 1024 * KiB;
  let stall = false;
  const seen: { i: number; intact: boolean }[] = [];
  const server = new MailboxServer({ id: 'sp', transport: tlsPskTransport(KEY), maxInFlightPerConnection: 1, log: () => {} });
  server.handle('put', (b) => b as { i: number }, async (b, ctx) => {
    seen.push({ i: b.i, intact: ctx.payload?.length === SIZE && ctx.payload.every((x) => x === (b.i % 200) + 1) });
    for (let waits = 0; stall && waits < 600; waits++) await new Promise((r) => setTimeout(r, 50));
    return { body: 'stored' };
  }, { lane: true });
  const { port } = await server.listen(0);
  const client = new MailboxClient({ id: 'c', address: `127.0.0.1:${port}`, transport: tlsPskTransport(KEY), laneTypes: LANES });
  const put = (i: number, timeoutMs = 5_000) => client.request('put', { i }, new Uint8Array(new ArrayBuffer(SIZE)).fill((i % 200) + 1), { timeoutMs });
  try {
    let i = 100;
    await waitFor('the lane to open', async () => (await put(i++)) && server.stats.lanePayloads > 0, 5_000, 1);
    stall = true;
    const payloads = Array.from({ length: 10 }, (_, j) => new Uint8Array(new ArrayBuffer(SIZE)).fill(j + 1));
    const outcomes = await Promise.all(payloads.map((p, j) => client.request('put', { i: j }, p, { timeoutMs: 500 }).then(() => 'ok', (e: { code: string }) => e.code)));
    assert.ok(outcomes.every((o) => o === 'TIMEOUT' || o === 'CONNECTION_CLOSED'), outcomes.join(','));
    for (const p of payloads) structuredClone(p.buffer, { transfer: [p.buffer] });
    stall = false;
    for (let j = 0; j < 3; j++) assert.equal((await put(150 + j)).body, 'stored');
    assert.ok(seen.length > 3 && seen.every((s) => s.intact), JSON.stringify(seen));
    assert.equal(server.stats.badFrames, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a lane nothing acknowledges is never used: payloads go on TLS', async () => {
  // The offer points at a port where something takes connections and says nothing (another
  // service, a middlebox): without the SP's ack the client never sends a payload there.
  let heard = 0;
  const silent = net.createServer((socket) => {
    socket.on('data', (chunk: Buffer) => (heard += chunk.length));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { server, client, close } = await digestServer({ lanes: false });
  server.handle(LANE_OPEN_TYPE, (b) => b, async () => ({ body: { port: (silent.address() as net.AddressInfo).port, token: 'ab'.repeat(32), lane: 1 } }));
  try {
    await digestOf(client, randomBytes(256 * KiB)); // asks for the lane
    await waitFor('the client to show its token on the lane', () => heard >= 32, 5_000, 5);
    for (let i = 0; i < 6; i++) await digestOf(client, randomBytes(256 * KiB));
    assert.equal(heard, 32, 'nothing but the token went there');
  } finally {
    await close();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

test('a request given up on after its header went out frees its SP at once, and its lane is replaced', async () => {
  // The header (with b) is on TLS; the payload waits behind a big one on the lane, and the call
  // times out before it is sent: the client drops the lane instead of leaving the SP to wait 30 s.
  const server = new MailboxServer({ id: 'sp', transport: tlsPskTransport(KEY), maxInFlightPerConnection: 4, log: () => {} });
  server.handle('put', (b) => b, async () => ({ body: 'stored' }), { lane: true });
  server.handle('ping', (b) => b, async () => ({ body: 'pong' }));
  const { port } = await server.listen(0);
  const client = new MailboxClient({ id: 'c', address: `127.0.0.1:${port}`, transport: tlsPskTransport(KEY), laneTypes: LANES });
  try {
    await waitFor('the lane to open', async () => (await client.request('put', {}, randomBytes(128 * KiB))) && server.stats.lanePayloads > 0, 5_000, 1);
    const big = client.request('put', {}, new Uint8Array(24 * 1024 * KiB), { timeoutMs: 20_000 }).then(() => 'ok', (e: { code: string }) => e.code);
    const quick = await Promise.all(Array.from({ length: 4 }, () => client.request('put', {}, randomBytes(256 * KiB), { timeoutMs: 3 }).then(() => 'ok', (e: { code: string }) => e.code)));
    assert.ok(quick.every((o) => o === 'TIMEOUT' || o === 'CONNECTION_CLOSED' || o === 'ok'), quick.join(','));
    await big;
    await waitFor('the SP to hold no request', () => server.stats.inFlight === 0, 5_000, 10);
    assert.equal((await client.request('ping', {}, undefined, { timeoutMs: 2_000 })).body, 'pong');
    // The dropped lane is replaced a few seconds later on the same connection.
    const before = server.stats.lanePayloads;
    await waitFor('a new lane to carry payloads', async () => (await client.request('put', {}, randomBytes(128 * KiB))) && server.stats.lanePayloads > before, 15_000, 100);
  } finally {
    await client.close();
    await server.close();
  }
});
