/**
 * A web client's view of the SPs: one mailbox client per SP, liveness from recent replies, and
 * chain requests routed to whichever SP answers (the chain forwards writes to its leader).
 */
import { genesisHash } from '../chain/genesis.js';
import { BufferPool } from '../codec/buffer-pool.js';
import { CairnError, isCairnError } from '../errors.js';
import type { ClusterFile } from '../config/cluster-file.js';
import { MailboxClient } from '../mailbox/client.js';
import { LANE_TYPES, type Body, type MessageType, type Replies } from '../mailbox/messages.js';
import { call, type TypedReply } from '../mailbox/rpc.js';
import type { Transport } from '../mailbox/transport.js';
import { hedged } from './hedged.js';

export interface ProviderLink {
  id: string;
  address: string;
  client: MailboxClient;
  up: boolean;
  lastError: string | null;
}

// Sleeps of 100, 200, 400, 800, 1000, 1000 ms: together longer than an election after the
// leader is lost (10–20 ticks of 50 ms, a pre-vote round, and a loaded machine), so a leader change is ridden out.
const CHAIN_RETRIES = 6;
const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 1_000;
const PROBE_EVERY_MS = 1_000;
/** Per attempt: a read from a stalled SP must not hold a page for long; a write waits for finality. */
const ATTEMPT_TIMEOUT_MS: Partial<Record<MessageType, number>> = { 'chain.submit': 10_000, 'chain.verify': 60_000, 'repair.start': 10_000 };
const READ_TIMEOUT_MS = 3_000;
/** A chain read not answered this soon is also asked of the next SP (as shard reads are hedged). */
const READ_HEDGE_MS = 400;
const RECYCLED_FRAME_BYTES = 16 * 1024 * 1024;

export class ClusterLink {
  readonly providers: ProviderLink[];
  /** The chain these SPs keep (its genesis hash): every transaction sent over this link is signed for it. */
  readonly chainHash: string;
  #preferred = 0; // index of the SP that answered chain requests last
  /** Highest height this client has seen final: reads wait for it, so each client reads its own writes. */
  knownHeight = 0;
  /** Chain reads also asked of another SP because the first was slow: for GET /api/v1/cluster. */
  readHedges = 0;

  #prober: NodeJS.Timeout;
  /** Shards arriving from SPs are assembled here; download gives each back once decoded. */
  readonly #frames = new BufferPool(RECYCLED_FRAME_BYTES);
  #leader: string | null = null;

  constructor(cluster: ClusterFile, transport: Transport, selfId: string) {
    this.chainHash = genesisHash(cluster.genesis);
    this.providers = cluster.providers.map((p) => ({
      id: p.id,
      address: p.address,
      up: true,
      lastError: null,
      client: new MailboxClient({ id: selfId, address: p.address, transport, requestTimeoutMs: 30_000, connectTimeoutMs: 2_000, maxInFlight: 32, maxQueued: 1024, buffers: this.#frames, laneTypes: LANE_TYPES }),
    }));
    // Liveness comes from a cheap periodic probe, so uploads and downloads pick live SPs first
    // and an SP that came back is used again without waiting for a request to stumble on it.
    const probing = new Set<string>();
    this.#prober = setInterval(() => {
      for (const p of this.providers) {
        if (probing.has(p.id)) continue;
        probing.add(p.id);
        this.to(p.id, 'chain.status', {}, { timeoutMs: PROBE_EVERY_MS })
          .then((r) => {
            if (r.body.role === 'leader') this.#leader = p.id;
            else if (r.body.leader) this.#leader = r.body.leader;
          })
          .catch(() => undefined)
          .finally(() => probing.delete(p.id));
      }
    }, PROBE_EVERY_MS);
    this.#prober.unref();
  }

  get(id: string): ProviderLink {
    const p = this.providers.find((x) => x.id === id);
    if (!p) throw new CairnError('NOT_FOUND', `unknown storage provider ${id}`);
    return p;
  }

  /** A request to one SP; records whether it answered. */
  async to<T extends MessageType>(
    id: string,
    type: T,
    body: Body<T>,
    options: { payload?: Uint8Array; timeoutMs?: number } = {},
  ): Promise<TypedReply<T>> {
    const p = this.get(id);
    try {
      const reply = await call(p.client, type, body, options);
      p.up = true;
      p.lastError = null;
      return reply;
    } catch (err) {
      // Only a failure to reach the SP says it is down; an error it answered with says it is up.
      if (isCairnError(err) && !err.remote && ['UNAVAILABLE', 'CONNECTION_CLOSED', 'TIMEOUT'].includes(err.code)) {
        p.up = false;
        p.lastError = err.message;
      }
      if (isCairnError(err) && err.remote) p.up = true;
      throw err;
    }
  }

  /**
   * A chain request: tried on the SP that answered last, then the others, with bounded retries
   * on retryable errors (no leader yet, leader changed). The final error says why.
   */
  async chain<T extends MessageType>(type: T, body: Body<T>, timeoutMs = ATTEMPT_TIMEOUT_MS[type] ?? READ_TIMEOUT_MS): Promise<Replies[T]> {
    if ('minHeight' in body) body = { ...body, minHeight: Math.max(body.minHeight as number, this.knownHeight) };
    const reply = await this.#chain(type, body, timeoutMs);
    if (type === 'chain.submit') this.knownHeight = Math.max(this.knownHeight, (reply as Replies['chain.submit']).height);
    return reply;
  }

  async #chain<T extends MessageType>(type: T, body: Body<T>, timeoutMs: number): Promise<Replies[T]> {
    let lastErr: unknown;
    // Writes go to the leader first (saves the forwarding hop); anything else to the last SP that answered.
    const leaderIndex = this.providers.findIndex((p) => p.id === this.#leader && p.up);
    if (type === 'chain.submit' && leaderIndex >= 0) this.#preferred = leaderIndex;
    for (let attempt = 0; attempt < CHAIN_RETRIES; attempt++) {
      // SPs the probes find down are asked only when none is up: a stalled one costs a whole
      // attempt's timeout each time, and with no majority every attempt (an upload waited ~2.5
      // min with two of three SPs stalled). Liveness is read again each attempt, so an SP that
      // only missed a probe under load is asked again within a second or two.
      const live: number[] = [];
      const down: number[] = [];
      for (let i = 0; i < this.providers.length; i++) {
        const index = (this.#preferred + i) % this.providers.length;
        (this.providers[index]!.up ? live : down).push(index);
      }
      const order = live.length > 0 ? live : down;
      try {
        // A read is asked of the next SP too when one is slow (stalled, not yet known down); a
        // write is sent to one SP at a time.
        const { index, reply } = await this.#firstAnswer(order, type, body, timeoutMs, type === 'chain.submit' ? null : READ_HEDGE_MS);
        this.#preferred = index;
        return reply.body;
      } catch (err) {
        lastErr = err;
        if (!isCairnError(err) || !err.retryable) throw err;
      }
      await new Promise((r) => setTimeout(r, Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt)));
    }
    if (isCairnError(lastErr) && (lastErr.code === 'NO_MAJORITY' || lastErr.code === 'UNAVAILABLE' || lastErr.code === 'CONNECTION_CLOSED')) {
      throw new CairnError('NO_MAJORITY', `the chain has no majority of storage providers right now (${lastErr.message})`);
    }
    throw lastErr;
  }

  /**
   * Asks the SPs of `order` in turn: the next when one fails retryably, and (hedging) the next
   * every `hedgeMs` while none has answered. The first answer wins; the others are ignored.
   */
  async #firstAnswer<T extends MessageType>(order: number[], type: T, body: Body<T>, timeoutMs: number, hedgeMs: number | null): Promise<{ index: number; reply: TypedReply<T> }> {
    let lastErr: unknown; // an error is made only when there is one: its stack costs ~20 µs
    const ask = async (index: number): Promise<TypedReply<T> | undefined> => {
      try {
        return await this.to(this.providers[index]!.id, type, body, { timeoutMs });
      } catch (err) {
        if (!isCairnError(err) || !err.retryable) throw err;
        lastErr = err;
        return undefined;
      }
    };
    const { answers } = await hedged(order, ask, { need: 1, hedgeMs, onHedge: () => (this.readHedges += 1) });
    const first = answers[0];
    if (first === undefined) throw lastErr ?? new CairnError('UNAVAILABLE', 'no storage provider to ask');
    return { index: first.candidate, reply: first.answer };
  }

  /**
   * The height the chain's leader has applied: a read that waits for it sees every write that
   * is final so far, also those made through other web clients.
   */
  async headHeight(): Promise<number> {
    let status = await this.chain('chain.status', {});
    if (status.role !== 'leader' && status.leader) status = (await this.to(status.leader, 'chain.status', {}, { timeoutMs: READ_TIMEOUT_MS })).body;
    return status.applied;
  }

  async close(): Promise<void> {
    clearInterval(this.#prober);
    await Promise.all(this.providers.map((p) => p.client.close()));
  }
}
