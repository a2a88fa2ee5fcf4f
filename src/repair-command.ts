/**
 * `cairn repair`: runs a full repair pass on the chain leader of a running cluster and waits for
 * it, with progress. Exit 0 when the pass ends without failures.
 */
import { join } from 'node:path';
import { CairnError, isCairnError } from './errors.js';
import { readClusterFile, readClusterKey } from './config/cluster-file.js';
import { MailboxClient } from './mailbox/client.js';
import { call } from './mailbox/rpc.js';
import { tlsPskTransport } from './mailbox/transport.js';
import { Progress } from './progress.js';
import { describeRun } from './provider/repairer.js';

const REPAIR_WAIT_MS = 60 * 60_000;

export async function repairCommand(flags: Map<string, string>): Promise<number> {
  const clusterPath = flags.get('cluster') ?? join(flags.get('data-dir') ?? './data', 'cluster.json');
  const cluster = readClusterFile(clusterPath);
  const transport = tlsPskTransport(readClusterKey(clusterPath));
  const clients = cluster.providers.map((p) => new MailboxClient({ id: 'repair', address: p.address, transport, requestTimeoutMs: REPAIR_WAIT_MS }));
  try {
    for (const client of clients) {
      let run;
      try {
        const pass = call(client, 'repair.start', { wait: true });
        const progress = new Progress('repair');
        let total = 0;
        const timer = setInterval(() => {
          call(client, 'repair.status', {}, { timeoutMs: 2_000 }).then(
            ({ body }) => {
              const r = body.lastRun;
              total = Math.max(total, body.backlog + (r?.shardsRebuilt ?? 0));
              progress.update(r?.shardsRebuilt ?? 0, total, `${r?.segmentsChecked ?? 0} segments checked, backlog ${body.backlog}`);
            },
            () => undefined,
          );
        }, 500);
        try {
          run = (await pass).body.run;
        } finally {
          clearInterval(timer);
        }
        progress.done();
      } catch (err) {
        // A pass longer than the wait is still under way there: not a reason to ask another SP.
        if (isCairnError(err, 'TIMEOUT')) throw new CairnError('TIMEOUT', `the repair pass on ${cluster.providers[clients.indexOf(client)]!.id} is still running after ${REPAIR_WAIT_MS / 60_000} min; follow it on a web client's /cluster page`);
        if (isCairnError(err) && err.retryable) continue; // not the leader, or down: ask the next SP
        throw err;
      }
      if (!run) throw new CairnError('INTERNAL', 'the leader did not report the pass');
      console.log(JSON.stringify(run));
      console.log(`repair: ${describeRun(run)}`);
      return run.failures === 0 ? 0 : 1;
    }
    throw new CairnError('NO_MAJORITY', 'no storage provider leads the chain right now; is a majority up?');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
