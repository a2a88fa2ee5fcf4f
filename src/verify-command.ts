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
  if (dataDir) {
    for (const p of cluster.providers) {
      const dir = lmdbDir(dataDir, p.id);
      if (!existsSync(join(dir, 'data.mdb'))) {
        reports.push({ provider: p.id, ok: false, height: 0, head: '', problems: [{ height: 0, problem: `no LMDB files in ${dir}` }] });
        continue;
      }
      const dbs = openProviderDbs(dir);
      try {
        reports.push(await verifyReplica(p.id, new ChainStore(dbs, cluster.genesis)));
      } catch (err) {
        reports.push({ provider: p.id, ok: false, height: 0, head: '', problems: [{ height: 0, problem: (err as Error).message }] });
      } finally {
        await dbs.root.close();
      }
    }
  } else {
    const transport = tlsPskTransport(readClusterKey(clusterPath));
    for (const p of cluster.providers) {
      const client = new MailboxClient({ id: 'verify', address: p.address, transport, requestTimeoutMs: 120_000 });
      try {
        reports.push((await call(client, 'chain.verify', {})).body);
      } catch (err) {
        reports.push({ provider: p.id, ok: false, height: 0, head: '', problems: [{ height: 0, problem: `unreachable: ${(err as Error).message}` }] });
      } finally {
        await client.close();
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
