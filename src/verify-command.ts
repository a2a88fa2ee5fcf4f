/**
 * `cairn verify`: checks every replica of the chain and exits 0 only if all hold. With
 * --data-dir it reads each SP's LMDB directly (works with SPs stopped); with --cluster it asks
 * each running SP over its mailbox.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { ChainStore } from './chain/chain-store.js';
import { verifyReplica, type ReplicaReport } from './chain/verify.js';
import { readClusterFile, readClusterKey } from './config/cluster-file.js';
import { checkFlags } from './config/config.js';
import { MailboxClient } from './mailbox/client.js';
import { call } from './mailbox/rpc.js';
import { tlsPskTransport } from './mailbox/transport.js';
import { lmdbDir, openProviderDbs } from './provider/store.js';

type Report = Pick<ReplicaReport, 'provider' | 'ok' | 'height' | 'head' | 'problems'>;

export async function verifyCommand(flags: Map<string, string>): Promise<number> {
  checkFlags(flags, ['cluster', 'data-dir'], 'cairn verify');
  const dataDir = flags.get('data-dir');
  const clusterPath = flags.get('cluster') ?? (dataDir ? join(dataDir, 'cluster.json') : './data/cluster.json');
  const cluster = readClusterFile(clusterPath);
  const reports: Report[] = [];
  /** Each replica's block hash at one height all of them hold: replicas that each verify alone may still differ. */
  const at = new Map<string, string>();
  let common = 0;
  if (dataDir) {
    const open: { id: string; dbs: ReturnType<typeof openProviderDbs>; store: ChainStore }[] = [];
    try {
      for (const p of cluster.providers) {
        const dir = lmdbDir(dataDir, p.id);
        if (!existsSync(join(dir, 'data.mdb'))) {
          reports.push({ provider: p.id, ok: false, height: 0, head: '', problems: [{ height: 0, problem: `no LMDB files in ${dir}` }] });
          continue;
        }
        const dbs = openProviderDbs(dir);
        try {
          const store = new ChainStore(dbs, cluster.genesis);
          open.push({ id: p.id, dbs, store });
          reports.push(await verifyReplica(p.id, store));
        } catch (err) {
          reports.push({ provider: p.id, ok: false, height: 0, head: '', problems: [{ height: 0, problem: (err as Error).message }] });
        }
      }
      common = Math.min(...reports.filter((r) => r.ok).map((r) => r.height));
      for (const o of open) {
        const hash = Number.isFinite(common) && common > 0 ? o.store.block(common)?.hash : undefined;
        if (hash) at.set(o.id, hash);
      }
    } finally {
      for (const o of open) await o.dbs.root.close();
    }
  } else {
    const transport = tlsPskTransport(readClusterKey(clusterPath));
    const clients = cluster.providers.map((p) => ({ id: p.id, client: new MailboxClient({ id: 'verify', address: p.address, transport, requestTimeoutMs: 120_000 }) }));
    try {
      // Compared at the height every replica answering has applied (a follower a block behind is no fault).
      const applied = await Promise.all(clients.map(({ client }) => call(client, 'chain.status', {}, { timeoutMs: 5_000 }).then((r) => r.body.applied, () => null)));
      common = Math.min(...applied.filter((h): h is number => h !== null));
      for (const { id, client } of clients) {
        try {
          const report = (await call(client, 'chain.verify', Number.isFinite(common) && common > 0 ? { atHeight: common } : {})).body;
          reports.push(report);
          if (report.at) at.set(id, report.at.hash);
        } catch (err) {
          reports.push({ provider: id, ok: false, height: 0, head: '', problems: [{ height: 0, problem: `unreachable: ${(err as Error).message}` }] });
        }
      }
    } finally {
      await Promise.all(clients.map(({ client }) => client.close()));
    }
  }
  const differ = new Set(at.values()).size > 1;
  if (differ) {
    for (const r of reports) {
      if (at.has(r.provider)) {
        r.ok = false;
        r.problems.push({ height: common, problem: `replicas differ at height ${common}: ${[...at].map(([id, hash]) => `${id} ${hash.slice(0, 12)}`).join(', ')}` });
      }
    }
  }
  for (const r of reports) {
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.provider} height ${r.height} head ${r.head.slice(0, 16)}`);
    for (const p of r.problems) console.log(`     ${r.provider} block ${p.height}: ${p.problem}`);
  }
  const ok = reports.every((r) => r.ok);
  console.log(JSON.stringify({ ok, replicas: reports }));
  return ok ? 0 : 1;
}
