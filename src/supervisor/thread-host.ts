/** Hosts actors on worker threads of this process: light, and one Ctrl-C stops everything. */
import { Worker } from 'node:worker_threads';
import { CairnError, type ErrorCode } from '../errors.js';
import type { ActorHost, ActorReady, ActorSpec, RunningActor } from './actor.js';

const ENTRY = new URL('./actor-thread.js', import.meta.url);

export type ThreadMessage = { event: 'ready'; ready: ActorReady } | { event: 'failed'; code: ErrorCode | null; message: string } | { event: 'stopped' };

export class ThreadHost implements ActorHost {
  start(spec: ActorSpec): RunningActor {
    const worker = new Worker(ENTRY, { workerData: { argv: [spec.role, ...spec.argv] }, stdout: false, stderr: false });
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const ready = new Promise<ActorReady>((resolve, reject) => {
      worker.on('message', (m: ThreadMessage) => {
        if (m.event === 'ready') resolve(m.ready);
        else if (m.event === 'failed') reject(m.code ? new CairnError(m.code, `${spec.id} could not start: ${m.message}`) : new Error(`${spec.id} could not start: ${m.message}`));
      });
      worker.once('error', (err) => reject(err));
      void exited.then((code) => reject(new Error(`${spec.id} exited with code ${code} before it was ready`)));
    });
    ready.catch(() => undefined);
    worker.on('error', (err) => console.error(`[${spec.id}] crashed: ${err.stack ?? err.message}`));
    return {
      spec,
      pid: undefined,
      ready,
      exited,
      async stop(graceMs: number) {
        worker.postMessage({ cmd: 'stop' });
        const timer = setTimeout(() => void worker.terminate(), graceMs);
        await exited;
        clearTimeout(timer);
      },
    };
  }
}
