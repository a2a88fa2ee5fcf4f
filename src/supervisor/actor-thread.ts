/** Entry point of a thread-hosted actor: runs the role, reports ready, stops on request. */
import { parentPort, workerData } from 'node:worker_threads';
import { invariant, isCairnError } from '../errors.js';
import { startRole } from './roles.js';
import type { ThreadMessage } from './thread-host.js';

invariant(parentPort !== null, 'actor-thread runs inside a worker thread');
const port = parentPort;
const { argv } = workerData as { argv: string[] };

let running: Awaited<ReturnType<typeof startRole>>;
try {
  running = await startRole(argv);
} catch (err) {
  // A reason a person can act on (a port taken, a wrong data dir) crosses the thread as its code
  // and message; anything else is a bug and keeps its stack.
  port.postMessage({ event: 'failed', code: isCairnError(err) ? err.code : null, message: isCairnError(err) ? err.message : String((err as Error).stack ?? err) } satisfies ThreadMessage);
  port.close();
  process.exit(1);
}
port.postMessage({ event: 'ready', ready: running.ready } satisfies ThreadMessage);
port.on('message', (m: { cmd: string }) => {
  if (m.cmd !== 'stop') return;
  void running.role.stop().finally(() => {
    port.postMessage({ event: 'stopped' } satisfies ThreadMessage);
    port.close();
    process.exit(0);
  });
});
