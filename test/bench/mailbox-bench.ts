/**
 * Mailbox throughput over loopback, plain TCP and TLS-PSK: MB/s of 1 MiB payload requests (up:
 * the payload goes to the server, over TLS-PSK on the connection's lane as shards do; down: it
 * comes back, on TLS) and requests/s of small messages.
 * The server runs on a worker thread so client and server do not share one event loop.
 *
 *   node dist/test/bench/mailbox-bench.js
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { MailboxClient } from '../../src/mailbox/client.js';
import { MailboxServer } from '../../src/mailbox/server.js';
import { tcpTransport, tlsPskTransport, type Transport } from '../../src/mailbox/transport.js';

const MiB = 1024 * 1024;
const SERVER_ROLE = 'mailbox-bench-server';

type Kind = 'tcp' | 'tls-psk';

interface ServerData {
  role: typeof SERVER_ROLE;
  kind: Kind;
  key: Uint8Array;
}

export interface MailboxBenchResult {
  transport: Kind;
  uploadMBps: number;
  downloadMBps: number;
  smallRequestsPerSec: number;
}

function transportFor(kind: Kind, key: Uint8Array): Transport {
  return kind === 'tcp' ? tcpTransport() : tlsPskTransport(key);
}

async function runServer(data: ServerData): Promise<void> {
  const server = new MailboxServer({ id: 'bench-sp', transport: transportFor(data.kind, data.key), maxInFlightPerConnection: 64 });
  const blob = randomBytes(MiB);
  const any = (v: unknown): unknown => v;
  server.handle('bench.put', any, async (_body, ctx) => ({ body: ctx.payload?.byteLength ?? 0 }), { lane: true });
  server.handle('bench.get', any, async () => ({ body: null, payload: blob }));
  server.handle('bench.echo', any, async (body) => ({ body }));
  const { port } = await server.listen(0);
  parentPort?.on('message', () => {
    void server.close().then(() => parentPort?.close());
  });
  parentPort?.postMessage({ port });
}

/** Keeps `concurrency` requests going for `ms` and returns how many completed per second. */
async function drive(concurrency: number, ms: number, once: () => Promise<unknown>): Promise<number> {
  const until = Date.now() + ms;
  const started = Date.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        await once();
        done += 1;
      }
    }),
  );
  return done / ((Date.now() - started) / 1000);
}

async function benchOne(kind: Kind, seconds: number): Promise<MailboxBenchResult> {
  const key = randomBytes(32);
  const worker = new Worker(new URL(import.meta.url), { workerData: { role: SERVER_ROLE, kind, key } satisfies ServerData });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      worker.once('message', (m: { port: number }) => resolve(m.port));
      worker.once('error', reject);
    });
    const client = new MailboxClient({
      id: 'bench-client',
      address: `127.0.0.1:${port}`,
      transport: transportFor(kind, key),
      maxInFlight: 64,
      requestTimeoutMs: 30_000,
      laneTypes: new Set(['bench.put']),
    });
    try {
      const payload = randomBytes(MiB);
      const ms = seconds * 1000;
      await client.request('bench.echo', { warm: true });
      const up = await drive(8, ms, () => client.request('bench.put', null, payload));
      const down = await drive(8, ms, () => client.request('bench.get', null));
      const small = await drive(64, ms, () => client.request('bench.echo', { n: 1, s: 'small' }));
      return {
        transport: kind,
        uploadMBps: Math.round(up * (MiB / 1e6)),
        downloadMBps: Math.round(down * (MiB / 1e6)),
        smallRequestsPerSec: Math.round(small),
      };
    } finally {
      await client.close();
    }
  } finally {
    const exited = new Promise((r) => worker.once('exit', r));
    worker.postMessage('stop');
    await exited;
  }
}

export async function benchMailbox(options: { seconds?: number } = {}): Promise<MailboxBenchResult[]> {
  const seconds = options.seconds ?? 2;
  return [await benchOne('tcp', seconds), await benchOne('tls-psk', seconds)];
}

if (!isMainThread && (workerData as ServerData | undefined)?.role === SERVER_ROLE) {
  await runServer(workerData as ServerData);
} else if (isMainThread && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const result of await benchMailbox()) console.log(JSON.stringify(result));
}
