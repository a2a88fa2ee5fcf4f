/**
 * A man-in-the-middle on one mailbox link, for tests that must lose a particular message on a
 * real link between real processes. It holds the cluster key, as every member does: it ends the
 * caller's TLS-PSK connection, opens its own to the SP, and passes whole frames on, except those
 * its rule says to drop (the link stays up: the caller times out), to cut the link at (the
 * caller sees it close), to damage (the frame's last byte flipped: a shard's payload) or to pass
 * on late (`lateMs` later; frames behind it overtake it, as answers to other requests may).
 */
import type { Socket } from 'node:net';
import { unpack } from 'msgpackr';
import type { EnvelopeHeader } from '../../src/mailbox/envelope.js';
import type { Listener, Transport } from '../../src/mailbox/transport.js';

export type ProxyAction = 'pass' | 'drop' | 'cut' | 'damage' | 'late';
/** `request`: caller to SP; `answer`: SP to caller. `payloadBytes`: the raw bytes after the header (a shard's). */
export type ProxyRule = (direction: 'request' | 'answer', header: EnvelopeHeader, payloadBytes: number) => ProxyAction;

const CONNECT_TIMEOUT_MS = 5_000;
const MAX_CONNECTIONS = 64;

export class MailboxProxy {
  rule: ProxyRule = () => 'pass';
  lateMs = 1_000;
  readonly #sockets = new Set<Socket>();

  private constructor(
    readonly address: string,
    private readonly listener: Listener,
  ) {}

  static async start(transport: Transport, target: string): Promise<MailboxProxy> {
    const [host, port] = target.split(':') as [string, string];
    let proxy: MailboxProxy | undefined;
    const listener = await transport.listen({
      host: '127.0.0.1',
      port: 0,
      maxConnections: MAX_CONNECTIONS,
      onSocket: (caller) => {
        caller.pause(); // until the SP side is up
        proxy!.#track(caller);
        transport.connect(host, Number(port), CONNECT_TIMEOUT_MS).then(
          (sp) => {
            proxy!.#track(sp);
            const cut = () => {
              caller.destroy();
              sp.destroy();
            };
            proxy!.#relay(caller, sp, 'request', cut);
            proxy!.#relay(sp, caller, 'answer', cut);
            caller.resume();
          },
          () => caller.destroy(),
        );
      },
    });
    proxy = new MailboxProxy(`127.0.0.1:${listener.port}`, listener);
    return proxy;
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.#sockets.delete(socket));
  }

  /** Passes `from`'s frames to `to` one whole frame at a time, asking the rule about each. */
  #relay(from: Socket, to: Socket, direction: 'request' | 'answer', cut: () => void): void {
    let pending: Buffer = Buffer.alloc(0);
    from.once('close', cut);
    from.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 8) {
        const end = 4 + pending.readUInt32BE(0);
        if (pending.length < end) break;
        const frame = pending.subarray(0, end);
        pending = pending.subarray(end);
        const headerBytes = frame.readUInt32BE(4);
        const header = unpack(frame.subarray(8, 8 + headerBytes)) as EnvelopeHeader;
        const action = this.rule(direction, header, end - 8 - headerBytes);
        if (action === 'cut') return cut();
        if (action === 'damage') frame.writeUInt8(frame.readUInt8(end - 1) ^ 0xff, end - 1);
        if (action === 'late') setTimeout(() => to.writable && to.write(frame), this.lateMs).unref();
        else if (action !== 'drop' && !to.write(frame)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await this.listener.close();
  }
}
