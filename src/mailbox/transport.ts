/**
 * How mailbox bytes reach a peer: plain TCP (tests, benchmarks, a trusted host) or TLS 1.3 with a
 * pre-shared key derived from the cluster key. With the PSK, a peer without the key fails the
 * handshake, so none of its bytes ever reach the frame parser.
 *
 * Every member holds the cluster key, web clients included; an SP also proves which SP it is. Its
 * links to other SPs use a key of that pair alone (SpLinks: derived from the X25519 agreement of
 * the two node keys), and the server learns the SP's id from the handshake (authenticatedSp), so
 * consensus messages can be taken from SPs only, each under its own name.
 */
import { hkdfSync } from 'node:crypto';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { CairnError, invariant } from '../errors.js';

export interface ListenOptions {
  port: number;
  host: string;
  /** Connections past this count (handshaking ones included) are closed at once by the kernel's accept path. */
  maxConnections: number;
  /** Called once per connection, after authentication where the transport has any. */
  onSocket: (socket: Socket) => void;
  /** Connection-level failures before onSocket (a failed handshake); never fatal. */
  onRejected?: (err: Error, remote: string) => void;
}

export interface Listener {
  readonly port: number;
  /** Stops accepting; existing connections stay up. */
  stopAccepting(): void;
  /** Stops accepting, destroys every connection (authenticated or not) and waits until closed. */
  close(): Promise<void>;
}

/**
 * A connecting side's way to take bytes without a fresh Buffer per read (node's `onread`): the
 * socket puts each read into `buffer()` and reports the count. With a reader the socket emits no
 * 'data' events. Measured on TLS-PSK, 1 GiB into 2 MiB frames: 1.5 CPU-s with 'data' events and a
 * copy into the frame, 1.2 with reads landing in the frame.
 */
export interface SocketReader {
  /** Where the next read may land; called before the first read and after every callback. */
  buffer: () => Uint8Array;
  /** `bytes` were read into `into`, the last buffer() handed out. */
  callback: (bytes: number, into: Uint8Array) => void;
}

export interface Transport {
  readonly kind: 'tcp' | 'tls-psk';
  listen(options: ListenOptions): Promise<Listener>;
  /**
   * Connects and, for TLS, completes the handshake within timeoutMs; UNAVAILABLE/UNAUTHENTICATED
   * otherwise. With a reader, received bytes go to it from the start (before the promise settles).
   */
  connect(host: string, port: number, timeoutMs: number, reader?: SocketReader): Promise<Socket>;
}

/** Handshakes that take longer than this are dropped, so half-open peers cannot hold slots. */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
const KEEPALIVE_MS = 30_000;
const CLUSTER_KEY_BYTES = 32;
const PSK_IDENTITY = 'cairn-mailbox-v1';
const SP_IDENTITY_PREFIX = 'cairn-sp-v1:';

/** An SP's side of its links to other SPs. */
export interface SpLinks {
  /** This SP's id. */
  readonly self: string;
  /** The key of the link between this SP and SP `id` (both derive the same), or null if `id` is no other SP of the cluster. */
  keyWith(id: string): Buffer | null;
}

/**
 * The key of the link between SPs `a` and `b`: HKDF over their node keys' agreement, salted with
 * the cluster key (so it is this cluster's) and bound to both names.
 */
export function deriveLinkKey(clusterKey: Uint8Array, agreement: Uint8Array, a: string, b: string): Buffer {
  const [x, y] = a < b ? [a, b] : [b, a];
  return Buffer.from(hkdfSync('sha256', agreement, clusterKey, `cairn sp link v1\0${x}\0${y}`, 32));
}

/** Sockets whose peer proved itself an SP, by that SP's id. */
const spOf = new WeakMap<Socket, string>();

/** The SP a server-side socket's handshake authenticated, or null for a member holding the cluster key alone. */
export function authenticatedSp(socket: Socket): string | null {
  return spOf.get(socket) ?? null;
}
// TLS 1.3 external PSKs through OpenSSL's legacy callback are bound to SHA-256 suites; the
// handshake still runs (EC)DHE (psk_dhe_ke), so traffic keys have forward secrecy.
const TLS13_PSK_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

export function remoteOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

/** Parses 'host:port' and '[v6]:port'. */
export function parseAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CairnError('BAD_CONFIG', `mailbox address must be host:port, got ${JSON.stringify(address)}`);
  }
  return { host, port };
}

function connectError(err: unknown, host: string, port: number): CairnError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (code.startsWith('ERR_SSL_')) {
    return new CairnError('UNAUTHENTICATED', `TLS-PSK handshake with ${host}:${port} failed (${code}); is the cluster key the same?`, { cause: err });
  }
  const why = err instanceof Error ? err.message : String(err);
  return new CairnError('UNAVAILABLE', `cannot reach mailbox ${host}:${port}: ${why}`, { cause: err });
}

/** Tracks raw connections so close() can end even those still in a handshake. */
function listenOn(server: net.Server, options: ListenOptions): Promise<Listener> {
  const raw = new Set<Socket>();
  server.maxConnections = options.maxConnections;
  // Node closes a connection past maxConnections itself and only says so with 'drop'.
  server.on('drop', (data?: { remoteAddress?: string; remotePort?: number }) => {
    options.onRejected?.(new CairnError('OVERLOADED', `more than ${options.maxConnections} connections`), data?.remoteAddress ? `${data.remoteAddress}:${data.remotePort}` : 'unknown');
  });
  server.on('connection', (socket: Socket) => {
    // A peer that vanished without a FIN would otherwise hold its slot until we next write.
    socket.setKeepAlive(true, KEEPALIVE_MS);
    raw.add(socket);
    socket.once('close', () => raw.delete(socket));
  });
  return new Promise<Listener>((resolve, reject) => {
    const failed = (err: Error): void => {
      reject(new CairnError('UNAVAILABLE', `cannot listen on ${options.host}:${options.port}: ${err.message}`, { cause: err }));
    };
    server.once('error', failed);
    server.listen(options.port, options.host, () => {
      server.off('error', failed);
      // A listening server may still report accept errors (EMFILE); they must not crash us.
      server.on('error', (err) => options.onRejected?.(err, 'listener'));
      const address = server.address();
      invariant(typeof address === 'object' && address !== null, 'listening server has an address');
      let closed: Promise<void> | null = null;
      resolve({
        port: address.port,
        stopAccepting: () => {
          if (server.listening) server.close();
        },
        close: () => {
          closed ??= new Promise<void>((done) => {
            if (server.listening) server.close();
            for (const socket of raw) socket.destroy();
            if (raw.size === 0) return done();
            let left = raw.size;
            for (const socket of raw) {
              socket.once('close', () => {
                left -= 1;
                if (left === 0) done();
              });
            }
          });
          return closed;
        },
      });
    });
  });
}

function withTimeout(socket: Socket, readyEvent: string, timeoutMs: number, host: string, port: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new CairnError('UNAVAILABLE', `mailbox ${host}:${port} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(connectError(err, host, port));
    };
    socket.once('error', fail);
    socket.once(readyEvent, () => {
      clearTimeout(timer);
      socket.off('error', fail);
      // Small requests must not wait for Nagle; big frames are corked into one writev anyway.
      socket.setNoDelay(true);
      socket.setKeepAlive(true, KEEPALIVE_MS);
      resolve(socket);
    });
  });
}

/** Node's `onread` option (tls.connect takes it too, though its typings do not say so). */
function onread(reader: SocketReader | undefined): { onread?: net.OnReadOpts } {
  if (!reader) return {};
  const { buffer, callback } = reader;
  return {
    onread: {
      buffer,
      callback: (bytes, into) => {
        callback(bytes, into);
        return true; // false would pause the socket
      },
    },
  };
}

export function tcpTransport(): Transport {
  return {
    kind: 'tcp',
    listen(options) {
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, options.onSocket);
      return listenOn(server, options);
    },
    connect(host, port, timeoutMs, reader) {
      const socket = net.connect({ host, port, ...onread(reader) });
      return withTimeout(socket, 'connect', timeoutMs, host, port);
    },
  };
}

/** Derives the mailbox PSK from the cluster key, so the key itself is used for one purpose only. */
function derivePsk(clusterKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', clusterKey, 'cairn', 'cairn mailbox tls-psk v1', 32));
}

/**
 * @param options.sp  this SP's links: its server also accepts other SPs by their link keys, and
 *   with `options.to` its connections reach that SP as this one.
 */
export function tlsPskTransport(
  clusterKey: Uint8Array,
  options: { handshakeTimeoutMs?: number; sp?: SpLinks; to?: string } = {},
): Transport {
  if (clusterKey.byteLength !== CLUSTER_KEY_BYTES) {
    throw new CairnError('BAD_CONFIG', `cluster key must be ${CLUSTER_KEY_BYTES} bytes, got ${clusterKey.byteLength}`);
  }
  const psk = derivePsk(clusterKey);
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const linkKey = options.sp && options.to !== undefined ? options.sp.keyWith(options.to) : null;
  invariant(options.to === undefined || linkKey !== null, `no link key with ${options.to}`);
  const dialAs = linkKey ? { psk: linkKey, identity: `${SP_IDENTITY_PREFIX}${options.sp!.self}` } : { psk, identity: PSK_IDENTITY };
  const common = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: TLS13_PSK_SUITES } as const;
  return {
    kind: 'tls-psk',
    listen(listenOptions) {
      const server = tls.createServer({
        ...common,
        allowHalfOpen: true,
        noDelay: true,
        handshakeTimeout: handshakeTimeoutMs,
        pskCallback: (socket, identity) => {
          if (identity === PSK_IDENTITY) return psk;
          if (!options.sp || !identity.startsWith(SP_IDENTITY_PREFIX)) return null;
          const id = identity.slice(SP_IDENTITY_PREFIX.length);
          const key = options.sp.keyWith(id);
          // Counts only if the handshake then succeeds with this key: with SHA-256 suites alone the
          // PSK chosen here is the one the binder is checked against (a suite of another hash could
          // let OpenSSL skip it, so keep TLS13_PSK_SUITES to SHA-256 ones).
          if (key) spOf.set(socket, id);
          return key;
        },
      });
      server.on('secureConnection', listenOptions.onSocket);
      server.on('tlsClientError', (err, socket) => {
        // Node only reports a failed or timed-out handshake; the socket stays open until we close
        // it. A stranger whose bytes look like the start of a long TLS record was otherwise kept
        // waiting (and holding a connection slot) for good: seen as a 20 s hang in the faults test.
        socket.destroy();
        listenOptions.onRejected?.(err, remoteOf(socket));
      });
      return listenOn(server, listenOptions);
    },
    connect(host, port, timeoutMs, reader) {
      const socket = tls.connect({
        ...common,
        host,
        port,
        ...onread(reader),
        pskCallback: () => dialAs,
      });
      return withTimeout(socket, 'secureConnect', timeoutMs, host, port);
    },
  };
}
