/**
 * The one small interface between the supervisor and its actors, whatever hosts them:
 * start an actor, watch it (ready, exit), stop it. Thread and process hosts implement it.
 */
export type Role = 'provider' | 'client';

export interface ActorSpec {
  id: string; // sp1, client2, …
  role: Role;
  argv: string[]; // the same words `cairn <role> …` takes on the command line
}

export interface ActorReady {
  id: string;
  role: Role;
  url: string; // http://host:port for clients, host:port for SPs
}

export interface RunningActor {
  readonly spec: ActorSpec;
  readonly pid: number | undefined; // undefined for thread actors
  /** Resolves when the actor reports ready, rejects if it exits first. */
  readonly ready: Promise<ActorReady>;
  /** Resolves once with the exit code when the actor ends, for any reason. */
  readonly exited: Promise<number>;
  /** Asks the actor to finish in-flight work and stop; force-stops after the grace period. */
  stop(graceMs: number): Promise<void>;
}

export interface ActorHost {
  start(spec: ActorSpec): RunningActor;
}

/** What a role gives back once running; `stop` finishes or fails in-flight work clearly. */
export interface RunningRole {
  url: string;
  stop(): Promise<void>;
}

/** The line a process-hosted actor prints when ready; the process host waits for it. */
export const READY_PREFIX = '@@cairn-actor-ready ';
