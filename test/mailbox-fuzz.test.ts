/**
 * Hostile input against a live mailbox server: thousands of frames with bad bodies, bad envelopes,
 * huge or inconsistent lengths, cut-off frames, nesting bombs and random bytes. The server must
 * answer what deserves an answer, close what is out of sync, and keep serving a real client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor as waitUntil } from './support/cluster.js';
import net from 'node:net';
import { MailboxClient } from '../src/mailbox/client.js';
import { parseEnvelopeHeader, salvageId } from '../src/mailbox/envelope.js';
import { FrameDecoder, encodeFrame, type Frame } from '../src/mailbox/frame.js';
import { MailboxServer } from '../src/mailbox/server.js';
import { tcpTransport } from '../src/mailbox/transport.js';
import { object, str } from '../src/validate.js';

const SEED = 0xc0ffee;
const MAX_FRAME = 64 * 1024;
const parseEcho = object({ text: str({ max: 100 }) });

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Polls a condition every 2 ms until it holds, failing after the deadline. */
const waitFor = (cond: () => boolean, what: string, deadlineMs = 5_000): Promise<boolean> => waitUntil(what, cond, deadlineMs, 2);

/** Writes bytes on a fresh connection and collects the reply frames until the server closes it. */
async function exchange(port: number, bytes: Buffer, end: boolean): Promise<{ frames: Frame[]; decodeError: unknown }> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let decodeError: unknown = null;
  socket.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk);
      for (let f = decoder.next(); f; f = decoder.next()) frames.push(f);
    } catch (err) {
      decodeError = err;
    }
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server kept a fuzz connection open')), 5_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.write(bytes);
  if (end) socket.end();
  await closed;
  return { frames, decodeError };
}

function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 8 : 13));
  switch (pick) {
    case 0: return Math.floor(r() * 2 ** 40) - 2 ** 39;
    case 1: return r() * 1e6;
    case 2: return 'x'.repeat(Math.floor(r() * 300));
    case 3: return r() < 0.5;
    case 4: return null;
    case 5: return new Uint8Array(Math.floor(r() * 50));
    case 6: return [new Date(0), new Set([1]), /a+b/, new Error('e'), 2n ** 62n, -1.5, NaN][Math.floor(r() * 7)];
    case 7: return undefined;
    case 8: return Array.from({ length: Math.floor(r() * 5) }, () => randomValue(r, depth + 1));
    case 9: return { text: randomValue(r, depth + 1) };
    case 10: return { text: 'ok', extra: randomValue(r, depth + 1) };
    case 11: return new Map<unknown, unknown>([[1, 'one'], ['text', 'map']]);
    default: return JSON.parse('{"__proto__": {"polluted": true}, "text": "proto"}') as unknown;
  }
}

/** Envelope-level fuzz: the frame boundary stays intact, so the connection must stay up. */
function randomEnvelope(r: () => number, id: number): unknown {
  const base: Record<string, unknown> = { t: 'echo', id, from: 'fuzz', body: randomValue(r) };
  switch (Math.floor(r() * 12)) {
    case 0: return { ...base, t: r() < 0.5 ? 42 : 'nope.' + id };
    case 1: return { ...base, id: [-1, 1.5, 2 ** 60, '7', null][Math.floor(r() * 5)] };
    case 2: return { ...base, from: 'f'.repeat(257) };
    case 3: return { ...base, re: true };
    case 4: return { ...base, err: { code: 1 } };
    case 5: return [base];
    case 6: return 'just a string';
    case 7: return { ...base, id: 0 }; // one-way with a random body: never answered
    case 8: return { ...base, t: '' };
    default: return base;
  }
}

/** What the server must answer to one decoded header: null = nothing, else the id and error code (null = success). */
function expected(header: unknown): { id: number; code: string | null } | null {
  let env;
  try {
    env = parseEnvelopeHeader(header);
  } catch {
    return { id: salvageId(header), code: 'BAD_MESSAGE' };
  }
  if (env.re) return { id: salvageId(header), code: 'BAD_MESSAGE' };
  if (env.id === 0) return null;
  if (env.t !== 'echo') return { id: env.id, code: 'UNKNOWN_MESSAGE' };
  try {
    parseEcho(env.body);
    return { id: env.id, code: null };
  } catch {
    return { id: env.id, code: 'BAD_MESSAGE' };
  }
}

/** Frames that break the stream: each one on its own connection, which the server must close. */
function breakingCase(r: () => number, i: number): { bytes: Buffer; end: boolean; code: string | null } {
  const valid = Buffer.concat(encodeFrame({ t: 'echo', id: i + 1, from: 'fuzz', body: { text: 'v' } }, Buffer.alloc(20, 7)));
  const prefix = (total: number, headerLength: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(total, 0);
    b.writeUInt32BE(headerLength, 4);
    return b;
  };
  switch (i % 8) {
    case 0: // huge length: refused before allocation, connection closed by the server itself
      return { bytes: prefix(MAX_FRAME + Math.floor(r() * 2 ** 31), 1), end: false, code: 'FRAME_TOO_LARGE' };
    case 1: // header longer than the frame
      return { bytes: Buffer.concat([prefix(10, 7 + Math.floor(r() * 1000)), Buffer.alloc(6)]), end: false, code: 'BAD_FRAME' };
    case 2: { // undecodable msgpack header
      const junk = Buffer.from([0xd9, 0xff, 0x61]);
      return { bytes: Buffer.concat([prefix(4 + junk.length, junk.length), junk]), end: false, code: 'BAD_FRAME' };
    }
    case 3: { // nesting bomb: deeper than any stack
      const depth = 60_000;
      const bomb = Buffer.alloc(depth, 0x91);
      return { bytes: Buffer.concat([prefix(4 + depth + 1, depth + 1), bomb, Buffer.from([0xc0])]), end: false, code: 'BAD_FRAME' };
    }
    case 4: { // array claiming 4 billion elements in a few bytes
      const claim = Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]);
      return { bytes: Buffer.concat([prefix(4 + claim.length, claim.length), claim]), end: false, code: 'BAD_FRAME' };
    }
    case 5: // cut-off frame, then the peer half-closes
      return { bytes: valid.subarray(0, 1 + Math.floor(r() * (valid.length - 1))), end: true, code: null };
    case 6: { // a valid frame with random bytes flipped
      const mutated = Buffer.from(valid);
      for (let k = 0; k < 1 + Math.floor(r() * 4); k++) mutated[Math.floor(r() * mutated.length)] = Math.floor(r() * 256);
      return { bytes: mutated, end: true, code: null };
    }
    default: { // random bytes
      const bytes = Buffer.alloc(1 + Math.floor(r() * 200));
      for (let k = 0; k < bytes.length; k++) bytes[k] = Math.floor(r() * 256);
      return { bytes, end: true, code: null };
    }
  }
}

test('thousands of hostile frames: the server answers, survives and keeps serving', async () => {
  const r = rng(SEED);
  const server = new MailboxServer({
    id: 'sp1',
    transport: tcpTransport(),
    maxFrameBytes: MAX_FRAME,
    maxInFlightPerConnection: 8,
    log: () => {},
  });
  server.handle('echo', parseEcho, async (body) => ({ body }));
  const { port } = await server.listen(0);
  const client = new MailboxClient({ id: 'client1', address: `127.0.0.1:${port}`, transport: tcpTransport() });
  try {
    // Phase 1: 4 connections × 800 envelope-level frames, pipelined in one write each.
    const perConnection = 800;
    let nextId = 1;
    for (let c = 0; c < 4; c++) {
      const want = new Map<number, string | null>();
      let wantUnmatched = 0;
      const pieces: Uint8Array[] = [];
      for (let k = 0; k < perConnection; k++) {
        const pieceList = encodeFrame(randomEnvelope(r, nextId++), undefined);
        pieces.push(...pieceList);
        // The oracle decodes exactly what the server will decode.
        const decoder = new FrameDecoder(MAX_FRAME);
        decoder.push(Buffer.concat(pieceList));
        const outcome = expected(decoder.next()!.header);
        if (outcome === null) continue;
        if (outcome.id === 0) wantUnmatched += 1;
        else want.set(outcome.id, outcome.code);
      }
      const { frames, decodeError } = await exchange(port, Buffer.concat(pieces), true);
      assert.equal(decodeError, null);
      let unmatched = 0;
      for (const f of frames) {
        const h = f.header as { id: number; re: boolean; from: string; err?: { code: string } };
        assert.equal(h.re, true);
        assert.equal(h.from, 'sp1');
        if (h.id === 0) {
          unmatched += 1;
          assert.equal(h.err?.code, 'BAD_MESSAGE');
          continue;
        }
        assert.ok(want.has(h.id), `unexpected reply id ${h.id}`);
        assert.equal(h.err?.code ?? null, want.get(h.id), `reply to ${h.id}`);
        want.delete(h.id);
      }
      assert.equal(want.size, 0, `requests left unanswered: ${[...want.keys()].slice(0, 5).join(',')}`);
      assert.equal(unmatched, wantUnmatched);
    }
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype pollution');

    // Phase 2: 1000 stream-breaking inputs, each on its own connection, 8 at a time.
    const cases = Array.from({ length: 1000 }, (_, i) => breakingCase(r, i));
    let answered = 0;
    for (let at = 0; at < cases.length; at += 8) {
      await Promise.all(
        cases.slice(at, at + 8).map(async (c) => {
          const { frames } = await exchange(port, c.bytes, c.end);
          for (const f of frames) assert.equal((f.header as { re: boolean }).re, true);
          if (c.code) {
            assert.equal(frames.length, 1);
            assert.equal((frames[0]!.header as { err: { code: string } }).err.code, c.code);
            answered += 1;
          }
        }),
      );
    }
    assert.equal(answered, 5 * 125);
    assert.ok(server.stats.badFrames >= answered);

    // Still up, still correct, nothing leaked.
    const reply = await client.request('echo', { text: 'alive' });
    assert.deepEqual(reply.body, { text: 'alive' });
    await waitFor(() => server.stats.connections === 1 && server.stats.inFlight === 0, 'fuzz connections to be gone');
  } finally {
    await client.close();
    await server.close();
  }
});
