/**
 * The benchmark's lean HTTP clients against a plain node:http server. The download reader
 * (test/bench/lean-get.ts): a body in many writes arrives whole and in order, an error status
 * carries its body, and a response cut short is reported, never taken for a whole one. The
 * keep-alive connection for small requests (test/bench/lean-connection.ts): many requests on one
 * connection, each answer whole and its own, and every way an answer can fail is an error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { LeanConnection } from './bench/lean-connection.js';
import { leanGet, type LeanGetResult } from './bench/lean-get.js';

const body = randomBytes(5 * 1024 * 1024 + 123);

async function withServer(handler: http.RequestListener, fn: (port: number) => Promise<void>): Promise<void> {
  const server = http.createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    await fn((server.address() as AddressInfo).port);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

async function get(port: number, path: string): Promise<{ result: LeanGetResult; received: Buffer }> {
  const pieces: Buffer[] = [];
  const result = await leanGet({ host: '127.0.0.1', port, path, headers: { authorization: 'Bearer t' }, timeoutMs: 10_000, onBody: (p) => pieces.push(Buffer.from(p)) });
  return { result, received: Buffer.concat(pieces) };
}

test('lean GET: whole bodies in order, error bodies, cut-off responses', async () => {
  await withServer(
    (req, res) => {
      if (req.url === '/ok') {
        assert.equal(req.headers.authorization, 'Bearer t');
        res.writeHead(200, { 'content-length': body.length });
        for (let at = 0; at < body.length; at += 70_001) res.write(body.subarray(at, at + 70_001));
        res.end();
      } else if (req.url === '/empty') {
        res.writeHead(200, { 'content-length': 0 }).end();
      } else if (req.url === '/cut') {
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, 1000), () => res.destroy());
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"NOT_FOUND"}}');
      }
    },
    async (port) => {
      const ok = await get(port, '/ok');
      assert.equal(ok.result.status, 200);
      assert.equal(ok.result.error, undefined);
      assert.equal(ok.result.bytes, body.length);
      assert.ok(ok.received.equals(body), 'the body arrives byte for byte');
      assert.ok(ok.result.firstByteMs > 0 && ok.result.headersMs > 0);

      const empty = await get(port, '/empty');
      assert.deepEqual([empty.result.status, empty.result.bytes, empty.result.error], [200, 0, undefined]);

      const missing = await get(port, '/nope');
      assert.equal(missing.result.status, 404);
      assert.match(missing.result.error ?? '', /NOT_FOUND/);
      assert.equal(missing.received.length, 0, 'an error body is not handed to onBody');

      const cut = await get(port, '/cut');
      assert.match(cut.result.error ?? '', new RegExp(`closed after 1000 of ${body.length}`));
    },
  );
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('lean keep-alive connection: many requests on one connection, each answer its own; failures are errors', async () => {
  const sockets = new Set<unknown>();
  await withServer(
    (req, res) => {
      sockets.add(req.socket);
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        const got = Buffer.concat(parts);
        if (req.url === '/echo') res.writeHead(201, { 'content-length': 64 }).end(sha(got));
        else if (req.url === '/last') res.writeHead(200, { 'content-length': 2, connection: 'close' }).end('ok');
        else if (req.url === '/chunked') res.writeHead(200).end('no length given');
        else if (req.url === '/cut') {
          res.writeHead(200, { 'content-length': 1000 });
          res.write('x'.repeat(10), () => res.destroy());
        } else if (req.url === '/silent') return; // never answers
        else res.writeHead(404, { 'content-length': 9 }).end('not found');
      });
    },
    async (port) => {
      const conn = new LeanConnection('127.0.0.1', port);
      const head = (path: string, length: number) => `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: ${length}\r\n\r\n`;
      for (let i = 0; i < 20; i++) {
        const payload = randomBytes(1 + i * 977);
        const r = await conn.request(head('/echo', payload.length), payload, 5_000);
        assert.deepEqual([r.status, r.body.toString()], [201, sha(payload)], `request ${i}`);
        assert.equal(conn.idle, true);
      }
      const missing = await conn.request(head('/nope', 0), undefined, 5_000);
      assert.deepEqual([missing.status, missing.body.toString()], [404, 'not found']);
      assert.equal(sockets.size, 1, 'every request went over the one connection');
      const busy = conn.request(head('/echo', 0), undefined, 5_000);
      await assert.rejects(conn.request(head('/echo', 0), undefined, 5_000), /one request at a time/);
      assert.equal((await busy).status, 201, 'the request in flight is answered all the same');
      conn.close();

      const closing = new LeanConnection('127.0.0.1', port);
      assert.deepEqual(await closing.request(head('/last', 0), undefined, 5_000).then((r) => [r.status, r.body.toString()]), [200, 'ok']);
      assert.equal(closing.idle, false, 'an answer that closes the connection leaves it unusable');
      await assert.rejects(closing.request(head('/echo', 0), undefined, 5_000), /closed/);

      for (const [path, error] of [
        ['/chunked', /unreadable response/],
        ['/cut', /closed the connection/],
        ['/silent', /no answer within 300 ms/],
      ] as const) {
        const c = new LeanConnection('127.0.0.1', port);
        await assert.rejects(c.request(head(path, 0), undefined, 300), error, path);
        assert.equal(c.idle, false, `${path}: the connection is not used again`);
      }
      const refused = new LeanConnection('127.0.0.1', 1);
      await assert.rejects(refused.request(head('/echo', 0), undefined, 5_000), /connection failed|closed the connection/);
    },
  );
});
