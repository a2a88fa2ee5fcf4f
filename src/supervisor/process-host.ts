/**
 * Hosts each actor in a process of its own (`cairn provider --id sp2 …`), so a kill -9 or a
 * native crash of one touches no other. Ready is the READY_PREFIX line on the child's stdout;
 * everything else the child prints is passed through with its id.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CairnError } from '../errors.js';
import { READY_PREFIX, type ActorHost, type ActorReady, type ActorSpec, type RunningActor } from './actor.js';
import { ACTOR_HEAP_FLAGS } from './heap-flags.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
/** Tells an actor it has a supervisor at the other end of its IPC channel (and must end with it). */
export const SUPERVISED_ENV = 'CAIRN_SUPERVISED';

export class ProcessHost implements ActorHost {
  start(spec: ActorSpec): RunningActor {
    const child = spawn(process.execPath, [...ACTOR_HEAP_FLAGS, CLI, spec.role, ...spec.argv], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env: { ...process.env, [SUPERVISED_ENV]: 'process' } });
    child.channel?.unref(); // the channel only tells the child when this process is gone
    const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
    const ready = new Promise<ActorReady>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (line) => {
        if (line.startsWith(READY_PREFIX)) resolve(JSON.parse(line.slice(READY_PREFIX.length)) as ActorReady);
        else process.stdout.write(`[${spec.id}] ${line}\n`);
      });
      // The child said why on its stderr (passed through above).
      void exited.then((code) => reject(new CairnError('UNAVAILABLE', `${spec.id} exited with code ${code} before it was ready (its reason is above)`)));
    });
    ready.catch(() => undefined);
    return {
      spec,
      pid: child.pid,
      ready,
      exited,
      async stop(graceMs: number) {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      },
    };
  }
}
