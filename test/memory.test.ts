/**
 * Bounded memory, end to end: a web client in a process of its own takes a 256 MiB upload
 * streamed over HTTP without holding the file. Its RSS is sampled while the body streams in; the
 * bound (128 MiB over what it held after a warm-up) sits well above what a streaming pipeline
 * needs (segments in flight, pooled buffers) and well below the file, so it catches any stage that
 * keeps what it has passed on.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get, request, type ClientRequest } from 'node:http';
import { actorPids, startCluster, waitFor, type ClusterHandle } from './support/cluster.js';
import { Api } from './support/http.js';

const MiB = 1024 * 1024;

function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(kb, `no VmRSS for ${pid}`);
  return Number(kb[1]) / 1024;
}

/** Streams `mib` MiB as one multipart file, honouring back-pressure; resolves with the status. */
function streamUpload(base: string, token: string, name: string, mib: number): Promise<number> {
  const block = randomBytes(MiB); // the content is sealed anyway; only its length matters here
  const head = `--x\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n\r\n`;
  const tail = '\r\n--x--\r\n';
  return new Promise((resolve, reject) => {
    const req = request(`${base}/api/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(head.length + mib * MiB + tail.length) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.write(head);
    let sent = 0;
    const pump = () => {
      while (sent < mib) {
        sent += 1;
        if (!req.write(block)) return void req.once('drain', pump);
      }
      req.end(tail);
    };
    pump();
  });
}

describe('memory of a web client', () => {
  let cluster: ClusterHandle;
  let api: Api;
  let pid: number;

  before(async () => {
    cluster = await startCluster({ isolation: 'process', args: ['--clients', '1'] });
    api = new Api(cluster.clients[0]!);
    assert.equal((await api.register('memory', 'memory test password')).status, 201);
    assert.equal((await api.signIn('memory', 'memory test password')).status, 200);
    const pids = actorPids(cluster.dataDir, 'client --id client1');
    assert.equal(pids.length, 1, 'one client process');
    pid = pids[0]!;
  });
  after(async () => cluster?.stop());

  it('stays bounded while a 256 MiB upload streams through it', async () => {
    // Warm-up: the pools and the worker threads reach their working size.
    assert.equal(await streamUpload(cluster.clients[0]!, api.token!, 'warm-up.bin', 64), 201);
    const base = rssMiB(pid);
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 25);
    try {
      assert.equal(await streamUpload(cluster.clients[0]!, api.token!, 'big.bin', 256), 201);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssMiB(pid));
    console.log(`# client RSS ${base.toFixed(1)} MiB after warm-up, peak ${peak.toFixed(1)} MiB during 256 MiB`);
    assert.ok(peak - base < 128, `the client grew by ${(peak - base).toFixed(1)} MiB during a 256 MiB upload`);
  });

  it('holds about one segment per download whose reader stopped reading, not its whole read-ahead', async () => {
    const list = (await api.call('GET', '/api/v1/files')).body as { id: string; name: string }[];
    const big = list.find((f) => f.name === 'big.bin');
    assert.ok(big, 'the 256 MiB file of the test before');
    const pool = async () => (await api.call('GET', '/api/v1/cluster')).body.pool as { downloadSlots: { inUse: number }; readAheadSlots: { limit: number; inUse: number } };
    await waitFor('the client to be idle', async () => (await pool()).downloadSlots.inUse === 0);
    const base = rssMiB(pid);
    const readers = 24;
    const requests: ClientRequest[] = [];
    try {
      // Readers that take the headers and then read nothing more.
      await Promise.all(
        Array.from({ length: readers }, () => new Promise<void>((resolve, reject) => {
          const req = get(`${cluster.clients[0]!}/api/v1/files/${big.id}/content`, { agent: false, headers: { authorization: `Bearer ${api.token}` } }, (res) => {
            assert.equal(res.statusCode, 200);
            res.pause();
            resolve();
          });
          req.on('error', reject);
          requests.push(req);
        })),
      );
      // Nothing more is fetched once every stopped reader holds what it will hold.
      await waitFor('the downloads to stop fetching', async () => (await pool()).downloadSlots.inUse === 0, 60_000, 200);
      const held = rssMiB(pid) - base;
      const { readAheadSlots } = await pool();
      console.log(`# ${readers} stopped readers of a 256 MiB file: client RSS +${held.toFixed(1)} MiB; read-ahead budget ${readAheadSlots.inUse}/${readAheadSlots.limit}`);
      // About one 4 MiB segment each plus the shared read-ahead budget (~130 MiB); each reading
      // ahead its whole window of five held ~480 MiB.
      assert.ok(held < 256, `the client grew by ${held.toFixed(1)} MiB for ${readers} stopped readers`);
    } finally {
      for (const req of requests) req.destroy();
    }
    await waitFor('the read-ahead budget to be given back', async () => (await pool()).readAheadSlots.inUse === 0);
  });
});
