/**
 * The benchmark's lean download reader (test/bench/lean-get.ts) against a plain node:http server:
 * a body in many writes arrives whole and in order, an error status carries its body, and a
 * response cut short is reported, never taken for a whole one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
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
