/** Entry point of a thread-hosted actor: runs the role, reports ready, stops on request. */
import { parentPort, workerData } from 'node:worker_threads';
import { invariant } from '../errors.js';
import { startRole } from './roles.js';
import type { ThreadMessage } from './thread-host.js';

invariant(parentPort !== null, 'actor-thread runs inside a worker thread');
const port = parentPort;
const { argv } = workerData as { argv: string[] };

const running = await startRole(argv);
port.postMessage({ event: 'ready', ready: running.ready } satisfies ThreadMessage);
port.on('message', (m: { cmd: string }) => {
  if (m.cmd !== 'stop') return;
  void running.role.stop().finally(() => {
    port.postMessage({ event: 'stopped' } satisfies ThreadMessage);
    port.close();
    process.exit(0);
  });
});
