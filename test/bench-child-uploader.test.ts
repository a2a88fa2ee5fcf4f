/**
 * The benchmark's pre-started upload processes (test/bench/child-uploader.ts) against a plain
 * node:http server: nothing is sent before `go`, the whole file arrives after it, a failed upload
 * comes back as an error outcome.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { ChildUploader } from './bench/child-uploader.js';

const SIZE = 3 * 1024 * 1024 + 17;

test('child uploader: waits for go, then uploads the whole file; failures are outcomes', async () => {
  const requests: { bytes: number; auth: string | undefined }[] = [];
  const server = http.createServer((req, res) => {
    const seen = { bytes: 0, auth: req.headers.authorization };
    requests.push(seen);
    req.on('data', (chunk: Buffer) => (seen.bytes += chunk.length));
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify([{ id: 'f'.repeat(32), block: 7 }]));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const child = new ChildUploader(base, 'tok', 'a.bin', SIZE);
  const waiting = new ChildUploader(base, 'tok', 'b.bin', SIZE);
  try {
    await Promise.all([child.ready, waiting.ready]);
    const outcome = await child.go();
    assert.equal(outcome.status, 201, outcome.error);
    assert.equal(outcome.block, 7);
    // The other child has been ready all along: had it not waited for go, it would have sent too.
    assert.equal(requests.length, 1, 'only the child that got go uploaded');
    assert.equal(requests[0]!.auth, 'Bearer tok');
    assert.ok(requests[0]!.bytes > SIZE, `the whole multipart body arrived (${requests[0]!.bytes} bytes for a ${SIZE}-byte file)`);
  } finally {
    child.stop();
    waiting.stop(); // a child left waiting would keep this test's process alive
    server.closeAllConnections();
    server.close();
  }

  // Nothing listens any more: the upload fails, and the failure is reported, not thrown.
  const orphan = new ChildUploader(base, 'tok', 'c.bin', SIZE);
  try {
    await orphan.ready;
    const failed = await orphan.go();
    assert.equal(failed.status, 0);
    assert.match(failed.error ?? '', /ECONNREFUSED/);
  } finally {
    orphan.stop();
  }
});
