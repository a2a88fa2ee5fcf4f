/**
 * The contract between the pure Raft core (raft.ts) and the shell that owns disk, network and clock.
 * Everything here is plain data so the shell can persist it and put it on the wire as it is.
 */
export type NodeId = string;

/** Height 0 is the genesis sentinel: term 0, hash = genesis hash, always present, always committed. */
export interface RaftEntry<T> {
  height: number;
  term: number;
  hash: string;
  prevHash: string;
  data: T;
}

export interface HardState {
  term: number;
  votedFor: NodeId | null;
  commit: number;
}

/** Synchronous reads of what the shell has persisted. */
export interface RaftStorage<T> {
  hardState(): HardState;
  lastHeight(): number;
  /** Defined for 0..lastHeight(). */
  entry(height: number): RaftEntry<T> | undefined;
}

/**
 * PreVote (Raft thesis §9.6): a node first asks whether it could win at term+1 without touching
 * its term, so a node that was partitioned away cannot force a working leader to step down
 * when it comes back. `term` in a preVote is the term the sender would campaign at.
 *
 * In a rejected appendResp, `matchHeight` echoes the rejected prevHeight (so the leader can tell
 * stale rejections from current ones) and hintHeight/hintTerm name the follower's last entry
 * that might still match, so the leader can skip whole terms when walking back.
 */
export type RaftMessage<T> =
  | { type: 'preVote'; term: number; lastHeight: number; lastTerm: number }
  | { type: 'preVoteResp'; term: number; granted: boolean }
  | { type: 'vote'; term: number; lastHeight: number; lastTerm: number }
  | { type: 'voteResp'; term: number; granted: boolean }
  | { type: 'append'; term: number; prevHeight: number; prevTerm: number; entries: RaftEntry<T>[]; commit: number }
  | { type: 'appendResp'; term: number; success: boolean; matchHeight: number; hintHeight?: number; hintTerm?: number };

export interface OutboundMessage<T> {
  to: NodeId;
  msg: RaftMessage<T>;
  /** Asynchronous storage only: send once this Ready, and every one before it, is durable. */
  afterDurable?: boolean;
}

/**
 * What one call into the core asks of the shell, in this order: persist hardState, truncation and
 * append durably (one transaction is the simple way to make a crash leave either all or none),
 * then send messages, then apply committed entries. With RaftOptions.asyncStorage the storage
 * must reflect the Ready at once and become durable later, and messages marked afterDurable wait
 * for that.
 */
export interface Ready<T> {
  hardState?: HardState;
  /** Delete persisted entries with height > this; only ever uncommitted ones. */
  truncateAfter?: number;
  /** Contiguous, starting right after the (possibly truncated) last entry. */
  append: RaftEntry<T>[];
  messages: OutboundMessage<T>[];
  /** Newly final entries in height order, each exactly once per process lifetime (from `applied`+1 on). */
  committed: RaftEntry<T>[];
  /** The shell should propose an (empty) entry of the new term at once: only that commits older entries. */
  becameLeader?: boolean;
  /**
   * Leader only: the commit index advanced and some follower has not been told. The next append
   * tells it for free; if the shell has nothing to propose it calls `flushCommit` (the next
   * heartbeat would also do, later).
   */
  commitUnsent?: boolean;
}

export interface RaftOptions<T> {
  id: NodeId;
  /** All voters, including id. */
  peers: NodeId[];
  electionTicksMin: number;
  electionTicksMax: number;
  heartbeatTicks: number;
  /** Uniform in [0,1), injected so a simulation can replay a run. */
  random: () => number;
  maxEntriesPerAppend: number;
  /**
   * With entryBytes (an entry's size on the wire, not undercounted), an append carries entries up
   * to this many bytes, and always at least one: appends must fit the transport's frames.
   */
  maxAppendBytes?: number;
  entryBytes?: (entry: RaftEntry<T>) => number;
  /** Follower-side block validation before append; false (or a throw) refuses the entry and everything after it. */
  validate?: (entry: RaftEntry<T>, prev: RaftEntry<T>) => boolean;
  /** Height the shell's state machine has already applied; committed entries after it are delivered again. Default 0. */
  applied?: number;
  /** propose() refuses with OVERLOADED while this many entries wait for commit. Default 256. */
  maxUncommitted?: number;
  /**
   * The shell makes a Ready's entries durable after the call returns (etcd-raft's asynchronous
   * storage writes) and reports each durable point with `durableTo`; until then the leader does
   * not count its own new entries toward a majority. The shell holds back each message marked
   * `afterDurable` until what came before it is durable, and sends the others at once. Default
   * false: a Ready's entries count as durable once returned.
   */
  asyncStorage?: boolean;
}

/** A node in its PreVote phase reports as 'candidate'. */
export type RaftRole = 'follower' | 'candidate' | 'leader';

export interface RaftStatus {
  id: NodeId;
  role: RaftRole;
  term: number;
  leader: NodeId | null;
  commit: number;
  lastHeight: number;
  /**
   * Leader: a majority (itself included) was heard from within electionTicksMin ticks.
   * Follower: it heard from a leader within electionTicksMin ticks. Candidates: false.
   */
  hasQuorum: boolean;
}
