/**
 * Chain finality of a running cluster: transactions per second made final, and the time from
 * submission to finality, with N concurrent submitters.
 *
 * No API route submits a bare transaction without other work in front of it (`POST /api/v1/users`
 * spends a scrypt on the web client first; an upload stores shards first), so this benchmark
 * writes the transactions itself with the project's own modules, as a web client does: a signed
 * `user.register` (signTx, a fresh Ed25519 key per user), sent as `chain.submit` over the mailbox
 * (TLS-PSK with the cluster key from the data dir) to the leader SP. `chain.submit` answers once
 * the transaction is final, so its round trip is the submit→final latency. Each transaction is
 * signed (~0.1 ms) just before its clock starts, so latency is the chain's, not the signer's.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { genesisHash } from '../../src/chain/genesis.js';
import { signTx, type Tx } from '../../src/chain/tx.js';
import { readClusterFile, readClusterKey } from '../../src/config/cluster-file.js';
import { newSigningSeed, signingKeyFromSeed } from '../../src/crypto/keys.js';
import { MailboxClient } from '../../src/mailbox/client.js';
import type { ChainStatus, Replies } from '../../src/mailbox/messages.js';
import { call } from '../../src/mailbox/rpc.js';
import { tlsPskTransport } from '../../src/mailbox/transport.js';

export interface FinalityLevel {
  submitters: number;
  submitted: number;
  final: number;
  rejected: number;
  errors: number;
  seconds: number;
  txPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Blocks the chain grew by during the run, and transactions per block on average. */
  blocks: number;
  txPerBlock: number;
  firstError?: string;
}

export interface FinalityResult {
  method: string;
  leader: string;
  levels: FinalityLevel[];
}

/** Submitters per mailbox connection: at most what an SP serves at once on one connection. */
const PER_CONNECTION = 16;

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * One signing key for every benchmark user: the rules check that a registration is signed by the
 * key it publishes, not that keys differ, and deriving a fresh Ed25519 key costs ~10× a signature.
 */
const benchKey = signingKeyFromSeed(newSigningSeed());
const benchBoxKey = randomBytes(32).toString('hex');

function registerTx(prefix: string, i: number, chain: string): Tx {
  const key = benchKey;
  const username = `${prefix}${i.toString(36)}`;
  return signTx(
    {
      type: 'user.register',
      username,
      signKey: key.publicKey,
      boxKey: benchBoxKey,
      kdf: { alg: 'scrypt', N: 1 << 14, r: 8, p: 1, salt: randomBytes(16).toString('hex') },
    },
    username,
    key,
    chain,
  );
}

export async function benchFinality(
  dataDir: string,
  options: { levels: number[]; secondsPerLevel: number; maxTxPerLevel: number; onProgress?: (fraction: number, note: string) => void },
): Promise<FinalityResult> {
  const clusterPath = join(dataDir, 'cluster.json');
  const cluster = readClusterFile(clusterPath);
  const chain = genesisHash(cluster.genesis);
  const transport = tlsPskTransport(readClusterKey(clusterPath));
  const clients: MailboxClient[] = [];
  const connect = (address: string) => {
    const c = new MailboxClient({ id: 'bench', address, transport, requestTimeoutMs: 30_000, maxInFlight: PER_CONNECTION, maxQueued: 4096 });
    clients.push(c);
    return c;
  };
  try {
    // Find the leader (any SP knows it once elected).
    let status: ChainStatus | undefined;
    const deadline = Date.now() + 15_000;
    while (!status?.leader) {
      for (const p of cluster.providers) {
        try {
          status = (await call(connect(p.address), 'chain.status', {}, { timeoutMs: 2_000 })).body;
          if (status.leader) break;
        } catch {
          /* try the next */
        }
      }
      if (Date.now() > deadline) throw new Error('no chain leader within 15 s');
      if (!status?.leader) await new Promise((r) => setTimeout(r, 100));
    }
    const leader = cluster.providers.find((p) => p.id === status!.leader)!;
    const height = async () => (await call(clients[0]!, 'chain.status', {}, { timeoutMs: 5_000 })).body.commit;

    const levels: FinalityLevel[] = [];
    const prefix = `fb${randomBytes(3).toString('hex')}`;
    let next = 0;
    for (const [li, n] of options.levels.entries()) {
      const conns = Array.from({ length: Math.ceil(n / PER_CONNECTION) }, () => connect(leader.address));
      // Open the connections (TLS handshakes) before the clock starts.
      await Promise.all(conns.map((c) => call(c, 'chain.status', {}, { timeoutMs: 5_000 })));
      const latencies: number[] = [];
      let taken = 0;
      let rejected = 0;
      let errors = 0;
      let firstError: string | undefined;
      const h0 = await height();
      const started = performance.now();
      const until = started + options.secondsPerLevel * 1000;
      await Promise.all(
        Array.from({ length: n }, async (_, s) => {
          const conn = conns[Math.floor(s / PER_CONNECTION)]!;
          while (performance.now() < until && taken < options.maxTxPerLevel) {
            taken += 1;
            const tx = registerTx(prefix, next++, chain); // ~0.1 ms, before the clock starts for this one
            const t0 = performance.now();
            try {
              const r: Replies['chain.submit'] = (await call(conn, 'chain.submit', { tx }, { timeoutMs: 30_000 })).body;
              latencies.push(performance.now() - t0);
              if (!r.ok) rejected += 1;
            } catch (err) {
              errors += 1;
              firstError ??= (err as Error).message;
            }
            options.onProgress?.((li + Math.min(1, (performance.now() - started) / (options.secondsPerLevel * 1000))) / options.levels.length, `${n} submitters`);
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const blocks = (await height()) - h0;
      latencies.sort((a, b) => a - b);
      const level: FinalityLevel = {
        submitters: n,
        submitted: taken,
        final: latencies.length,
        rejected,
        errors,
        seconds: Math.round(seconds * 100) / 100,
        txPerSec: Math.round(latencies.length / seconds),
        p50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
        p99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
        maxMs: Math.round((latencies[latencies.length - 1] ?? 0) * 10) / 10,
        blocks,
        txPerBlock: blocks > 0 ? Math.round((latencies.length / blocks) * 10) / 10 : 0,
      };
      if (firstError !== undefined) level.firstError = firstError;
      levels.push(level);
    }
    return {
      method: 'signed user.register transactions sent as chain.submit over the mailbox (TLS-PSK) to the leader SP; latency = submit until the reply that says final',
      leader: leader.id,
      levels,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
