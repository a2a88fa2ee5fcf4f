import assert from 'node:assert/strict';
import test from 'node:test';
import { RaftCore, type HardState, type RaftEntry, type RaftMessage, type RaftOptions, type Ready } from '../src/chain/raft.js';
import { isCairnError } from '../src/errors.js';
import { MemStorage, Rng, entryHash, genesisEntry, makeEntry } from './support/raft-sim.js';
import { MAX_TERM, raftBodyP } from '../src/chain/raft-wire.js';

type Msg = RaftMessage<string>;
type Entry = RaftEntry<string>;

/** A log of the given terms (height i+1 has terms[i]), hash-linked from genesis. */
function chain(terms: number[], tag = ''): Entry[] {
  const out: Entry[] = [genesisEntry()];
  for (const [i, term] of terms.entries()) out.push(makeEntry(i + 1, term, out[i]!.hash, `${tag}${i + 1}`));
  return out;
}

function storageWith(log: Entry[], hs: Partial<HardState> = {}): MemStorage<string> {
  const s = new MemStorage<string>(log[0]!);
  s.apply({ hardState: { term: 0, votedFor: null, commit: 0, ...hs }, append: log.slice(1), messages: [], committed: [] });
  return s;
}

interface Node {
  core: RaftCore<string>;
  storage: MemStorage<string>;
  committed: Entry[];
}

/** Cores wired by hand: messages wait in a queue until a test delivers them. */
class Cluster {
  readonly nodes = new Map<string, Node>();
  queue: { from: string; to: string; msg: Msg }[] = [];
  down = new Set<string>();

  readonly options = new Map<string, RaftOptions<string>>();

  constructor(
    readonly ids: string[],
    logs: Record<string, { log: Entry[]; hs?: Partial<HardState> }> = {},
    extra: Partial<RaftOptions<string>> = {},
  ) {
    for (const [i, id] of ids.entries()) {
      const rng = new Rng(i + 1);
      const given = logs[id];
      const storage = given ? storageWith(given.log, given.hs) : new MemStorage<string>(genesisEntry());
      const opts: RaftOptions<string> = {
        id,
        peers: ids,
        electionTicksMin: 10,
        electionTicksMax: 20,
        heartbeatTicks: 2,
        random: () => rng.next(),
        maxEntriesPerAppend: 4,
        ...extra,
      };
      this.options.set(id, opts);
      this.nodes.set(id, { core: new RaftCore(opts, storage), storage, committed: [] });
    }
  }

  /** `id` restarts with its disk lost: an empty log, no term, no vote. */
  wipe(id: string): void {
    const storage = new MemStorage<string>(genesisEntry());
    this.nodes.set(id, { core: new RaftCore(this.options.get(id)!, storage), storage, committed: [] });
  }

  node(id: string): Node {
    const n = this.nodes.get(id);
    assert.ok(n, `no node ${id}`);
    return n;
  }

  apply(id: string, ready: Ready<string>): Ready<string> {
    const n = this.node(id);
    n.storage.apply(ready);
    n.committed.push(...ready.committed);
    for (const m of ready.messages) this.queue.push({ from: id, to: m.to, msg: m.msg });
    return ready;
  }

  tick(id: string): Ready<string> {
    return this.apply(id, this.node(id).core.tick());
  }

  propose(id: string, data: string): Ready<string> {
    return this.apply(id, this.node(id).core.propose((h, term, prev) => makeEntry(h, term, prev, data)));
  }

  /** Delivers queued messages (and what they cause) until none are left; `drop` filters. */
  deliver(drop: (m: { from: string; to: string; msg: Msg }) => boolean = () => false): number {
    let delivered = 0;
    for (let guard = 0; this.queue.length > 0; guard++) {
      assert.ok(guard < 10_000, 'message exchange did not settle');
      const m = this.queue.shift()!;
      if (this.down.has(m.to) || this.down.has(m.from) || drop(m)) continue;
      this.apply(m.to, this.node(m.to).core.step(m.from, m.msg));
      delivered++;
    }
    return delivered;
  }

  /** Ticks `id` until it starts an election, then settles the network. */
  elect(id: string): void {
    for (let i = 0; i < 100 && this.node(id).core.status().role === 'follower'; i++) this.tick(id);
    this.deliver();
    assert.equal(this.node(id).core.status().role, 'leader');
  }

  /** Ticks everyone that is up `n` times, settling the network after each round. */
  rounds(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const id of this.ids) if (!this.down.has(id)) this.tick(id);
      this.deliver();
    }
  }
}

test('an election makes one leader; PreVote leaves the term alone until a majority agrees', () => {
  const c = new Cluster(['a', 'b', 'c']);
  let r: Ready<string> | undefined;
  for (let i = 0; i < 100 && c.node('a').core.status().role === 'follower'; i++) r = c.tick('a');
  assert.equal(c.node('a').core.status().role, 'candidate');
  assert.equal(c.node('a').core.status().term, 0, 'a pre-candidate has not bumped its term');
  assert.equal(r?.hardState, undefined, 'nothing to persist for a pre-vote');
  assert.deepEqual(r?.messages.map((m) => m.msg.type), ['preVote', 'preVote']);
  c.deliver();
  const a = c.node('a').core.status();
  assert.equal(a.role, 'leader');
  assert.equal(a.term, 1);
  assert.ok(a.hasQuorum);
  for (const id of ['b', 'c']) {
    const s = c.node(id).core.status();
    assert.equal(s.role, 'follower');
    assert.equal(s.leader, 'a');
    assert.equal(s.term, 1);
    assert.equal(c.node(id).storage.hardState().votedFor, 'a');
  }
});

test('votes: one per term, and only for a log at least as up to date as the voter\'s', () => {
  const log = chain([1, 2]);
  const c = new Cluster(['a', 'b', 'c'], { a: { log, hs: { term: 2 } } });
  const a = c.node('a');
  const ask = (from: string, term: number, lastHeight: number, lastTerm: number): boolean => {
    const r = a.core.step(from, { type: 'vote', term, lastHeight, lastTerm });
    a.storage.apply(r);
    const resp = r.messages[0]?.msg;
    assert.equal(resp?.type, 'voteResp');
    return (resp as { granted: boolean }).granted;
  };
  assert.equal(ask('b', 3, 5, 1), false, 'a longer log of an older last term is behind');
  assert.equal(ask('b', 3, 1, 2), false, 'same last term but shorter is behind');
  assert.equal(ask('b', 3, 2, 2), true, 'equal logs are up to date');
  assert.equal(a.storage.hardState().votedFor, 'b', 'the vote is persisted');
  assert.equal(ask('c', 3, 9, 2), false, 'a second candidate in the same term gets nothing');
  assert.equal(ask('b', 3, 2, 2), true, 'the same candidate asking again is answered the same');
});

test('a single node elects itself and commits its own proposals at once', () => {
  const c = new Cluster(['solo']);
  for (let i = 0; i < 100 && c.node('solo').core.status().role !== 'leader'; i++) c.tick('solo');
  assert.equal(c.node('solo').core.status().role, 'leader');
  const r = c.propose('solo', 'x');
  assert.deepEqual(r.committed.map((e) => e.data), ['x']);
  assert.equal(c.node('solo').core.status().commit, 1);
});

test('proposals replicate, commit by majority and are delivered once, in order, on every node', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  for (const d of ['p1', 'p2', 'p3']) c.propose('a', d);
  c.deliver();
  c.rounds(3); // heartbeats carry the leader's commit to followers
  for (const id of c.ids) {
    assert.equal(c.node(id).core.status().commit, 3);
    assert.deepEqual(c.node(id).committed.map((e) => e.data), ['p1', 'p2', 'p3']);
  }
});

test('a new commit index rides on the next append, or goes out when the shell flushes it', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  c.rounds(1);
  const commitOf = (id: string) => c.node(id).core.status().commit;
  c.propose('a', 'p1');
  // Deliver the appends and the followers' answers by hand, to look at the leader's Ready.
  let flagged: Ready<string> | undefined;
  for (let guard = 0; c.queue.length > 0 && guard < 100; guard++) {
    const m = c.queue.shift()!;
    const r = c.apply(m.to, c.node(m.to).core.step(m.from, m.msg));
    if (m.to === 'a' && r.commitUnsent) flagged = r;
  }
  assert.ok(flagged, 'the leader said its commit index is unsent');
  assert.equal(commitOf('a'), 1);
  assert.ok(flagged.messages.every((m) => m.msg.type !== 'append' || m.msg.entries.length > 0), 'no commit-only append was sent');
  assert.equal(commitOf('b'), 0, 'the follower has not heard of the commit yet');
  // The next proposal's appends carry it: nothing left to flush.
  const r = c.propose('a', 'p2');
  assert.equal(r.commitUnsent, undefined);
  assert.ok(r.messages.some((m) => m.msg.type === 'append' && m.msg.commit === 1));
  c.deliver();
  assert.equal(commitOf('b'), 1, 'learned from the append of the next entry');
  assert.equal(commitOf('a'), 2);
  // Nothing to propose: the shell flushes, and the followers learn the commit at once.
  const flushed = c.apply('a', c.node('a').core.flushCommit());
  assert.deepEqual(flushed.messages.map((m) => [m.to, m.msg.type]), [['b', 'append'], ['c', 'append']]);
  c.deliver();
  assert.equal(commitOf('b'), 2);
  assert.equal(c.apply('a', c.node('a').core.flushCommit()).messages.length, 0, 'a second flush has nothing to send');
});

test('a proposal on a follower is refused with NOT_LEADER', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  assert.throws(() => c.propose('b', 'x'), (err) => isCairnError(err, 'NOT_LEADER') && /a is/.test(err.message));
});

test('log matching: an append that does not match at prevHeight is rejected with a hint and nothing is appended', () => {
  const log = chain([1, 1]);
  const c = new Cluster(['a', 'b', 'c'], { b: { log, hs: { term: 2 } } });
  const b = c.node('b');
  const leaderLog = chain([1, 1, 2, 2]);
  const beyond = b.core.step('a', { type: 'append', term: 2, prevHeight: 3, prevTerm: 2, entries: [leaderLog[4]!], commit: 0 });
  assert.deepEqual(beyond.append, []);
  assert.deepEqual(beyond.messages[0]?.msg, { type: 'appendResp', term: 2, success: false, matchHeight: 3, hintHeight: 2, hintTerm: 1 });
  b.storage.apply(beyond);

  const wrongTerm = b.core.step('a', { type: 'append', term: 2, prevHeight: 2, prevTerm: 2, entries: [], commit: 0 });
  assert.equal((wrongTerm.messages[0]?.msg as { success: boolean }).success, false);
  assert.equal(b.core.status().lastHeight, 2);
});

test('a follower truncates a conflicting uncommitted suffix and takes the leader entries', () => {
  const stale = chain([1, 1, 1], 'old');
  // The leader shares height 1 and has a term-2 entry at height 2.
  const leaderLog = [stale[0]!, stale[1]!, makeEntry(2, 2, stale[1]!.hash, 'new2')];
  const b = storageWith(stale, { term: 1, commit: 1 });
  const core = new RaftCore<string>(
    { id: 'b', peers: ['a', 'b', 'c'], electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2, random: () => 0.5, maxEntriesPerAppend: 4 },
    b,
  );
  const r = core.step('a', { type: 'append', term: 2, prevHeight: 1, prevTerm: 1, entries: [leaderLog[2]!], commit: 1 });
  assert.equal(r.truncateAfter, 1);
  assert.deepEqual(r.append.map((e) => e.data), ['new2']);
  assert.deepEqual(r.messages[0]?.msg, { type: 'appendResp', term: 2, success: true, matchHeight: 2 });
  b.apply(r);
  assert.equal(b.lastHeight(), 2);
  assert.equal(b.entry(2)?.data, 'new2');

  // A reordered, older append of the same leader must not cut the log back.
  const again = core.step('a', { type: 'append', term: 2, prevHeight: 0, prevTerm: 0, entries: [leaderLog[1]!], commit: 1 });
  assert.equal(again.truncateAfter, undefined);
  assert.deepEqual(again.append, []);
  b.apply(again);
  assert.equal(b.lastHeight(), 2);
});

test('a follower commits only the prefix it verified against the leader, not a stale suffix', () => {
  const stale = chain([1, 1, 1], 'old');
  const b = storageWith(stale, { term: 1 });
  const core = new RaftCore<string>(
    { id: 'b', peers: ['a', 'b', 'c'], electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2, random: () => 0.5, maxEntriesPerAppend: 4 },
    b,
  );
  // The term-2 leader has committed 3 entries of its own; this heartbeat only vouches for height 1.
  const r = core.step('a', { type: 'append', term: 2, prevHeight: 1, prevTerm: 1, entries: [], commit: 3 });
  assert.deepEqual(r.messages[0]?.msg, { type: 'appendResp', term: 2, success: true, matchHeight: 1 });
  assert.equal(core.status().commit, 1);
  assert.deepEqual(r.committed.map((e) => e.height), [1]);
});

test('truncating at or below the commit index is an invariant violation, not a silent rewrite', () => {
  const log = chain([1, 1]);
  const b = storageWith(log, { term: 1, commit: 2 });
  const core = new RaftCore<string>(
    { id: 'b', peers: ['a', 'b', 'c'], electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2, random: () => 0.5, maxEntriesPerAppend: 4 },
    b,
  );
  const rogue = makeEntry(2, 2, log[1]!.hash, 'rogue');
  assert.throws(
    () => core.step('a', { type: 'append', term: 2, prevHeight: 1, prevTerm: 1, entries: [rogue], commit: 2 }),
    /invariant violated: truncating after 1 would remove committed entries/,
  );
});

test('Figure 8: an old-term entry on a majority is not committed until an entry of the leader term is', () => {
  // s1 led term 2 and wrote height 2 (term 2) to itself and s2; s5 holds a term-3 entry at height 2.
  const base = chain([1]);
  const term2 = [...base, makeEntry(2, 2, base[1]!.hash, 'from-term-2')];
  const term3 = [...base, makeEntry(2, 3, base[1]!.hash, 'from-term-3')];
  const ids = ['s1', 's2', 's3', 's4', 's5'];
  const c = new Cluster(ids, {
    s1: { log: term2, hs: { term: 3, commit: 1 } },
    s2: { log: term2, hs: { term: 3, commit: 1 } },
    s3: { log: base, hs: { term: 3, commit: 1 } },
    s4: { log: base, hs: { term: 3, commit: 1 } },
    s5: { log: term3, hs: { term: 3, commit: 1 } },
  });
  c.down.add('s4').add('s5');
  c.elect('s1'); // term 4, votes from s2 and s3
  const s1 = c.node('s1').core;
  assert.equal(s1.status().term, 4);
  c.rounds(3); // heartbeats replicate height 2 (term 2) to s3: now on s1, s2, s3, a majority
  assert.equal(c.node('s3').storage.entry(2)?.data, 'from-term-2');
  assert.equal(s1.status().commit, 1, 'a majority holds the term-2 entry, yet it must not count as committed');

  c.propose('s1', 'term-4');
  c.deliver();
  assert.equal(s1.status().commit, 3, 'the term-4 entry commits, and height 2 with it');
});

test('messages of an older term are ignored, and answered with the newer term', () => {
  const c = new Cluster(['a', 'b', 'c'], { b: { log: chain([1]), hs: { term: 5 } } });
  const b = c.node('b');
  const append = b.core.step('a', { type: 'append', term: 3, prevHeight: 1, prevTerm: 1, entries: [], commit: 1 });
  assert.deepEqual(append.append, []);
  assert.equal(append.hardState, undefined);
  assert.deepEqual(append.messages[0]?.msg, { type: 'appendResp', term: 5, success: false, matchHeight: 1 });
  b.storage.apply(append);
  const vote = b.core.step('c', { type: 'vote', term: 4, lastHeight: 9, lastTerm: 4 });
  assert.deepEqual(vote.messages[0]?.msg, { type: 'voteResp', term: 5, granted: false });
  assert.equal(vote.hardState, undefined, 'no vote recorded');
  b.storage.apply(vote);
  assert.equal(b.core.status().term, 5);
  assert.equal(b.core.status().commit, 0);

  // A stale leader learns of the newer term from the answer and steps down.
  const c2 = new Cluster(['a', 'b', 'c']);
  c2.elect('a');
  const r = c2.node('a').core.step('b', { type: 'appendResp', term: 7, success: false, matchHeight: 0 });
  c2.node('a').storage.apply(r);
  assert.equal(c2.node('a').core.status().role, 'follower');
  assert.equal(c2.node('a').core.status().term, 7);
});

test('an entry whose prevHash does not link to the previous entry is rejected', () => {
  const log = chain([1]);
  const c = new Cluster(['a', 'b', 'c'], { b: { log, hs: { term: 1 } } });
  const b = c.node('b');
  const forged = makeEntry(2, 1, 'f'.repeat(64), 'x');
  const r = b.core.step('a', { type: 'append', term: 1, prevHeight: 1, prevTerm: 1, entries: [forged], commit: 0 });
  assert.deepEqual(r.append, []);
  assert.equal((r.messages[0]?.msg as { success: boolean }).success, false);
  b.storage.apply(r);
  // A break inside the message is malformed: ignored without an answer.
  const good = makeEntry(2, 1, log[1]!.hash, 'y');
  const broken = makeEntry(3, 1, 'e'.repeat(64), 'z');
  const r2 = b.core.step('a', { type: 'append', term: 1, prevHeight: 1, prevTerm: 1, entries: [good, broken], commit: 0 });
  assert.deepEqual(r2, { append: [], messages: [], committed: [] });
});

test('the validate hook refuses an entry: it is not appended, the valid entries before it are', () => {
  const seen: number[] = [];
  const validate = (e: Entry, prev: Entry): boolean => {
    seen.push(e.height);
    if (e.data === 'throws') throw new Error('unparseable block');
    return e.data !== 'bad' && e.prevHash === prev.hash && e.hash === entryHash(e.prevHash, e.height, e.term, e.data);
  };
  const c = new Cluster(['a', 'b', 'c'], {}, { validate });
  c.elect('a');
  c.propose('a', 'good');
  c.propose('a', 'bad');
  c.propose('a', 'after');
  c.deliver();
  c.rounds(4);
  assert.ok(seen.includes(2), 'the bad entry was shown to the hook');
  for (const id of ['b', 'c']) {
    const s = c.node(id).storage;
    assert.equal(s.lastHeight(), 1, `${id} holds the log up to 'good' only`);
    assert.equal(s.entry(1)?.data, 'good');
  }
  assert.equal(c.node('a').core.status().commit, 1, 'only what followers accepted commits');

  // A hook that throws on hostile data refuses the entry instead of crashing the node.
  const d = new Cluster(['a', 'b', 'c'], {}, { validate });
  d.elect('a');
  d.propose('a', 'throws');
  d.deliver();
  for (const id of ['b', 'c']) assert.equal(d.node(id).storage.lastHeight(), 0);
});

test('garbage, malformed and strangers\' messages are ignored without a trace', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  c.propose('a', 'x');
  c.deliver();
  const garbage: [string, unknown][] = [
    ['mallory', { type: 'append', term: 99, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 }],
    ['mallory', { type: 'vote', term: 99, lastHeight: 99, lastTerm: 98 }],
    ['SELF', { type: 'append', term: 99, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 }],
    ['b', null],
    ['b', 'append'],
    ['b', []],
    ['b', { type: 'append', term: -1, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 }],
    ['b', { type: 'append', term: 1.5, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 }],
    ['b', { type: 'append', term: Number.NaN, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 }],
    ['b', { type: 'append', term: 2 ** 60, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 }],
    ['b', { type: 'append', term: 99, prevHeight: 0, prevTerm: 0, entries: [{ height: 1 }], commit: 0 }],
    ['b', { type: 'append', term: 99, prevHeight: 0, prevTerm: 0, entries: 'no', commit: 0 }],
    ['b', { type: 'append', term: 99, prevHeight: 0, prevTerm: 0, entries: Array(5).fill(null), commit: 0 }],
    ['b', { type: 'vote', term: 99, lastHeight: 1, lastTerm: 100 }],
    ['b', { type: 'voteResp', term: 99, granted: 'yes' }],
    ['b', { type: 'appendResp', term: 1, success: true, matchHeight: 1e30 }],
    ['b', { type: 'appendResp', term: 1, success: true, matchHeight: 50 }], // beyond the leader's log
    ['b', { type: 'appendResp', term: 1, success: false, matchHeight: 0, hintHeight: -4 }],
    ['b', { type: 'who knows', term: 99 }],
  ];
  for (const id of c.ids) {
    const core = c.node(id).core;
    const before = JSON.stringify(core.status());
    for (const [sender, msg] of garbage) {
      const from = sender === 'SELF' ? id : sender;
      const r = core.step(from, msg as Msg);
      assert.deepEqual(r, { append: [], messages: [], committed: [] }, `${id} reacted to ${JSON.stringify(msg)} from ${from}`);
    }
    assert.equal(JSON.stringify(core.status()), before);
  }
});

test('CheckQuorum: a leader cut off from the majority steps down within the minimum election timeout', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  c.down.add('b').add('c');
  let ticks = 0;
  for (; ticks < 100 && c.node('a').core.status().role === 'leader'; ticks++) {
    c.tick('a');
    c.deliver();
  }
  assert.equal(c.node('a').core.status().role, 'follower');
  assert.ok(ticks <= 10, `stepped down after ${ticks} ticks`);
  assert.equal(c.node('a').core.status().hasQuorum, false);
  assert.equal(c.node('a').core.status().term, 1, 'stepping down does not bump the term');
});

test('PreVote and stickiness: a node back from a partition does not disrupt a working leader', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  c.down.add('c');
  for (let i = 0; i < 200; i++) {
    c.tick('a');
    c.tick('b');
    c.tick('c'); // c times out again and again, alone
    c.deliver();
  }
  assert.equal(c.node('c').core.status().term, 1, 'failed pre-votes never bumped the term');
  c.down.delete('c');
  c.rounds(30);
  assert.equal(c.node('a').core.status().role, 'leader');
  assert.equal(c.node('a').core.status().term, 1);
  assert.equal(c.node('c').core.status().leader, 'a');

  // A real vote at a higher term is ignored by a follower that hears from its leader.
  const r = c.node('b').core.step('c', { type: 'vote', term: 9, lastHeight: 99, lastTerm: 8 });
  assert.deepEqual(r, { append: [], messages: [], committed: [] });
});

test('a lagging follower catches up in bounded appends, skipping back fast with the hint', () => {
  const log = chain(Array.from({ length: 40 }, () => 1));
  const c = new Cluster(
    ['a', 'b', 'c'],
    { a: { log, hs: { term: 1, commit: 40 } }, b: { log, hs: { term: 1, commit: 40 } }, c: { log: [genesisEntry()], hs: { term: 1 } } },
    { maxEntriesPerAppend: 3 },
  );
  let rejects = 0;
  let appends = 0;
  const watch = (m: { from: string; to: string; msg: Msg }): boolean => {
    if (m.to === 'c' && m.msg.type === 'append') {
      appends++;
      assert.ok(m.msg.entries.length <= 3, 'append bounded by maxEntriesPerAppend');
    }
    if (m.from === 'c' && m.msg.type === 'appendResp' && !m.msg.success) rejects++;
    return false;
  };
  for (let i = 0; i < 100 && c.node('a').core.status().role === 'follower'; i++) c.tick('a');
  c.deliver(watch); // a wins and, as a new leader, starts probing c at height 41
  assert.equal(c.node('a').core.status().role, 'leader');
  for (let round = 0; round < 60 && c.node('c').core.status().commit < 40; round++) {
    for (const id of c.ids) c.tick(id);
    c.deliver(watch);
  }
  assert.equal(c.node('c').core.status().commit, 40);
  assert.deepEqual(c.node('c').committed.map((e) => e.data), log.slice(1).map((e) => e.data));
  assert.equal(rejects, 1, 'one rejection jumps from 41 straight back to 1');
  assert.ok(appends >= 14, `40 entries in appends of at most 3 (${appends})`);
});

test('appends are bounded by bytes too, and an entry bigger than the bound still goes, alone', () => {
  const sizes = Array.from({ length: 30 }, (_, i) => [4, 9, 30, 2][i % 4]!); // 30: above the bound by itself
  const log: Entry[] = [genesisEntry()];
  for (const [i, size] of sizes.entries()) log.push(makeEntry(i + 1, 1, log[i]!.hash, `${'x'.repeat(size - 2)}${String(i % 100).padStart(2, '0')}`));
  const c = new Cluster(
    ['a', 'b', 'c'],
    { a: { log, hs: { term: 1, commit: 30 } }, b: { log, hs: { term: 1, commit: 30 } }, c: { log: [genesisEntry()], hs: { term: 1 } } },
    { maxEntriesPerAppend: 8, maxAppendBytes: 20, entryBytes: (e) => e.data.length },
  );
  let alone = 0;
  const watch = (m: { from: string; to: string; msg: Msg }): boolean => {
    if (m.to === 'c' && m.msg.type === 'append' && m.msg.entries.length > 0) {
      const bytes = m.msg.entries.reduce((n, e) => n + e.data.length, 0);
      if (m.msg.entries.length === 1 && bytes > 20) alone++;
      else assert.ok(bytes <= 20, `an append of ${m.msg.entries.length} entries and ${bytes} bytes`);
    }
    return false;
  };
  for (let i = 0; i < 100 && c.node('a').core.status().role === 'follower'; i++) c.tick('a');
  c.deliver(watch);
  for (let round = 0; round < 200 && c.node('c').core.status().commit < 30; round++) {
    for (const id of c.ids) c.tick(id);
    c.deliver(watch);
  }
  assert.equal(c.node('c').core.status().commit, 30);
  assert.deepEqual(c.node('c').committed.map((e) => e.data), log.slice(1).map((e) => e.data));
  assert.ok(alone >= 7, `every oversized entry went alone (${alone})`);
});

test('after a restart committed entries after `applied` are delivered again, exactly once', () => {
  const log = chain([1, 1, 1, 1]);
  const s = storageWith(log, { term: 1, commit: 3 });
  const core = new RaftCore<string>(
    { id: 'a', peers: ['a', 'b', 'c'], electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2, random: () => 0.5, maxEntriesPerAppend: 4, applied: 1 },
    s,
  );
  const r = core.tick();
  assert.deepEqual(r.committed.map((e) => e.height), [2, 3]);
  s.apply(r);
  assert.deepEqual(core.tick().committed, []);
});

test('bad options are refused with BAD_CONFIG, and a shell that skipped a Ready is caught', () => {
  const s = new MemStorage<string>(genesisEntry());
  const base = { id: 'a', peers: ['a', 'b'], electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2, random: () => 0.5, maxEntriesPerAppend: 4 };
  for (const bad of [{ peers: ['b'] }, { heartbeatTicks: 10 }, { electionTicksMax: 5 }, { maxEntriesPerAppend: 0 }, { electionTicksMin: 1.5 }, { maxAppendBytes: 100 }, { maxAppendBytes: 0, entryBytes: () => 1 }]) {
    assert.throws(() => new RaftCore({ ...base, ...bad }, s), (err) => isCairnError(err, 'BAD_CONFIG'), JSON.stringify(bad));
  }
  const solo = new RaftCore({ ...base, peers: ['a'] }, s);
  let r: Ready<string> = solo.tick();
  for (let i = 0; i < 30 && solo.status().role !== 'leader'; i++) {
    s.apply(r);
    r = solo.tick();
  }
  s.apply(r);
  solo.propose((h, term, prev) => makeEntry(h, term, prev, 'x')); // Ready dropped on the floor
  assert.throws(() => solo.tick(), /previous Ready was not applied/);
});

test('asynchronous storage: a leader counts its own entries toward a majority only once they are durable', () => {
  const c = new Cluster(['a', 'b', 'c'], {}, { asyncStorage: true });
  c.elect('a');
  c.rounds(2); // the cluster settles; nothing proposed yet
  const a = c.node('a').core;
  const before = a.status().commit;
  const r = c.propose('a', 'x');
  const height = r.append[0]!.height;
  const term = r.append[0]!.term;
  // Only b answers: b and a's memory are a majority, b and a's disk are not yet.
  c.deliver((m) => m.to === 'c' || m.from === 'c');
  assert.equal(a.status().commit, before, 'committed on the leader memory alone');
  // A report for an entry the log does not hold (another term) changes nothing.
  c.apply('a', a.durableTo(height, term + 1));
  assert.equal(a.status().commit, before);
  const done = c.apply('a', a.durableTo(height, term));
  assert.equal(a.status().commit, height, 'durable on the leader and b: a majority');
  assert.deepEqual(done.committed.map((e) => e.data), ['x']);
  assert.equal(done.commitUnsent, true, 'followers have not heard of this commit yet');

  // Two followers are a majority without the leader's disk.
  const r2 = c.propose('a', 'y');
  c.deliver();
  assert.equal(a.status().commit, r2.append[0]!.height);
});

test('a follower whose disk was wiped catches up under the same leader', () => {
  const c = new Cluster(['a', 'b', 'c']);
  c.elect('a');
  for (const d of ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']) c.propose('a', d);
  c.deliver();
  c.rounds(3);
  assert.equal(c.node('b').core.status().commit, 6);
  const term = c.node('a').core.status().term;
  c.wipe('b');
  c.rounds(12); // heartbeats find b's log empty; b's refusals must not be taken for stale ones
  assert.equal(c.node('a').core.status().role, 'leader');
  assert.equal(c.node('a').core.status().term, term, 'no election was needed');
  assert.deepEqual(c.node('b').committed.map((e) => e.data), ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
  c.propose('a', 'p7');
  c.deliver();
  c.rounds(2);
  assert.equal(c.node('b').core.status().commit, 7, 'and keeps up after');
});

test('the wire takes no term an election could not follow: one message cannot wedge the chain', () => {
  // A term adopted from a message is the base of the next election's: at the largest safe
  // integer, term + 1 passed no parser and every SP stayed a candidate for good.
  const preVote = (term: number) => raftBodyP({ msg: { type: 'preVote', term, lastHeight: 0, lastTerm: 0 } });
  assert.equal(preVote(MAX_TERM).msg.term, MAX_TERM);
  for (const term of [MAX_TERM + 1, Number.MAX_SAFE_INTEGER]) assert.throws(() => preVote(term), (err: unknown) => isCairnError(err, 'BAD_MESSAGE'), String(term));
  assert.throws(() => raftBodyP({ msg: { type: 'appendResp', term: 1, success: true, matchHeight: 0, hintTerm: Number.MAX_SAFE_INTEGER } }), (err: unknown) => isCairnError(err, 'BAD_MESSAGE'));
});
