/**
 * One-for-one supervision in the OTP manner: each actor is watched, and one that dies is
 * restarted alone, after a backoff that doubles with each crash. More than `maxRestarts` crashes
 * inside `windowMs` is a crash loop: it is reported and that actor is left down.
 */
import { EventEmitter } from 'node:events';
import type { ActorHost, ActorReady, ActorSpec, RunningActor } from './actor.js';

export interface SupervisorOptions {
  host: ActorHost;
  maxRestarts: number;
  windowMs: number;
  backoffMs: number;
  maxBackoffMs: number;
  stopGraceMs: number;
  log: (line: string) => void;
}

export const DEFAULT_SUPERVISION = { maxRestarts: 5, windowMs: 60_000, backoffMs: 200, maxBackoffMs: 5_000, stopGraceMs: 10_000 };

interface Child {
  spec: ActorSpec;
  current: RunningActor;
  crashes: number[]; // times of recent crashes, bounded by maxRestarts + 1
  restarts: number;
  gaveUp: boolean;
}

export interface ChildStatus {
  id: string;
  pid: number | undefined;
  restarts: number;
  gaveUp: boolean;
}

export class Supervisor extends EventEmitter {
  readonly #children = new Map<string, Child>();
  #stopping = false;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: SupervisorOptions) {
    super();
  }

  /** Starts every actor and resolves when all of them are ready. */
  async start(specs: ActorSpec[]): Promise<ActorReady[]> {
    for (const spec of specs) this.#children.set(spec.id, this.#launch(spec));
    return Promise.all(specs.map((s) => this.#children.get(s.id)!.current.ready));
  }

  status(): ChildStatus[] {
    return [...this.#children.values()].map((c) => ({
      id: c.spec.id,
      pid: c.current.pid,
      restarts: c.restarts,
      gaveUp: c.gaveUp,
    }));
  }

  #launch(spec: ActorSpec, previous?: Child): Child {
    const child: Child = previous ?? { spec, current: undefined as unknown as RunningActor, crashes: [], restarts: 0, gaveUp: false };
    child.current = this.opts.host.start(spec);
    const running = child.current;
    void running.exited.then((code) => this.#onExit(child, running, code));
    return child;
  }

  #onExit(child: Child, running: RunningActor, code: number): void {
    if (this.#stopping || child.current !== running) return;
    const now = Date.now();
    child.crashes = [...child.crashes.filter((t) => now - t < this.opts.windowMs), now].slice(-(this.opts.maxRestarts + 1));
    if (child.crashes.length > this.opts.maxRestarts) {
      child.gaveUp = true;
      this.opts.log(`${child.spec.id} crashed ${child.crashes.length} times within ${this.opts.windowMs} ms; not restarting it (crash loop)`);
      this.emit('gave-up', child.spec.id);
      return;
    }
    const delay = Math.min(this.opts.maxBackoffMs, this.opts.backoffMs * 2 ** (child.crashes.length - 1));
    this.opts.log(`${child.spec.id} exited with code ${code}; restarting in ${delay} ms`);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#stopping) return;
      child.restarts += 1;
      this.#launch(child.spec, child);
      child.current.ready.then(
        (ready) => this.emit('restarted', ready),
        (err: Error) => this.opts.log(`${child.spec.id} failed to restart: ${err.message}`),
      );
    }, delay);
    this.#timers.add(timer);
  }

  /** Stops clients first (they stop taking uploads), then SPs, each with a grace period. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    const byRole = (role: string) => [...this.#children.values()].filter((c) => c.spec.role === role);
    await Promise.all(byRole('client').map((c) => c.current.stop(this.opts.stopGraceMs)));
    await Promise.all(byRole('provider').map((c) => c.current.stop(this.opts.stopGraceMs)));
  }
}
