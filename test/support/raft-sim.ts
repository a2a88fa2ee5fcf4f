/**
 * Deterministic simulator for the Raft core: N cores wired through a simulated network and clock,
 * all randomness from one seeded PRNG, so any run replays exactly from its seed. Faults: crashes
 * (with and without losing the state machine, and between persisting and sending), restarts,
 * dropped, duplicated, delayed, reordered and stale-replayed messages, garbage messages,
 * partitions (random splits, an isolated leader, one-way links) that heal. The Raft invariants are
 * checked after every call into a core; a violation throws a SimViolation naming seed and step.
 */
import { createHash, type Hash } from 'node:crypto';
import { isCairnError } from '../../src/errors.js';
import { RaftCore, type HardState, type RaftEntry, type RaftMessage, type RaftStorage, type Ready } from '../../src/chain/raft.js';

// ---- randomness ------------------------------------------------------------------------------

/** mulberry32: tiny, fast, good enough to drive a simulation; never used for anything secret. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<X>(xs: readonly X[]): X {
    const x = xs[this.int(xs.length)];
    if (x === undefined) throw new Error('pick from an empty list');
    return x;
  }
}

// ---- entries and storage ---------------------------------------------------------------------

export const GENESIS_HASH = createHash('sha256').update('cairn-raft-sim-genesis').digest('hex');

export function entryHash(prevHash: string, height: number, term: number, data: string): string {
  return createHash('sha256').update(`${prevHash}|${height}|${term}|${data}`).digest('hex');
}

/** Entries are frozen so a core that mutated one (they are shared between nodes here) would throw. */
export function makeEntry(height: number, term: number, prevHash: string, data: string): RaftEntry<string> {
  return Object.freeze({ height, term, prevHash, hash: entryHash(prevHash, height, term, data), data });
}

export function genesisEntry(): RaftEntry<string> {
  return Object.freeze({ height: 0, term: 0, prevHash: '', hash: GENESIS_HASH, data: '' });
}

/** What a shell persists, with the shell side of the Ready contract checked on every apply. */
export class MemStorage<T> implements RaftStorage<T> {
  private hs: HardState = { term: 0, votedFor: null, commit: 0 };
  private readonly log: RaftEntry<T>[];

  constructor(genesis: RaftEntry<T>) {
    this.log = [genesis];
  }

  hardState(): HardState {
    return { ...this.hs };
  }

  lastHeight(): number {
    return this.log.length - 1;
  }

  entry(height: number): RaftEntry<T> | undefined {
    return this.log[height];
  }

  /** A copy: what a crash leaves on disk when the storage is durable only up to now. */
  clone(): MemStorage<T> {
    const c = new MemStorage<T>(this.log[0]!);
    c.hs = { ...this.hs };
    c.log.push(...this.log.slice(1));
    return c;
  }

  apply(ready: Ready<T>): void {
    const old = this.hs;
    if (ready.hardState) {
      const hs = ready.hardState;
      if (hs.term < old.term) throw new Error(`term went back from ${old.term} to ${hs.term}`);
      if (hs.commit < old.commit) throw new Error(`commit went back from ${old.commit} to ${hs.commit}`);
      if (hs.term === old.term && old.votedFor !== null && hs.votedFor !== old.votedFor) {
        throw new Error(`vote in term ${hs.term} changed from ${old.votedFor} to ${hs.votedFor}`);
      }
      this.hs = { ...hs };
    }
    if (ready.truncateAfter !== undefined) {
      if (ready.truncateAfter < old.commit) throw new Error(`truncation after ${ready.truncateAfter} removes committed entries (commit ${old.commit})`);
      if (ready.truncateAfter >= this.lastHeight()) throw new Error(`truncation after ${ready.truncateAfter} removes nothing`);
      this.log.length = ready.truncateAfter + 1;
    }
    for (const e of ready.append) {
      const prev = this.log[this.log.length - 1]!;
      if (e.height !== prev.height + 1) throw new Error(`append of height ${e.height} after ${prev.height}`);
      if (e.prevHash !== prev.hash) throw new Error(`entry ${e.height} does not link to the entry before it`);
      if (e.term < prev.term) throw new Error(`entry ${e.height} has term ${e.term} below its predecessor's ${prev.term}`);
      this.log.push(e);
    }
    if (this.hs.commit > this.lastHeight()) throw new Error(`commit ${this.hs.commit} beyond last entry ${this.lastHeight()}`);
  }
}

// ---- the simulation --------------------------------------------------------------------------

export class SimViolation extends Error {
  constructor(
    readonly seed: number,
    readonly step: number,
    detail: string,
  ) {
    super(`raft-sim seed=${seed} step=${step}: ${detail}`);
    this.name = 'SimViolation';
  }
}

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Time units with faults and client traffic; a node ticks every 10 units. */
  faultTime?: number;
  /**
   * After healing, the cluster must converge within this many time units. Default: 3000 plus one
   * worst-case round trip per entry the most lagging node lacks (at least one entry per round trip).
   */
  healDeadline?: number;
  /**
   * The shell persists as cairn's chain node does (RaftOptions.asyncStorage): a Ready lands in
   * memory, a flush some time later makes everything so far durable and reports it to the core;
   * until then messages the core marks afterDurable wait, and a crash loses what was not flushed.
   */
  asyncStorage?: boolean;
  /** Rewrites a Ready before the shell applies it: lets a test prove the checker catches a lying core. */
  tamper?: (node: string, step: number, ready: Ready<string>) => Ready<string>;
}

export interface SimResult {
  seed: number;
  nodes: number;
  steps: number;
  time: number;
  commit: number;
  maxTerm: number;
  elections: number;
  proposed: number;
  committedPayloads: number;
  crashes: number;
  partitions: number;
  messages: number;
  dropped: number;
  garbage: number;
  truncations: number;
  /** sha256 over every step's outcome: equal for equal seeds. */
  digest: string;
}

interface Scenario {
  tickEvery: number;
  electionMin: number;
  electionMax: number;
  heartbeat: number;
  maxEntriesPerAppend: number;
  maxUncommitted: number;
  delayMax: number;
  pDrop: number;
  pDup: number;
  pStale: number;
  pFault: number;
  pPropose: number;
  pGarbage: number;
  pCrashMidCall: number;
  /** Chance that a new leader crashes soon after winning: old-term entries half replicated (Figure 8). */
  pCrashNewLeader: number;
  /** Asynchronous storage: chance per time unit that a node with unflushed changes flushes. */
  pFlush: number;
}

interface SimNode {
  id: string;
  storage: MemStorage<string>;
  core: RaftCore<string> | null;
  phase: number;
  /** The state machine: how far it applied. Persisted with the Ready unless a crash says otherwise. */
  applied: number;
  checkedCommit: number;
  /** A leader's Ready said followers lack the commit index: the shell flushes it soon, not at once. */
  flushDue: boolean;
  /** Asynchronous storage: what a crash leaves (storage and state machine as of the last flush). */
  durable: { storage: MemStorage<string>; applied: number };
  /** Asynchronous storage: something changed since the last flush. */
  unflushed: boolean;
  /** Asynchronous storage: messages waiting for the next flush, in send order. */
  held: { to: string; msg: unknown }[];
}

interface InFlight {
  at: number;
  seq: number;
  from: string;
  to: string;
  msg: unknown;
}

const MAX_IN_FLIGHT = 50_000;
/** Sent messages remembered for replay faults (a ring buffer). */
const HISTORY = 4096;
const GARBAGE_TERM = 1_000_000;

function scenarioFor(rng: Rng): Scenario {
  const electionMin = rng.pick([5, 10, 10, 15]);
  return {
    tickEvery: 10,
    electionMin,
    electionMax: electionMin + rng.pick([0, 5, 10, 20]),
    heartbeat: rng.pick([1, 2, 3]),
    maxEntriesPerAppend: rng.pick([1, 1, 2, 4, 16]),
    maxUncommitted: rng.pick([4, 16, 256]),
    delayMax: rng.pick([2, 10, 30, 100]),
    pDrop: rng.pick([0, 0.02, 0.1, 0.25]),
    pDup: rng.pick([0, 0.02, 0.1]),
    pStale: rng.pick([0, 0.005, 0.02]),
    pFault: rng.pick([0, 0.002, 0.005, 0.01, 0.02]),
    pPropose: rng.pick([0.01, 0.05, 0.2]),
    pGarbage: rng.pick([0, 0.003]),
    pCrashMidCall: rng.pick([0, 0.0005]),
    pCrashNewLeader: rng.pick([0, 0.1, 0.3]),
    pFlush: rng.pick([0.05, 0.2, 0.5, 1]),
  };
}

/** Binary min-heap on (at, seq): messages leave in delivery-time order, ties in send order. */
class MessageQueue {
  private readonly heap: InFlight[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(m: InFlight): void {
    const h = this.heap;
    h.push(m);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  popDue(now: number): InFlight | undefined {
    const h = this.heap;
    if (h.length === 0 || h[0]!.at > now) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: InFlight, b: InFlight): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export function runSimulation(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}

class Simulation {
  private readonly rng: Rng;
  private readonly sc: Scenario;
  private readonly nodes: SimNode[];
  private readonly ids: string[];
  private readonly net = new MessageQueue();
  private readonly trace: Hash = createHash('sha256');
  private readonly faultTime: number;

  private t = 0;
  private step = 0;
  private seq = 0;
  private faultsOn = true;
  private delayMax: number;
  /** Partition group per node index, and one-way cuts "from>to". */
  private group: number[];
  private readonly cuts = new Set<string>();
  /** Crashes planned for a time: node id -> time. */
  private readonly plannedCrashes = new Map<string, number>();
  private readonly history: { from: string; to: string; msg: unknown }[] = [];
  private historyNext = 0;

  // The global record the invariants are checked against.
  private readonly leaderOfTerm = new Map<number, string>();
  private readonly hashAt = new Map<string, string>(); // "height:term" -> hash
  private readonly committed: string[] = [GENESIS_HASH]; // height -> hash
  private readonly committedPayloads = new Set<string>();

  private proposed = 0;
  private crashes = 0;
  private partitions = 0;
  private messages = 0;
  private dropped = 0;
  private garbage = 0;
  private elections = 0;
  private truncations = 0;

  constructor(private readonly opts: SimOptions) {
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1) throw new Error('nodes must be a positive integer');
    this.rng = new Rng(opts.seed);
    this.sc = scenarioFor(this.rng);
    this.delayMax = this.sc.delayMax;
    this.faultTime = opts.faultTime ?? 3000;
    this.ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    this.group = this.ids.map(() => 0);
    this.nodes = this.ids.map((id) => {
      const storage = new MemStorage<string>(genesisEntry());
      return {
        id,
        storage,
        core: null,
        phase: this.rng.int(this.sc.tickEvery),
        applied: 0,
        checkedCommit: 0,
        flushDue: false,
        durable: { storage: storage.clone(), applied: 0 },
        unflushed: false,
        held: [],
      };
    });
    for (const n of this.nodes) this.start(n);
  }

  run(): SimResult {
    let end = Number.MAX_SAFE_INTEGER;
    let heightAtHeal = 0;
    let finalProposed = false;
    for (this.t = 0; this.t <= end; this.t++) {
      if (this.t < this.faultTime) {
        this.plannedCrash();
        if (this.rng.chance(this.sc.pFault)) this.fault();
        if (this.rng.chance(this.sc.pPropose)) this.clientPropose(`c${this.proposed}`);
        if (this.rng.chance(this.sc.pGarbage)) this.injectGarbage();
      } else if (this.t === this.faultTime) {
        this.healAll();
        heightAtHeal = this.committed.length - 1;
        end = this.t + this.healDeadline();
      } else {
        // Liveness after the heal: a payload proposed now must commit everywhere.
        if (!finalProposed && this.leaders().length === 1) finalProposed = this.clientPropose('final');
        if (this.converged(heightAtHeal)) return this.result();
      }
      this.deliverDue();
      if (this.opts.asyncStorage) {
        for (const n of this.nodes) if (n.core && n.unflushed && this.rng.chance(this.sc.pFlush)) this.flush(n);
      }
      for (const n of this.nodes) {
        if (n.core && n.flushDue && this.rng.chance(0.5)) {
          n.flushDue = false;
          this.call(n, 'flush-commit', (c) => c.flushCommit());
        }
      }
      for (const n of this.nodes) {
        if (n.core && (this.t + n.phase) % this.sc.tickEvery === 0) this.call(n, 'tick', (c) => c.tick());
      }
    }
    const states = this.nodes.map((n) => `${n.id}:${JSON.stringify(n.core?.status() ?? 'down')} applied=${n.applied}`);
    return this.fail(`no convergence ${end - this.faultTime} time units after healing: ${states.join('; ')}`);
  }

  private healDeadline(): number {
    if (this.opts.healDeadline !== undefined) return this.opts.healDeadline;
    const backlog = Math.max(...this.nodes.map((n) => n.storage.lastHeight())) - Math.min(...this.nodes.map((n) => n.storage.hardState().commit));
    const roundTrip = 2 * this.delayMax + this.sc.heartbeat * this.sc.tickEvery;
    return 3000 + backlog * roundTrip;
  }

  // ---- nodes -----------------------------------------------------------------------------

  private start(n: SimNode): void {
    const random = new Rng(this.rng.int(2 ** 32));
    n.core = new RaftCore<string>(
      {
        id: n.id,
        peers: this.ids,
        electionTicksMin: this.sc.electionMin,
        electionTicksMax: this.sc.electionMax,
        heartbeatTicks: this.sc.heartbeat,
        random: () => random.next(),
        maxEntriesPerAppend: this.sc.maxEntriesPerAppend,
        maxUncommitted: this.sc.maxUncommitted,
        applied: n.applied,
        validate: (e, prev) => e.prevHash === prev.hash && e.hash === entryHash(e.prevHash, e.height, e.term, e.data),
        asyncStorage: this.opts.asyncStorage ?? false,
      },
      n.storage,
    );
    n.checkedCommit = 0;
    this.checkCommitted(n);
  }

  private crash(n: SimNode, loseStateMachine: boolean): void {
    n.core = null;
    this.crashes++;
    if (this.opts.asyncStorage) {
      // Only what was flushed survives: the log, the hard state and the state machine's progress.
      n.storage = n.durable.storage.clone();
      n.applied = n.durable.applied;
      n.unflushed = false;
      n.held = [];
    }
    // A state machine kept in memory only is rebuilt from the chain: everything is delivered again.
    if (loseStateMachine) n.applied = 0;
    this.record(`crash ${n.id} ${loseStateMachine}`);
  }

  /** One call into a core, then the shell's half of the contract, then every invariant. */
  private call(n: SimNode, what: string, fn: (core: RaftCore<string>) => Ready<string>): void {
    const core = n.core;
    if (!core) throw new Error(`call into crashed node ${n.id}`);
    this.step++;
    let ready: Ready<string>;
    try {
      ready = fn(core);
      if (this.opts.tamper) ready = this.opts.tamper(n.id, this.step, ready);
      n.storage.apply(ready);
    } catch (err) {
      return this.fail(`${n.id} ${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (ready.truncateAfter !== undefined) this.truncations++;
    if (ready.hardState || ready.truncateAfter !== undefined || ready.append.length > 0 || ready.committed.length > 0) n.unflushed = true;
    if (ready.commitUnsent) n.flushDue = true;
    for (const e of ready.append) this.checkAppended(n, e);
    this.checkCommitted(n);
    const midCallCrash = this.faultsOn && this.rng.chance(this.sc.pCrashMidCall);
    if (!midCallCrash) {
      for (const e of ready.committed) this.checkApplied(n, e);
    }
    const st = core.status();
    if (st.commit > st.lastHeight) this.fail(`${n.id} commit ${st.commit} beyond its last entry ${st.lastHeight}`);
    if (st.lastHeight !== n.storage.lastHeight()) this.fail(`${n.id} core and storage disagree on the last height`);
    if (st.term >= GARBAGE_TERM) this.fail(`${n.id} adopted term ${st.term} from a garbage message`);
    if (st.role === 'leader') {
      const known = this.leaderOfTerm.get(st.term);
      if (known !== undefined && known !== n.id) this.fail(`two leaders in term ${st.term}: ${known} and ${n.id}`);
      this.leaderOfTerm.set(st.term, n.id);
    }
    this.record(
      `${this.step} ${this.t} ${n.id} ${what} ${st.role} ${st.term} ${st.commit} ${st.lastHeight} ` +
        `${ready.append.length} ${ready.messages.length} ${ready.committed.length} ${ready.truncateAfter ?? '-'}`,
    );
    if (midCallCrash) {
      // Persisted but crashed before sending and before the state machine saw the commits.
      this.crash(n, false);
      return;
    }
    for (const m of ready.messages) {
      // Persist, then send what the core marks as depending on it (also behind earlier held ones).
      if (this.opts.asyncStorage && m.afterDurable && (n.unflushed || n.held.length > 0)) n.held.push(m);
      else this.send(n.id, m.to, m.msg);
    }
    if (ready.becameLeader) {
      this.elections++;
      this.checkLeaderCompleteness(n, st.term);
      if (this.faultsOn && this.rng.chance(this.sc.pCrashNewLeader)) this.plannedCrashes.set(n.id, this.t + this.rng.int(40));
      this.call(n, 'propose-empty', (c) => c.propose((h, term, prev) => makeEntry(h, term, prev, '')));
    }
  }

  private clientPropose(payload: string): boolean {
    const leaders = this.leaders();
    if (leaders.length === 0) return false;
    const n = this.rng.pick(leaders);
    let overloaded = false;
    this.call(n, `propose ${payload}`, (c) => {
      try {
        return c.propose((h, term, prev) => makeEntry(h, term, prev, payload));
      } catch (err) {
        if (!isCairnError(err, 'OVERLOADED')) throw err;
        overloaded = true;
        return { append: [], messages: [], committed: [] };
      }
    });
    if (!overloaded) this.proposed++;
    return !overloaded;
  }

  /** Asynchronous storage: everything so far becomes durable; held messages leave; the core hears of it. */
  private flush(n: SimNode): void {
    n.durable = { storage: n.storage.clone(), applied: n.applied };
    n.unflushed = false;
    const held = n.held;
    n.held = [];
    this.record(`flush ${n.id} ${n.storage.lastHeight()}`);
    for (const { to, msg } of held) this.send(n.id, to, msg);
    const height = n.storage.lastHeight();
    const term = n.storage.entry(height)!.term;
    this.call(n, 'durable', (c) => c.durableTo(height, term));
  }

  private leaders(): SimNode[] {
    return this.nodes.filter((n) => n.core?.status().role === 'leader');
  }

  // ---- network ---------------------------------------------------------------------------

  private linked(from: string, to: string): boolean {
    const a = this.ids.indexOf(from);
    const b = this.ids.indexOf(to);
    return this.group[a] === this.group[b] && !this.cuts.has(`${from}>${to}`);
  }

  private send(from: string, to: string, msg: unknown): void {
    this.messages++;
    this.history[this.historyNext] = { from, to, msg };
    this.historyNext = (this.historyNext + 1) % HISTORY;
    if (!this.linked(from, to) || (this.faultsOn && this.rng.chance(this.sc.pDrop))) {
      this.dropped++;
      return;
    }
    this.enqueue(from, to, msg, 1 + this.rng.int(this.delayMax));
    if (this.faultsOn && this.rng.chance(this.sc.pDup)) this.enqueue(from, to, msg, 1 + this.rng.int(this.delayMax));
    if (this.faultsOn && this.rng.chance(this.sc.pStale)) this.enqueue(from, to, msg, 200 + this.rng.int(800));
  }

  private enqueue(from: string, to: string, msg: unknown, delay: number): void {
    if (this.net.size >= MAX_IN_FLIGHT) this.fail(`more than ${MAX_IN_FLIGHT} messages in flight: a message storm`);
    this.net.push({ at: this.t + delay, seq: this.seq++, from, to, msg });
  }

  private deliverDue(): void {
    for (let m = this.net.popDue(this.t); m; m = this.net.popDue(this.t)) {
      const n = this.nodes.find((x) => x.id === m!.to);
      // Links are checked again on arrival: a partition also eats what was already on the wire.
      if (!n?.core || !this.linked(m.from, m.to)) {
        this.dropped++;
        continue;
      }
      const { from, msg } = m;
      this.call(n, `recv ${from} ${describe(msg)}`, (c) => c.step(from, msg as RaftMessage<string>));
    }
  }

  // ---- faults ----------------------------------------------------------------------------

  private fault(): void {
    const up = this.nodes.filter((n) => n.core);
    const down = this.nodes.filter((n) => !n.core);
    const leaders = this.leaders();
    switch (this.rng.int(9)) {
      case 8: {
        // Old messages, possibly from long-gone terms, arrive again: stale leaders, votes, answers.
        const count = Math.min(this.history.length, 1 + this.rng.int(30));
        for (let i = 0; i < count; i++) {
          const m = this.rng.pick(this.history);
          this.enqueue(m.from, m.to, m.msg, 1 + this.rng.int(this.delayMax));
        }
        this.record(`replay ${count}`);
        break;
      }
      case 0:
        if (up.length > 0) this.crash(this.rng.pick(up), this.rng.chance(0.3));
        break;
      case 1:
        if (leaders.length > 0) this.crash(this.rng.pick(leaders), this.rng.chance(0.3));
        break;
      case 7:
        if (down.length > 0) this.restart(this.rng.pick(down));
        break;
      case 2:
        if (down.length > 0) this.restart(this.rng.pick(down));
        break;
      case 3: {
        this.group = this.ids.map(() => this.rng.int(2));
        this.partitions++;
        this.record(`partition ${this.group.join('')}`);
        break;
      }
      case 4: {
        // The leader alone (or with one other node) in the minority.
        if (leaders.length === 0) break;
        const leader = this.ids.indexOf(this.rng.pick(leaders).id);
        const buddy = this.ids.length >= 5 && this.rng.chance(0.5) ? (leader + 1) % this.ids.length : -1;
        this.group = this.ids.map((_, i) => (i === leader || i === buddy ? 1 : 0));
        this.partitions++;
        this.record(`isolate leader ${this.group.join('')}`);
        break;
      }
      case 5: {
        const from = this.rng.pick(this.ids);
        const to = this.rng.pick(this.ids);
        if (from !== to) this.cuts.add(`${from}>${to}`);
        this.record(`cut ${from}>${to}`);
        break;
      }
      default:
        this.heal();
    }
  }

  private plannedCrash(): void {
    for (const [id, at] of this.plannedCrashes) {
      if (at > this.t) continue;
      this.plannedCrashes.delete(id);
      const n = this.nodes.find((x) => x.id === id)!;
      if (n.core) this.crash(n, false);
    }
  }

  private restart(n: SimNode): void {
    this.start(n);
    this.record(`restart ${n.id}`);
  }

  private heal(): void {
    this.group = this.ids.map(() => 0);
    this.cuts.clear();
    this.record('heal');
  }

  private healAll(): void {
    this.faultsOn = false;
    // Liveness needs round trips well inside the election timeout; the fault phase may exceed that.
    this.delayMax = Math.min(this.delayMax, Math.floor((this.sc.electionMin * this.sc.tickEvery) / 4));
    this.heal();
    for (const n of this.nodes) if (!n.core) this.restart(n);
  }

  private injectGarbage(): void {
    const up = this.nodes.filter((n) => n.core);
    if (up.length === 0) return;
    const n = this.rng.pick(up);
    const peer = this.rng.pick(this.ids.filter((id) => id !== n.id).concat(['mallory']));
    // From a stranger anything goes; from a member only messages that are malformed.
    const msg = peer === 'mallory' ? this.rng.pick(strangerMessages()) : this.rng.pick(malformedMessages(this.sc.maxEntriesPerAppend));
    this.garbage++;
    this.call(n, `garbage from ${peer}`, (c) => c.step(peer, msg as RaftMessage<string>));
  }

  // ---- invariants ------------------------------------------------------------------------

  private checkAppended(n: SimNode, e: RaftEntry<string>): void {
    if (e.hash !== entryHash(e.prevHash, e.height, e.term, e.data)) this.fail(`${n.id} appended entry ${e.height} with a wrong hash`);
    // With hash links, equal (height, term) having equal hashes means identical prefixes: log matching.
    const key = `${e.height}:${e.term}`;
    const known = this.hashAt.get(key);
    if (known !== undefined && known !== e.hash) this.fail(`log matching: two different entries at height ${e.height} term ${e.term}`);
    this.hashAt.set(key, e.hash);
  }

  /** Everything up to a node's commit must equal the global committed record, and never change. */
  private checkCommitted(n: SimNode): void {
    const commit = n.storage.hardState().commit;
    if (commit < n.checkedCommit) this.fail(`${n.id} commit went back from ${n.checkedCommit} to ${commit}`);
    for (let h = n.checkedCommit + 1; h <= commit; h++) {
      const e = n.storage.entry(h);
      if (!e) return this.fail(`${n.id} has no entry at committed height ${h}`);
      const known = this.committed[h];
      if (known === undefined) {
        if (h !== this.committed.length) this.fail(`height ${h} committed before height ${this.committed.length}`);
        this.committed.push(e.hash);
        if (e.data !== '') {
          if (this.committedPayloads.has(e.data)) this.fail(`payload ${e.data} committed twice`);
          this.committedPayloads.add(e.data);
        }
      } else if (known !== e.hash) {
        this.fail(`${n.id} committed a different entry at height ${h} than was committed before`);
      }
    }
    n.checkedCommit = commit;
  }

  private checkApplied(n: SimNode, e: RaftEntry<string>): void {
    if (e.height !== n.applied + 1) this.fail(`${n.id} was given entry ${e.height} to apply after ${n.applied}`);
    if (this.committed[e.height] !== e.hash) this.fail(`${n.id} applied an entry at height ${e.height} that is not the committed one`);
    n.applied = e.height;
  }

  private checkLeaderCompleteness(n: SimNode, term: number): void {
    for (let h = 1; h < this.committed.length; h++) {
      if (n.storage.entry(h)?.hash !== this.committed[h]) this.fail(`leader ${n.id} of term ${term} lacks committed entry ${h}`);
    }
  }

  private converged(heightAtHeal: number): boolean {
    if (this.leaders().length !== 1) return false;
    const first = this.nodes[0]!.core!.status();
    if (first.commit <= heightAtHeal) return false;
    return this.nodes.every((n) => {
      const st = n.core!.status();
      return st.commit === first.commit && st.lastHeight === first.commit && n.applied === st.commit;
    });
  }

  private result(): SimResult {
    return {
      seed: this.opts.seed,
      nodes: this.opts.nodes,
      steps: this.step,
      time: this.t,
      commit: this.committed.length - 1,
      maxTerm: Math.max(0, ...this.leaderOfTerm.keys()),
      elections: this.elections,
      proposed: this.proposed,
      committedPayloads: this.committedPayloads.size,
      crashes: this.crashes,
      partitions: this.partitions,
      messages: this.messages,
      dropped: this.dropped,
      garbage: this.garbage,
      truncations: this.truncations,
      digest: this.trace.digest('hex'),
    };
  }

  private record(line: string): void {
    this.trace.update(line + '\n');
  }

  private fail(detail: string): never {
    throw new SimViolation(this.opts.seed, this.step, `t=${this.t} ${detail}`);
  }
}

function describe(msg: unknown): string {
  return typeof msg === 'object' && msg !== null && 'type' in msg ? String((msg as { type: unknown }).type) : typeof msg;
}

/** Well-formed messages from a node that is not a member, with absurd terms: all must be ignored. */
function strangerMessages(): unknown[] {
  const t = GARBAGE_TERM;
  return [
    { type: 'append', term: t, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 },
    { type: 'vote', term: t, lastHeight: 1e6, lastTerm: t - 1 },
    { type: 'preVote', term: t, lastHeight: 1e6, lastTerm: t - 1 },
    { type: 'voteResp', term: 1, granted: true },
    { type: 'appendResp', term: t, success: true, matchHeight: 3 },
  ];
}

/** Messages from members that are malformed in one field each: all must be ignored. */
function malformedMessages(maxEntries: number): unknown[] {
  const ok = { type: 'append', term: GARBAGE_TERM, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 };
  const entry = (height: number, term: number) => ({ height, term, hash: 'h', prevHash: 'p', data: '' });
  return [
    null,
    42,
    'append',
    [],
    { type: 'nonsense', term: GARBAGE_TERM },
    { ...ok, term: -1 },
    { ...ok, term: Number.NaN },
    { ...ok, term: 1.5 },
    { ...ok, term: '7' },
    { ...ok, term: 2 ** 60 },
    { ...ok, prevHeight: -3 },
    { ...ok, commit: Infinity },
    { ...ok, entries: 'x' },
    { ...ok, entries: [{}] },
    { ...ok, entries: [entry(1, 1), entry(3, 1)] },
    { ...ok, entries: [entry(1, GARBAGE_TERM + 1)] },
    { ...ok, entries: Array.from({ length: maxEntries + 1 }, (_, i) => entry(i + 1, 1)) },
    { ...ok, prevTerm: GARBAGE_TERM + 1 },
    { type: 'vote', term: GARBAGE_TERM, lastHeight: -1, lastTerm: 0 },
    { type: 'vote', term: GARBAGE_TERM, lastHeight: 1, lastTerm: GARBAGE_TERM + 1 },
    { type: 'preVote', term: GARBAGE_TERM, lastHeight: 1 },
    { type: 'voteResp', term: GARBAGE_TERM, granted: 'yes' },
    { type: 'appendResp', term: GARBAGE_TERM, success: true, matchHeight: 1e20 },
    { type: 'appendResp', term: GARBAGE_TERM, success: false, matchHeight: 0, hintHeight: -1 },
    { type: 'appendResp', term: GARBAGE_TERM, success: 1, matchHeight: 0 },
  ];
}
