/** Runs a repair pass through the API and waits for it to finish. */
import type { Api } from './http.js';
import { waitFor } from './cluster.js';

export async function repairAndWait(api: Api, timeoutMs = 60_000): Promise<any> {
  const started = Date.now();
  const r = await api.call('POST', '/api/v1/cluster/repair');
  if (r.status !== 202) throw new Error(`repair did not start: ${r.status} ${JSON.stringify(r.body)}`);
  return waitFor('the repair pass to finish', async () => {
    const c = await api.call('GET', '/api/v1/cluster');
    const repair = c.body.repair;
    return repair && !repair.running && repair.lastRun && repair.lastRun.finishedAt >= started ? repair.lastRun : undefined;
  }, timeoutMs, 200);
}

export async function allHealthy(api: Api, timeoutMs = 30_000): Promise<void> {
  await waitFor('every file to report ok', async () => {
    const list = await api.call('GET', '/api/v1/files');
    return list.status === 200 && list.body.every((f: { health: string }) => f.health === 'ok');
  }, timeoutMs, 250);
}
