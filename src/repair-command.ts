/**
 * `cairn repair`: runs a full repair pass on the chain leader of a running cluster and waits for
 * it, with progress. Exit 0 when the pass ends without failures. The leader is found first with short
 * questions to every SP at once, so a stalled SP delays the command by seconds, not by the whole wait.
 */
import { join } from 'node:path';
import { CairnError, isCairnError } from './errors.js';
import { readClusterFile, readClusterKey } from './config/cluster-file.js';
import { checkFlags, wholeNumber } from './config/config.js';
import { MailboxClient } from './mailbox/client.js';
import { call } from './mailbox/rpc.js';
import { tlsPskTransport } from './mailbox/transport.js';
import { Progress } from './progress.js';
import { describeRun, type RepairRun } from './provider/repairer.js';

const DEFAULT_WAIT_MS = 60 * 60_000;
/** A stalled SP (its process stopped, its host unreachable) costs the search this long, not the whole wait. */
const STATUS_TIMEOUT_MS = 5_000;
/** Rounds of asking every SP who leads: an election takes well under a second. */
const LEADER_ROUNDS = 5;
const ROUND_PAUSE_MS = 1_000;
/** Times the pass is asked for again when the leader changed in between. */
const START_TRIES = 3;

function waitMsOf(flags: Map<string, string>): number {
  const raw = flags.get('wait-ms');
  if (raw === undefined) return DEFAULT_WAIT_MS;
  return wholeNumber(raw, '--wait-ms (milliseconds)', 1_000, 24 * 60 * 60_000);
}

/** The index of the SP that leads the chain with a majority, asking every SP at once; null if none does. */
async function findLeader(clients: MailboxClient[]): Promise<number | null> {
  for (let round = 0; round < LEADER_ROUNDS; round++) {
    if (round > 0) await new Promise((r) => setTimeout(r, ROUND_PAUSE_MS));
    const statuses = await Promise.all(clients.map((c) => call(c, 'chain.status', {}, { timeoutMs: STATUS_TIMEOUT_MS }).then((r) => r.body, () => null)));
    const leader = statuses.findIndex((s) => s?.role === 'leader' && s.hasQuorum);
    if (leader >= 0) return leader;
  }
  return null;
}

/** Runs one pass on the leader and waits for it, showing progress; null if that SP no longer leads. */
async function runOn(client: MailboxClient, id: string, waitMs: number): Promise<RepairRun | null> {
  const pass = call(client, 'repair.start', { wait: true }, { timeoutMs: waitMs });
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
    const { run } = (await pass).body;
    if (!run) throw new CairnError('INTERNAL', `${id} did not report the pass`);
    return run;
  } catch (err) {
    if (isCairnError(err, 'NOT_LEADER')) return null;
    // The pass goes on there; asking another SP would only start a second search.
    if (isCairnError(err, 'TIMEOUT')) {
      throw new CairnError('TIMEOUT', `the repair pass on ${id} is still running after ${waitMs / 1000} s, or ${id} stopped answering; follow it on a web client's /cluster page`);
    }
    throw err;
  } finally {
    clearInterval(timer);
    progress.done();
  }
}

export async function repairCommand(flags: Map<string, string>): Promise<number> {
  checkFlags(flags, ['cluster', 'data-dir', 'wait-ms'], 'cairn repair');
  const waitMs = waitMsOf(flags);
  const clusterPath = flags.get('cluster') ?? join(flags.get('data-dir') ?? './data', 'cluster.json');
  const cluster = readClusterFile(clusterPath);
  const transport = tlsPskTransport(readClusterKey(clusterPath));
  const clients = cluster.providers.map((p) => new MailboxClient({ id: 'repair', address: p.address, transport, requestTimeoutMs: STATUS_TIMEOUT_MS }));
  try {
    for (let tries = 0; tries < START_TRIES; tries++) {
      const leader = await findLeader(clients);
      if (leader === null) break;
      const run = await runOn(clients[leader]!, cluster.providers[leader]!.id, waitMs);
      if (!run) continue;
      console.log(JSON.stringify(run));
      console.log(`repair: ${describeRun(run)}`);
      return run.failures === 0 ? 0 : 1;
    }
    throw new CairnError('NO_MAJORITY', 'no storage provider leads the chain right now; is a majority up?');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
