/**
 * The Raft consensus core as a pure state machine in the etcd-raft manner: no I/O, no timers, no
 * ambient randomness. Each call (tick, step, propose) returns a Ready that the shell must apply in
 * full before it calls again, so storage always reflects every earlier call. With asyncStorage
 * the shell may make it durable later and says when (durableTo).
 *
 * Choices beyond the Raft paper:
 * - PreVote plus leader stickiness: a node that heard from a leader within electionTicksMin (or a
 *   leader that still has its quorum) ignores votes, so a node rejoining after a partition cannot
 *   depose a healthy leader.
 * - CheckQuorum on every tick: a leader that has not heard from a majority within electionTicksMin
 *   steps down, so a leader cut off in a minority stops claiming leadership quickly.
 * - Hash linking on top of log matching: an entry is accepted only if its prevHash is the hash of
 *   the entry before it.
 */
import { CairnError, invariant } from '../errors.js';
import type {
  HardState,
  NodeId,
  RaftEntry,
  RaftMessage,
  RaftOptions,
  RaftRole,
  RaftStatus,
  RaftStorage,
  Ready,
} from './raft-types.js';

export type * from './raft-types.js';

/** Bounds the committed list of one Ready; the rest comes with later calls (e.g. after a restart). */
const MAX_COMMITTED_PER_READY = 1024;
/** A follower in replicate state may have this many appends' worth of entries unacknowledged. */
const INFLIGHT_APPENDS = 8;
const DEFAULT_MAX_UNCOMMITTED = 256;

type Role = RaftRole | 'precandidate';

interface Progress {
  match: number;
  next: number;
  /** Probe: one append at a time until the follower's log position is known; replicate: pipelined. */
  probing: boolean;
  /** Probe only: an append is outstanding, wait for its answer or the next heartbeat. */
  paused: boolean;
  lastHeard: number;
  matchAtHeartbeat: number;
  /** The commit index the follower was last sent. */
  sentCommit: number;
}

type AppendMsg<T> = Extract<RaftMessage<T>, { type: 'append' }>;
type AppendResp<T> = Extract<RaftMessage<T>, { type: 'appendResp' }>;
type VoteMsg<T> = Extract<RaftMessage<T>, { type: 'vote' | 'preVote' }>;
type VoteResp<T> = Extract<RaftMessage<T>, { type: 'voteResp' | 'preVoteResp' }>;

function isHeight(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export class RaftCore<T> {
  private readonly id: NodeId;
  private readonly others: NodeId[];
  private readonly quorum: number;
  private readonly opts: Required<Omit<RaftOptions<T>, 'validate' | 'applied' | 'asyncStorage' | 'maxAppendBytes' | 'entryBytes'>> &
    Pick<RaftOptions<T>, 'validate' | 'asyncStorage' | 'maxAppendBytes' | 'entryBytes'>;
  private readonly storage: RaftStorage<T>;

  private term: number;
  private votedFor: NodeId | null;
  private commit: number;
  private persisted: HardState;

  private role: Role = 'follower';
  private leader: NodeId | null = null;
  private now = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private electionTimeout = 0;
  private readonly votes = new Map<NodeId, boolean>();
  private readonly progress = new Map<NodeId, Progress>();
  /** Delivery cursor for Ready.committed. */
  private applied: number;

  private lastHeight: number;
  /** The height up to which this node's own log is known durable (see RaftOptions.asyncStorage). */
  private durable: number;
  /** Entries appended during the current call, not yet in storage: heights pendingBase+1… */
  private pendingBase = -1;
  private pending: RaftEntry<T>[] = [];
  private ready: Ready<T> = { append: [], messages: [], committed: [] };

  constructor(opts: RaftOptions<T>, storage: RaftStorage<T>) {
    checkOptions(opts);
    this.opts = { ...opts, maxUncommitted: opts.maxUncommitted ?? DEFAULT_MAX_UNCOMMITTED };
    this.id = opts.id;
    this.others = [...new Set(opts.peers)].filter((p) => p !== opts.id);
    this.quorum = Math.floor((this.others.length + 1) / 2) + 1;
    this.storage = storage;

    const hs = storage.hardState();
    this.term = hs.term;
    this.votedFor = hs.votedFor;
    this.commit = hs.commit;
    this.persisted = { ...hs };
    this.lastHeight = storage.lastHeight();
    this.durable = this.lastHeight;
    invariant(storage.entry(0)?.term === 0, 'storage has no genesis sentinel at height 0');
    invariant(this.commit <= this.lastHeight, `persisted commit ${this.commit} is beyond the log (${this.lastHeight})`);
    this.applied = opts.applied ?? 0;
    invariant(isHeight(this.applied) && this.applied <= this.commit, `applied ${this.applied} is beyond commit ${this.commit}`);
    this.becomeFollower(this.term, null);
  }

  tick(): Ready<T> {
    this.begin();
    this.now++;
    if (this.role === 'leader') this.tickLeader();
    else if (++this.electionElapsed >= this.electionTimeout) this.campaign(true);
    return this.finish();
  }

  step(from: NodeId, message: RaftMessage<T>): Ready<T> {
    this.begin();
    const msg = typeof from === 'string' && this.others.includes(from) ? this.parse(message) : null;
    if (msg) this.handle(from, msg);
    return this.finish();
  }

  propose(make: (height: number, term: number, prevHash: string) => RaftEntry<T>): Ready<T> {
    this.begin();
    if (this.role !== 'leader') {
      throw new CairnError('NOT_LEADER', `${this.id} is not the leader${this.leader ? `; ${this.leader} is` : ''}`);
    }
    const hasOwnEntry = this.termAt(this.lastHeight) === this.term;
    // The first entry of a term is always accepted: without it nothing older can ever commit.
    if (hasOwnEntry && this.lastHeight - this.commit >= this.opts.maxUncommitted) {
      throw new CairnError('OVERLOADED', `${this.lastHeight - this.commit} entries are waiting for commit`);
    }
    const prev = this.entryAt(this.lastHeight);
    const entry = make(prev.height + 1, this.term, prev.hash);
    invariant(
      entry.height === prev.height + 1 && entry.term === this.term && entry.prevHash === prev.hash,
      'proposed entry does not extend the log at the given height, term and prevHash',
    );
    this.appendLocal([entry]);
    for (const p of this.others) this.sendAppend(p, false);
    this.maybeCommit();
    return this.finish();
  }

  /**
   * The shell's report that its log up to `height` (with that entry's term) is durable. Reports
   * of entries since replaced (a truncation) are ignored; a leader may commit as a result.
   */
  durableTo(height: number, term: number): Ready<T> {
    this.begin();
    if (height > this.durable && height <= this.lastHeight && this.termAt(height) === term) {
      this.durable = height;
      if (this.role === 'leader' && this.maybeCommit()) this.broadcastCommit();
    }
    return this.finish();
  }

  /** Leader only: tells followers a commit index they have not been sent yet (see Ready.commitUnsent). */
  flushCommit(): Ready<T> {
    this.begin();
    if (this.role === 'leader') {
      for (const [p, pr] of this.progress) if (this.lacksCommit(pr)) this.sendAppend(p, true);
    }
    return this.finish();
  }

  status(): RaftStatus {
    return {
      id: this.id,
      role: this.role === 'precandidate' ? 'candidate' : this.role,
      term: this.term,
      leader: this.leader,
      commit: this.commit,
      lastHeight: this.lastHeight,
      hasQuorum: this.inLease(),
    };
  }

  // ---- call framing ------------------------------------------------------------------------

  private begin(): void {
    invariant(
      this.storage.lastHeight() === this.lastHeight,
      `storage holds ${this.storage.lastHeight()} entries, the core expects ${this.lastHeight}: the previous Ready was not applied`,
    );
    this.pendingBase = -1;
    this.pending = [];
    this.ready = { append: [], messages: [], committed: [] };
  }

  private finish(): Ready<T> {
    const ready = this.ready;
    ready.append = this.pending;
    if (ready.commitUnsent) {
      ready.commitUnsent = this.role === 'leader' && [...this.progress.values()].some((pr) => this.lacksCommit(pr));
    }
    while (this.applied < this.commit && ready.committed.length < MAX_COMMITTED_PER_READY) {
      ready.committed.push(this.entryAt(++this.applied));
    }
    const p = this.persisted;
    if (p.term !== this.term || p.votedFor !== this.votedFor || p.commit !== this.commit) {
      invariant(this.term >= p.term && this.commit >= p.commit, 'term and commit never decrease');
      this.persisted = { term: this.term, votedFor: this.votedFor, commit: this.commit };
      ready.hardState = { ...this.persisted };
    }
    return ready;
  }

  // ---- log view: storage plus what this call appended --------------------------------------

  private entryAt(height: number): RaftEntry<T> {
    invariant(height >= 0 && height <= this.lastHeight, `entry ${height} is outside the log 0..${this.lastHeight}`);
    const e = this.pendingBase >= 0 && height > this.pendingBase ? this.pending[height - this.pendingBase - 1] : this.storage.entry(height);
    invariant(e !== undefined && e.height === height, `storage has no entry at height ${height}`);
    return e;
  }

  private termAt(height: number): number {
    return this.entryAt(height).term;
  }

  private truncate(after: number): void {
    invariant(after >= this.commit, `truncating after ${after} would remove committed entries (commit ${this.commit})`);
    invariant(this.pendingBase < 0 && this.ready.truncateAfter === undefined, 'one truncation per call, before any append');
    this.ready.truncateAfter = after;
    this.lastHeight = after;
    this.durable = Math.min(this.durable, after);
  }

  private appendLocal(entries: RaftEntry<T>[]): void {
    if (this.pendingBase < 0) this.pendingBase = this.lastHeight;
    this.pending.push(...entries);
    this.lastHeight += entries.length;
  }

  /** Entries from..to, cut short where the next would take the batch past maxAppendBytes (never below one). */
  private entriesFrom(from: number, to: number): RaftEntry<T>[] {
    const { entryBytes, maxAppendBytes = Infinity } = this.opts;
    const out: RaftEntry<T>[] = [];
    let bytes = 0;
    for (let h = from; h <= to; h++) {
      const entry = this.entryAt(h);
      bytes += entryBytes ? entryBytes(entry) : 0;
      if (out.length > 0 && bytes > maxAppendBytes) break;
      out.push(entry);
    }
    return out;
  }

  // ---- roles -------------------------------------------------------------------------------

  private becomeFollower(term: number, leader: NodeId | null): void {
    if (term > this.term) {
      this.term = term;
      this.votedFor = null;
    }
    this.role = 'follower';
    this.leader = leader;
    this.progress.clear();
    this.votes.clear();
    this.resetElectionTimer();
  }

  private resetElectionTimer(): void {
    this.electionElapsed = 0;
    const r = this.opts.random();
    invariant(r >= 0 && r < 1, 'random() must return a number in [0,1)');
    const { electionTicksMin: min, electionTicksMax: max } = this.opts;
    this.electionTimeout = min + Math.floor(r * (max - min + 1));
  }

  private campaign(pre: boolean): void {
    if (pre) {
      this.role = 'precandidate';
    } else {
      this.role = 'candidate';
      this.term += 1;
      this.votedFor = this.id;
    }
    this.leader = null;
    this.votes.clear();
    this.votes.set(this.id, true);
    this.resetElectionTimer();
    if (this.tallyVotes()) return;
    const lastTerm = this.termAt(this.lastHeight);
    const msg: RaftMessage<T> = pre
      ? { type: 'preVote', term: this.term + 1, lastHeight: this.lastHeight, lastTerm }
      : { type: 'vote', term: this.term, lastHeight: this.lastHeight, lastTerm };
    for (const p of this.others) this.send(p, msg);
  }

  /** Moves the election on once a majority has answered either way; true if it ended. */
  private tallyVotes(): boolean {
    let granted = 0;
    let rejected = 0;
    for (const g of this.votes.values()) g ? granted++ : rejected++;
    if (granted >= this.quorum) {
      if (this.role === 'precandidate') this.campaign(false);
      else this.becomeLeader();
      return true;
    }
    if (rejected >= this.quorum) {
      this.becomeFollower(this.term, null);
      return true;
    }
    return false;
  }

  private becomeLeader(): void {
    this.role = 'leader';
    this.leader = this.id;
    this.heartbeatElapsed = 0;
    this.progress.clear();
    for (const p of this.others) {
      this.progress.set(p, {
        match: 0,
        next: this.lastHeight + 1,
        probing: true,
        paused: false,
        // Voters were just heard from; CheckQuorum starts from them.
        lastHeard: this.votes.get(p) === true ? this.now : -Infinity,
        matchAtHeartbeat: 0,
        sentCommit: 0,
      });
    }
    this.votes.clear();
    this.ready.becameLeader = true;
    for (const p of this.others) this.sendAppend(p, true);
  }

  private hasQuorum(): boolean {
    let heard = 1;
    for (const pr of this.progress.values()) if (this.now - pr.lastHeard < this.opts.electionTicksMin) heard++;
    return heard >= this.quorum;
  }

  private inLease(): boolean {
    if (this.role === 'leader') return this.hasQuorum();
    return this.role === 'follower' && this.leader !== null && this.electionElapsed < this.opts.electionTicksMin;
  }

  private tickLeader(): void {
    if (!this.hasQuorum()) {
      this.becomeFollower(this.term, null);
      return;
    }
    if (++this.heartbeatElapsed < this.opts.heartbeatTicks) return;
    this.heartbeatElapsed = 0;
    for (const p of this.others) {
      const pr = this.progress.get(p)!;
      // A pipelined follower that made no progress for a whole heartbeat lost something: re-probe.
      if (!pr.probing && pr.match < this.lastHeight && pr.match === pr.matchAtHeartbeat) {
        pr.probing = true;
        pr.next = pr.match + 1;
      }
      pr.matchAtHeartbeat = pr.match;
      this.sendAppend(p, true);
    }
  }

  // ---- messages ----------------------------------------------------------------------------

  /**
   * With asynchronous storage, what depends on state not yet durable waits for it (afterDurable):
   * votes and vote requests (the term and vote), answers that acknowledge entries beyond the
   * durable height, refusals. The rest leaves at once: a leader's appends (Raft thesis 10.2.1: it
   * counts itself only once durable), pre-vote requests (they change nothing), and answers that
   * acknowledge only durable entries — a heartbeat's answer must not wait behind a slow disk, or
   * the leader would lose its quorum while every node is up.
   */
  private send(to: NodeId, msg: RaftMessage<T>): void {
    const afterDurable =
      this.opts.asyncStorage === true &&
      this.role !== 'leader' &&
      msg.type !== 'preVote' &&
      !(msg.type === 'appendResp' && msg.success && msg.matchHeight <= this.durable);
    this.ready.messages.push(afterDurable ? { to, msg, afterDurable } : { to, msg });
  }

  private handle(from: NodeId, m: RaftMessage<T>): void {
    if (m.term > this.term) {
      const isVote = m.type === 'vote' || m.type === 'preVote';
      if (isVote && this.inLease()) return;
      const keepsTerm = m.type === 'preVote' || (m.type === 'preVoteResp' && m.granted);
      if (!keepsTerm) this.becomeFollower(m.term, m.type === 'append' ? from : null);
    } else if (m.term < this.term) {
      // Answering tells a stale leader or candidate about the newer term so it steps down.
      if (m.type === 'append') this.send(from, { type: 'appendResp', term: this.term, success: false, matchHeight: m.prevHeight });
      else if (m.type === 'vote') this.send(from, { type: 'voteResp', term: this.term, granted: false });
      else if (m.type === 'preVote') this.send(from, { type: 'preVoteResp', term: this.term, granted: false });
      return;
    }
    switch (m.type) {
      case 'append':
        return this.onAppend(from, m);
      case 'appendResp':
        return this.onAppendResp(from, m);
      case 'vote':
      case 'preVote':
        return this.onVote(from, m);
      case 'voteResp':
      case 'preVoteResp':
        return this.onVoteResp(from, m);
    }
  }

  private onVote(from: NodeId, m: VoteMsg<T>): void {
    const lastTerm = this.termAt(this.lastHeight);
    const upToDate = m.lastTerm > lastTerm || (m.lastTerm === lastTerm && m.lastHeight >= this.lastHeight);
    if (m.type === 'preVote') {
      // Pre-votes arriving in a lease were already dropped by handle(); the term is left alone either way.
      const granted = m.term > this.term && upToDate;
      this.send(from, { type: 'preVoteResp', term: granted ? m.term : this.term, granted });
      return;
    }
    const canVote = this.votedFor === from || (this.votedFor === null && this.leader === null);
    const granted = canVote && upToDate;
    if (granted) {
      this.votedFor = from;
      this.resetElectionTimer();
    }
    this.send(from, { type: 'voteResp', term: this.term, granted });
  }

  private onVoteResp(from: NodeId, m: VoteResp<T>): void {
    if (m.type === 'preVoteResp') {
      if (this.role !== 'precandidate') return;
      // Grants carry the term we would campaign at; rejections our current one.
      if (m.term !== (m.granted ? this.term + 1 : this.term)) return;
    } else if (this.role !== 'candidate') {
      return;
    }
    this.votes.set(from, m.granted);
    this.tallyVotes();
  }

  private onAppend(from: NodeId, m: AppendMsg<T>): void {
    if (this.role === 'leader') return; // a second leader in our term: not from an honest peer
    if (this.role !== 'follower') this.becomeFollower(this.term, from);
    this.leader = from;
    this.electionElapsed = 0;
    this.send(from, this.acceptAppend(m));
  }

  private acceptAppend(m: AppendMsg<T>): AppendResp<T> {
    const reject = (hintHeight: number): AppendResp<T> => ({
      type: 'appendResp',
      term: this.term,
      success: false,
      matchHeight: m.prevHeight,
      hintHeight,
      hintTerm: this.termAt(hintHeight),
    });
    if (m.prevHeight > this.lastHeight) return reject(this.lastHeight);
    const prev = this.entryAt(m.prevHeight);
    if (prev.term !== m.prevTerm) {
      // Skip back over our entries of terms the leader cannot have at these heights.
      let h = m.prevHeight;
      while (h > this.commit && this.termAt(h) > m.prevTerm) h--;
      return reject(h);
    }
    if (m.entries.length > 0 && m.entries[0]!.prevHash !== prev.hash) return reject(m.prevHeight);

    // Skip what we already hold; stop at the first new or conflicting entry.
    let i = 0;
    for (; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      if (e.height > this.lastHeight) break;
      const mine = this.entryAt(e.height);
      if (mine.term !== e.term) break;
      if (mine.hash !== e.hash) return reject(e.height - 1); // same height and term, other block: not honest
    }
    let accepted = i;
    const validate = this.opts.validate;
    let before = i === 0 ? prev : m.entries[i - 1]!;
    for (; accepted < m.entries.length; accepted++) {
      const e = m.entries[accepted]!;
      if (validate && !passes(validate, e, before)) break;
      before = e;
    }
    if (accepted === i && i < m.entries.length) return reject(m.prevHeight + i); // the first new entry is invalid
    if (accepted > i) {
      const first = m.entries[i]!;
      if (first.height <= this.lastHeight) this.truncate(first.height - 1);
      this.appendLocal(m.entries.slice(i, accepted));
    }
    const matched = m.prevHeight + accepted;
    this.commit = Math.max(this.commit, Math.min(m.commit, matched));
    return { type: 'appendResp', term: this.term, success: true, matchHeight: matched };
  }

  private onAppendResp(from: NodeId, m: AppendResp<T>): void {
    if (this.role !== 'leader') return;
    const pr = this.progress.get(from)!;
    pr.lastHeard = this.now;
    if (m.success) {
      if (m.matchHeight > this.lastHeight) return;
      if (m.matchHeight > pr.match) {
        pr.match = m.matchHeight;
        if (this.maybeCommit()) this.broadcastCommit();
      }
      // The probe landed (an older success would not reach next-1): the follower's position is known.
      if (pr.probing && pr.match >= pr.next - 1) {
        pr.probing = false;
        pr.paused = false;
      }
      pr.next = Math.max(pr.next, pr.match + 1);
      this.sendAppend(from, false);
      return;
    }
    if (m.matchHeight < pr.match || (pr.probing && m.matchHeight !== pr.next - 1)) return; // stale
    if (m.hintHeight !== undefined && m.hintHeight < pr.match) {
      // Its log ends below what it acknowledged, which an honest follower's durable log never
      // does: its disk was lost or wiped. Nothing it acknowledged holds (commits it counted
      // toward stand); probe again from where its log ends. Without this the leader would ignore
      // its refusals for good, and it would catch up only under another leader.
      pr.match = 0;
      pr.probing = true;
      pr.paused = false;
      pr.next = m.hintHeight + 1;
      this.sendAppend(from, false);
      return;
    }
    const target = this.walkBack(pr, m);
    if (pr.probing) {
      // No progress (e.g. the follower refused an entry as invalid): retry on the next heartbeat.
      if (target >= pr.next) return;
      pr.next = target;
      pr.paused = false;
    } else {
      pr.probing = true;
      pr.next = Math.min(pr.next, target);
    }
    this.sendAppend(from, false);
  }

  /** The next height to try after a rejection; at least match+1. */
  private walkBack(pr: Progress, m: AppendResp<T>): number {
    if (m.hintHeight === undefined) return Math.max(pr.match + 1, m.matchHeight);
    let h = Math.min(m.hintHeight, this.lastHeight);
    if (m.hintTerm !== undefined) while (h > pr.match && this.termAt(h) > m.hintTerm) h--;
    // Without a term only the rejected prevHeight itself is known not to match.
    else h = Math.min(h, m.matchHeight - 1);
    return Math.max(pr.match + 1, h + 1);
  }

  private sendAppend(to: NodeId, heartbeat: boolean): void {
    const pr = this.progress.get(to)!;
    let last: number;
    if (pr.probing) {
      if (pr.paused && !heartbeat) return;
      last = Math.min(this.lastHeight, pr.next + this.opts.maxEntriesPerAppend - 1);
      pr.paused = true;
    } else {
      const window = pr.match + INFLIGHT_APPENDS * this.opts.maxEntriesPerAppend;
      last = Math.min(this.lastHeight, window, pr.next + this.opts.maxEntriesPerAppend - 1);
      if (last < pr.next) {
        // Nothing new to send (or the window is full): a heartbeat anchored where the follower surely matches.
        if (heartbeat) this.sendAppendRange(to, pr.match, pr.match);
        return;
      }
    }
    const sent = this.sendAppendRange(to, pr.next - 1, last);
    if (!pr.probing) pr.next = sent + 1;
  }

  /** Sends what fits of prevHeight+1..last; returns the last height sent. */
  private sendAppendRange(to: NodeId, prevHeight: number, last: number): number {
    this.progress.get(to)!.sentCommit = this.commit;
    const entries = this.entriesFrom(prevHeight + 1, last);
    this.send(to, {
      type: 'append',
      term: this.term,
      prevHeight,
      prevTerm: this.termAt(prevHeight),
      entries,
      commit: this.commit,
    });
    return prevHeight + entries.length;
  }

  /** True if the commit index moved. */
  private maybeCommit(): boolean {
    // Our own log counts only as far as it is durable: with asynchronous storage a majority of
    // others may commit an entry before our own disk has it, never our memory alone.
    const own = this.opts.asyncStorage ? Math.min(this.lastHeight, this.durable) : this.lastHeight;
    const matches = [own, ...[...this.progress.values()].map((pr) => pr.match)].sort((a, b) => b - a);
    const n = matches[this.quorum - 1]!;
    // Only an entry of the current term commits by counting replicas (Raft §5.4.2, Figure 8).
    if (n <= this.commit || this.termAt(n) !== this.term) return false;
    this.commit = n;
    return true;
  }

  /**
   * Followers hear of a new commit index soon (so a client reading any replica sees "final" about
   * one round trip after the leader), but not at once: under load the leader proposes the next
   * block right away and its appends carry the commit index, which saves a round of messages and
   * a durable write per follower and block. The shell flushes (`flushCommit`) when it has nothing
   * to propose.
   */
  private broadcastCommit(): void {
    this.ready.commitUnsent = true;
  }

  /** A replicating follower not yet sent the current commit index (a probe carries it anyway). */
  private lacksCommit(pr: Progress): boolean {
    return !pr.probing && pr.sentCommit < this.commit;
  }

  // ---- input validation: peers' messages are untrusted bytes until proven well formed ------

  private parse(raw: unknown): RaftMessage<T> | null {
    if (!isRecord(raw) || !isHeight(raw.term)) return null;
    const term = raw.term;
    switch (raw.type) {
      case 'preVote':
      case 'vote':
        return isHeight(raw.lastHeight) && isHeight(raw.lastTerm) && raw.lastTerm <= term
          ? { type: raw.type, term, lastHeight: raw.lastHeight, lastTerm: raw.lastTerm }
          : null;
      case 'preVoteResp':
      case 'voteResp':
        return typeof raw.granted === 'boolean' ? { type: raw.type, term, granted: raw.granted } : null;
      case 'appendResp': {
        const { success, matchHeight, hintHeight, hintTerm } = raw;
        if (typeof success !== 'boolean' || !isHeight(matchHeight)) return null;
        if ((hintHeight !== undefined && !isHeight(hintHeight)) || (hintTerm !== undefined && !isHeight(hintTerm))) return null;
        const resp: AppendResp<T> = { type: 'appendResp', term, success, matchHeight };
        if (hintHeight !== undefined) resp.hintHeight = hintHeight;
        if (hintTerm !== undefined) resp.hintTerm = hintTerm;
        return resp;
      }
      case 'append':
        return this.parseAppend(raw, term);
      default:
        return null;
    }
  }

  private parseAppend(raw: Record<string, unknown>, term: number): AppendMsg<T> | null {
    const { prevHeight, prevTerm, entries, commit } = raw;
    if (!isHeight(prevHeight) || !isHeight(prevTerm) || !isHeight(commit) || prevTerm > term) return null;
    if (!Array.isArray(entries) || entries.length > this.opts.maxEntriesPerAppend) return null;
    let prev = { height: prevHeight, term: prevTerm, hash: null as string | null };
    for (const e of entries as unknown[]) {
      if (!isRecord(e) || !isHeight(e.height) || !isHeight(e.term) || !('data' in e)) return null;
      if (typeof e.hash !== 'string' || typeof e.prevHash !== 'string') return null;
      // Contiguous, terms never decreasing and never beyond the sender's, hash-linked within the message.
      if (e.height !== prev.height + 1 || e.term < prev.term || e.term > term) return null;
      if (prev.hash !== null && e.prevHash !== prev.hash) return null;
      prev = { height: e.height, term: e.term, hash: e.hash };
    }
    return { type: 'append', term, prevHeight, prevTerm, entries: entries as RaftEntry<T>[], commit };
  }
}

/** An entry whose validation cannot even finish (its data is hostile or broken) is invalid. */
function passes<T>(validate: NonNullable<RaftOptions<T>['validate']>, e: RaftEntry<T>, prev: RaftEntry<T>): boolean {
  try {
    return validate(e, prev);
  } catch {
    return false;
  }
}

function checkOptions<T>(o: RaftOptions<T>): void {
  const bad = (key: string, why: string): never => {
    throw new CairnError('BAD_CONFIG', `raft option ${key}: ${why}`);
  };
  const positive = (key: keyof RaftOptions<T>, v: unknown): void => {
    if (!Number.isSafeInteger(v) || (v as number) < 1) bad(key, 'must be a positive integer');
  };
  if (typeof o.id !== 'string' || o.id === '') bad('id', 'must be a non-empty string');
  if (!Array.isArray(o.peers) || !o.peers.includes(o.id)) bad('peers', 'must list every voter, including id');
  positive('electionTicksMin', o.electionTicksMin);
  positive('electionTicksMax', o.electionTicksMax);
  positive('heartbeatTicks', o.heartbeatTicks);
  positive('maxEntriesPerAppend', o.maxEntriesPerAppend);
  if (o.maxAppendBytes !== undefined) positive('maxAppendBytes', o.maxAppendBytes);
  if ((o.maxAppendBytes === undefined) !== (o.entryBytes === undefined)) bad('maxAppendBytes', 'comes with entryBytes, and entryBytes with it');
  if (o.maxUncommitted !== undefined) positive('maxUncommitted', o.maxUncommitted);
  if (o.electionTicksMax < o.electionTicksMin) bad('electionTicksMax', 'must be at least electionTicksMin');
  if (o.heartbeatTicks >= o.electionTicksMin) bad('heartbeatTicks', 'must be below electionTicksMin');
  if (typeof o.random !== 'function') bad('random', 'must be a function');
}
