/** A web client actor: the Koa app, its worker pool and its links to the SPs. */
import { createServer } from 'node:http';
import { CairnError } from '../errors.js';
import type { Socket } from 'node:net';
import type { Config } from '../config/config.js';
import { readClusterFile, readClusterKey } from '../config/cluster-file.js';
import { tlsPskTransport } from '../mailbox/transport.js';
import type { RunningRole } from '../supervisor/actor.js';
import { createApp } from './app.js';
import { parserRefusal } from './http-errors.js';
import { ClusterLink } from './cluster-link.js';
import { CodecPool } from './codec-pool.js';
import { SignInLimiter } from './rate-limit.js';
import { ClientService } from './service.js';
import { Sessions } from './sessions.js';
import { largestRecordableFile } from './upload.js';
import { LIMITS } from '../chain/tx.js';

export interface ClientOptions {
  id: string;
  port: number;
  host: string;
  clusterFile: string;
  config: Config;
  log?: (line: string) => void;
}

export async function startClient(opts: ClientOptions): Promise<RunningRole> {
  const log = opts.log ?? ((line: string) => console.error(`[${opts.id}] ${line}`));
  const cluster = readClusterFile(opts.clusterFile);
  const link = new ClusterLink(cluster, tlsPskTransport(readClusterKey(opts.clusterFile)), opts.id);
  const pool = new CodecPool(opts.config.pool);
  const service = new ClientService(link, pool, {
    k: cluster.k,
    m: cluster.m,
    success: cluster.k,
    segmentSize: cluster.segmentSize,
    window: opts.config.pipelineDepth,
    inlineMax: opts.config.inlineMaxBytes,
    maxDurationMs: opts.config.maxUploadMs,
  });
  // One request is never larger than the largest file a record can describe, so each of its files
  // fits a record: refused at its first byte past the limit (or at once, by its Content-Length).
  const maxUploadBytes = Math.min(opts.config.maxUploadBytes, largestRecordableFile(cluster.segmentSize));
  if (maxUploadBytes < opts.config.maxUploadBytes) log(`uploads are limited to ${maxUploadBytes} bytes: a file record holds ${LIMITS.maxSegments} segments of ${cluster.segmentSize} bytes`);
  const app = createApp({ service, sessions: new Sessions(), limiter: new SignInLimiter(), maxUploadBytes }, log);
  const server = createServer(app.callback());
  server.requestTimeout = 0; // large uploads take as long as they take, as long as bytes keep moving:
  server.timeout = opts.config.httpIdleMs; // a connection idle this long is closed (node's default is never)
  server.headersTimeout = 30_000;
  // Requests node's parser refuses get the contract's JSON error (node answers with an empty body),
  // as node's own handler does: only where no response to this socket is under way.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent: boolean } | null })._httpMessage;
    if (socket.writable && !inFlight?.headersSent && err.code !== 'ECONNRESET') socket.write(parserRefusal(err.code));
    socket.destroy();
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const listening = new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => {
      reject(new CairnError('UNAVAILABLE', `the web client cannot listen on ${opts.host}:${opts.port}: ${err.message}`, { cause: err }));
    };
    server.once('error', failed);
    server.listen(opts.port, opts.host, () => {
      server.off('error', failed);
      // A listening server may still report accept errors (EMFILE); they must not end the client.
      server.on('error', (err) => log(`web client: ${err.message}`));
      resolve();
    });
  });
  await listening.catch(async (err: unknown) => {
    await pool.close();
    await link.close();
    throw err;
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  log(`web client on http://${opts.host}:${port}`);
  return {
    url: `http://${opts.host}:${port}`,
    async stop() {
      // Stop accepting; let in-flight requests finish for a bounded time; then cut the rest.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 10_000);
      await closed;
      clearTimeout(timer);
      await pool.close();
      await link.close();
    },
  };
}
