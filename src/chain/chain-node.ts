/**
 * The I/O shell around the pure Raft core: it persists what the core asks (LMDB, synchronously,
 * before any message leaves), sends its messages over the mailboxes, drives its clock, builds and
 * signs blocks from pending transactions, endorses every block it appends, and applies final
 * blocks to state. Everything non-deterministic lives here, none of it in the core.
 */
import { EventEmitter } from 'node:events';
import { randomInt } from 'node:crypto';
import { CairnError, invariant } from '../errors.js';
import type { SigningKey } from '../crypto/keys.js';
import { verifySignature } from '../crypto/keys.js';
import { blockProblems, blockWireBytes, endorsementMessage, makeBlock, takeBlockTxs, type Block, type Certificate } from './block.js';
import type { ChainStore } from './chain-store.js';
import { majority } from './genesis.js';
import { RaftCore, type RaftEntry, type RaftMessage, type Ready } from './raft.js';
import { MAX_APPEND_BYTES, MAX_ENTRIES_PER_APPEND, type EndorsementWire } from './raft-wire.js';
import { signerKey, txOutcome, type BlockEffects, type TxResult } from './state.js';
import { txId, verifyTx, type Tx } from './tx.js';

/** How a chain node reaches its peers; the provider backs it with mailbox clients. */
export interface PeerLink {
  send(to: string, type: 'raft' | 'chain.endorse', body: unknown): void;
  /** Puts what send() queued on the wire now, not at the end of the event-loop turn. */
  flush(): void;
  submit(to: string, tx: Tx, timeoutMs: number): Promise<TxResult & { txId: string }>;
}

export interface ChainNodeOptions {
  id: string;
  store: ChainStore;
  signer: SigningKey;
  peers: PeerLink;
  tickMs: number;
  /** See COMMIT_NOTICE_LINGER_MS (the default). */
  commitNoticeLingerMs?: number;
  log: (line: string) => void;
}

export type Submitted = TxResult & { txId: string };

const ELECTION_TICKS = { min: 10, max: 20 };
const HEARTBEAT_TICKS = 2;
const MAX_PENDING_TXS = 4096;
/**
 * Blocks proposed and not yet final. With the leader's appends leaving before its own commit,
 * two in flight beat one (A/B, fresh clusters: finality at 64 submitters 1883-2036 -> 2142-2180
 * tx/s, 4 KiB uploads c8 ~420 -> ~443/s and c64 ~727 -> ~772/s); before that change two were no better.
 */
const MAX_UNCOMMITTED_BLOCKS = 2;
const MAX_CERTS_PER_BLOCK = 64;
/** An entry's fields around its block (height, term, two hashes) in a message, generously. */
const ENTRY_WIRE_OVERHEAD = 256;
/**
 * How long a leader waits before telling followers of a commit on its own: a block proposed
 * meanwhile carries the commit in its appends for free. Telling them at once cost each follower a
 * second append, answer and durable commit per block (to apply it). With the wait, followers apply
 * a block with the next one's append; on an idle chain they apply it this much later, and a read
 * on a follower waits for the height its client asks for, so it never sees older state for it.
 * A/B on fresh clusters, 4 KiB uploads: 7 of 7 pairs faster at concurrency 1 and 8 (+2-12 %),
 * concurrency 64 as fast or faster.
 */
const COMMIT_NOTICE_LINGER_MS = 10;
/** Steps written and not yet on disk beyond which messages from peers are dropped (see onRaft). */
const MAX_UNDURABLE_WRITES = 1024;
const SUBMIT_TIMEOUT_MS = 15_000;
const LEADER_WAIT_MS = 3_000;
/**
 * Endorsements are sent once; one lost on the way (a congested or broken link) would hold
 * certification back until the next election, since certificates are contiguous. So a follower
 * whose chain has a block this far below its last one still uncertified sends its uncertified
 * endorsements to the leader again, at most once every ENDORSE_RETRY_TICKS. Normally a block is
 * certified one or two blocks later; an idle chain (no new blocks) never triggers it.
 */
const CERT_LAG_BLOCKS = 4;
const ENDORSE_RETRY_TICKS = 20;

/**
 * Everyone waiting for one transaction: a web client that heard nothing sends the same signed
 * transaction again (and a follower forwards it), so a second caller may come while the first
 * waits; each must learn the outcome, or a failure. Bounded: callers beyond it are refused.
 */
interface Waiter {
  callers: { resolve: (r: Submitted) => void; reject: (e: Error) => void }[];
  timer: NodeJS.Timeout;
}
const MAX_CALLERS_PER_TX = 16;

const shuttingDown = () => new CairnError('UNAVAILABLE', 'the storage provider is shutting down');

export class ChainNode extends EventEmitter {
  readonly #core: RaftCore<Block | null>;
  readonly #store: ChainStore;
  readonly #pending: Tx[] = [];
  readonly #waiters = new Map<string, Waiter>();
  readonly #validators: Map<string, string>;
  #timer: NodeJS.Timeout | undefined;
  #proposeScheduled = false;
  #commitFlush: NodeJS.Timeout | undefined;
  /** term/leader our endorsements last went to, so a new leader gets the ones it may lack. */
  #endorsedLeader = '';
  #ticks = 0;
  #stopped = false;

  constructor(private readonly opts: ChainNodeOptions) {
    super();
    this.setMaxListeners(1024);
    this.#store = opts.store;
    const genesis = opts.store.genesis;
    this.#validators = new Map(genesis.validators.map((val) => [val.id, val.signKey]));
    // The provider refuses a node key its genesis does not name before it opens anything.
    invariant(this.#validators.get(opts.id) === opts.signer.publicKey, `node key of ${opts.id} does not match the genesis`);
    this.#core = new RaftCore<Block | null>(
      {
        id: opts.id,
        peers: genesis.validators.map((val) => val.id),
        electionTicksMin: ELECTION_TICKS.min,
        electionTicksMax: ELECTION_TICKS.max,
        heartbeatTicks: HEARTBEAT_TICKS,
        random: () => randomInt(0, 2 ** 31) / 2 ** 31,
        maxEntriesPerAppend: MAX_ENTRIES_PER_APPEND,
        maxAppendBytes: MAX_APPEND_BYTES,
        entryBytes: (entry) => ENTRY_WIRE_OVERHEAD + (entry.data ? blockWireBytes(entry.data) : 0),
        validate: (entry, prev) => this.#validEntry(entry, prev),
        applied: opts.store.applied(),
        maxUncommitted: 64, // above MAX_UNCOMMITTED_BLOCKS, so the new-term empty block always fits
        asyncStorage: true,
      },
      opts.store,
    );
  }

  start(): void {
    this.#timer = setInterval(() => {
      if (++this.#ticks % ENDORSE_RETRY_TICKS === 0 && this.#certificationLags()) this.#endorsedLeader = ''; // this step re-sends
      this.#run(() => this.#core.tick());
    }, this.opts.tickMs);
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#commitFlush);
    for (const id of [...this.#waiters.keys()]) this.#settle(id, shuttingDown());
  }

  status() {
    const s = this.#core.status();
    const head = this.#store.head();
    return {
      id: this.opts.id,
      role: s.role,
      term: s.term,
      leader: s.leader,
      commit: s.commit,
      applied: head.height,
      head: head.hash,
      hasQuorum: s.hasQuorum,
    };
  }

  onRaft(from: string, msg: RaftMessage<Block | null>): void {
    if (!this.#validators.has(from) || from === this.opts.id) return;
    // A disk this far behind gets no more work from peers: Raft survives a lost message (the
    // leader resends), memory would not survive an unbounded backlog of writes.
    if (this.#store.undurableWrites() >= MAX_UNDURABLE_WRITES) return;
    this.#run(() => this.#core.step(from, msg));
  }

  onEndorse(from: string, endorsements: EndorsementWire[]): void {
    const key = this.#validators.get(from);
    if (!key || this.#stopped) return;
    const need = majority(this.#validators.size);
    for (const e of endorsements) {
      // Not verified: one of a block we do not hold (an old leader's, kept no more), a re-sent
      // endorsement we hold already, and any beyond a majority (a certificate needs no more, and
      // every follower verifies each signature a certificate carries, so one more costs each of
      // them a verification too).
      if (this.#store.block(e.height)?.hash !== e.hash) continue;
      const held = this.#store.endorsements(e.height);
      if (held && held.hash === e.hash && (held.sigs.length >= need || held.sigs.some((s) => s.sp === from && s.sig === e.sig))) continue;
      if (verifySignature(key, endorsementMessage(e.hash), e.sig)) {
        this.#store.saveEndorsement(e.height, e.hash, { sp: from, sig: e.sig });
      }
    }
  }

  /** Resolves once the transaction is final (ok or rejected by the rules); retryable errors otherwise. */
  async submit(tx: Tx): Promise<Submitted> {
    if (this.#stopped) throw shuttingDown();
    const id = txId(tx);
    const done = txOutcome((key) => this.#store.get(key), tx, id);
    if (done) return { ...done, txId: id };
    this.#checkChain(tx);
    // A transaction's id leaves its signature out: a copy with a bad signature, put in a block
    // first, would be recorded as that id's outcome (rejected), and the genuine one with it.
    const key = this.#checkedSignerKey(tx);
    const leader = await this.#awaitLeader();
    if (this.#stopped) throw shuttingDown(); // stop() settled every waiter meanwhile
    if (leader !== this.opts.id) return this.opts.peers.submit(leader, tx, SUBMIT_TIMEOUT_MS);
    // A signer this leader's state does not know cannot be checked: its block would record only
    // its refusal, in every replica for good (anyone holding the cluster key could fill the chain
    // with them). The key is read again: this node may have applied the signer's registration
    // while it waited to lead. A leader still applying its predecessor's blocks may not know a
    // new user yet.
    if (key === undefined && this.#checkedSignerKey(tx) === undefined) {
      const s = this.#core.status();
      if (this.#store.entry(s.commit)?.term !== s.term || this.#store.applied() < s.commit) {
        throw new CairnError('NOT_LEADER', 'a new leader is catching up with the chain; retry shortly');
      }
      throw new CairnError('INVALID_TX', `${tx.signer} is not a registered user; the transaction was not submitted`);
    }
    if (this.#pending.length >= MAX_PENDING_TXS) {
      throw new CairnError('OVERLOADED', 'too many transactions are waiting for a block; retry shortly');
    }
    const existing = this.#waiters.get(id);
    if (existing && existing.callers.length >= MAX_CALLERS_PER_TX) {
      throw new CairnError('OVERLOADED', 'this transaction is already waiting for a block many times over; retry shortly');
    }
    const result = new Promise<Submitted>((resolve, reject) => {
      // The same transaction submitted again while it waits: every caller learns the one outcome.
      if (existing) return existing.callers.push({ resolve, reject });
      const timer = setTimeout(() => {
        this.#settle(id, new CairnError('TIMEOUT', 'the transaction was not final in time; it may still be, retry to find out'));
      }, SUBMIT_TIMEOUT_MS);
      this.#waiters.set(id, { callers: [{ resolve, reject }], timer });
      this.#pending.push(tx);
    });
    this.#schedulePropose();
    return result;
  }

  /** Refuses a transaction signed for another chain, or (made by an older client) for none. */
  #checkChain(tx: Tx): void {
    const ours = this.#store.genesisHash;
    if (tx.chain === ours) return;
    throw new CairnError(
      'INVALID_TX',
      tx.chain === undefined
        ? 'the transaction names no chain (its client is older than this cluster\'s providers: update it); it was not submitted'
        : `the transaction was signed for chain ${tx.chain.slice(0, 12)}…, not this cluster's (${ours.slice(0, 12)}…); it was not submitted`,
    );
  }

  /** The key `tx` must be signed with as this replica's state tells now (undefined: unknown); throws INVALID_TX if it does not verify. */
  #checkedSignerKey(tx: Tx): string | undefined {
    const key = signerKey(tx, (k) => this.#store.get(k), this.#store.genesis);
    if (key !== undefined && !verifyTx(tx, key)) throw new CairnError('INVALID_TX', `the transaction's signature does not match ${tx.signer}'s key; it was not submitted`);
    return key;
  }

  /**
   * Waits until this replica has applied `height` (read-your-writes across SPs), bounded. A
   * replica cut off from the majority refuses: its state may be stale and it says so.
   */
  async waitApplied(height: number, timeoutMs = 2_000): Promise<void> {
    if (!this.status().hasQuorum) {
      throw new CairnError('NO_MAJORITY', 'the chain has no majority of storage providers; metadata cannot be read reliably until one is back');
    }
    if (this.#store.applied() >= height) return;
    await new Promise<void>((resolve, reject) => {
      const onApplied = () => {
        if (this.#store.applied() < height) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new CairnError('UNAVAILABLE', `this replica is behind (at ${this.#store.applied()}, asked for ${height}); the chain may have no majority`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('applied', onApplied);
      };
      this.on('applied', onApplied);
    });
  }

  /**
   * Resolves once this replica's state holds every final transaction: it leads with a majority,
   * a block of its own term is final (until then a new leader may not know the last commit), and
   * it has applied up to the commit. Throws NOT_LEADER otherwise.
   */
  async leaderRead(): Promise<void> {
    const s = this.#core.status();
    if (s.role !== 'leader' || !s.hasQuorum || this.#store.entry(s.commit)?.term !== s.term) {
      throw new CairnError('NOT_LEADER', 'only a leader with a majority and a final block of its term knows every final record; retry shortly');
    }
    await this.waitApplied(s.commit);
  }

  async #awaitLeader(): Promise<string> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      const s = this.#core.status();
      if (s.role === 'leader' && s.hasQuorum) return this.opts.id;
      if (s.role !== 'leader' && s.leader) return s.leader;
      if (Date.now() >= deadline) {
        throw new CairnError('NO_MAJORITY', 'the chain has no leader with a majority of providers; writes are unavailable until a majority is up');
      }
      await new Promise((r) => setTimeout(r, this.opts.tickMs));
    }
  }

  #validEntry(entry: RaftEntry<Block | null>, prev: RaftEntry<Block | null>): boolean {
    const block = entry.data;
    if (!block) return false;
    const h = block.header;
    return (
      block.hash === entry.hash &&
      h.height === entry.height &&
      h.term === entry.term &&
      h.prevHash === prev.hash &&
      entry.prevHash === prev.hash &&
      blockProblems(block, this.#store.genesis, (cert, e) => this.#knownEndorsement(cert, e)).length === 0
    );
  }

  /** Endorsements on record were verified on arrival (or are our own): no second verification. */
  #knownEndorsement(cert: Certificate, e: Certificate['sigs'][number]): boolean {
    const stored = this.#store.endorsements(cert.height);
    return stored !== undefined && stored.hash === cert.hash && stored.sigs.some((s) => s.sp === e.sp && s.sig === e.sig);
  }

  #run(step: () => Ready<Block | null>): void {
    if (this.#stopped) return;
    const ready = step();
    // What does not depend on this step's writes leaves at once (the core says which: a leader's
    // appends, answers that acknowledge only durable blocks), so the leader's disk write overlaps
    // the followers' and a heartbeat's answer never waits behind a slow disk.
    const now = ready.messages.filter((m) => !m.afterDurable);
    if (now.length > 0) {
      for (const { to, msg } of now) this.opts.peers.send(to, 'raft', { msg });
      this.opts.peers.flush();
    }
    // One batch per step: the log, the hard state, our endorsements and the blocks that became
    // final, written together (a crash leaves all or none) and durable a little later, off this
    // thread. What the step promises others waits for that (Raft's persist-then-send); blocks that
    // became final are announced at once: final means durable on a majority already, and the
    // state they produce is readable here from now on.
    const final: [Block, BlockEffects][] = [];
    let endorsements: EndorsementWire[] = [];
    const writes = ready.hardState || ready.truncateAfter !== undefined || ready.append.length > 0 || ready.committed.length > 0;
    if (writes || this.#store.hasUnsaved()) {
      endorsements = this.#store.write(() => {
        this.#store.persist(ready.hardState, ready.truncateAfter, ready.append);
        for (const entry of ready.committed) {
          if (entry.height <= this.#store.applied()) continue;
          invariant(entry.data !== null, 'final entries are blocks');
          final.push([entry.data, this.#store.applyFinal(entry.data)]);
        }
        return this.#endorse(ready.append);
      });
    }
    // Only the leader builds certificates, so only it needs our endorsements; a new leader gets
    // those it may lack (heights not yet certified in the log) once we learn of it.
    const { leader, term } = this.#core.status();
    const otherLeader = leader !== null && leader !== this.opts.id ? leader : null;
    if (otherLeader !== null && `${term}/${otherLeader}` !== this.#endorsedLeader) {
      this.#endorsedLeader = `${term}/${otherLeader}`;
      endorsements = this.#ownUncertifiedEndorsements();
    }
    const held = ready.messages.filter((m) => m.afterDurable);
    const endorse = otherLeader !== null && endorsements.length > 0;
    if (held.length > 0 || endorse) {
      // Also when this step wrote nothing: an answer must not overtake one an earlier write holds back.
      this.#store.onDurable(() => {
        if (this.#stopped) return;
        if (endorse) this.opts.peers.send(otherLeader, 'chain.endorse', { endorsements });
        for (const { to, msg } of held) this.opts.peers.send(to, 'raft', { msg });
        this.opts.peers.flush();
      });
    }
    if (ready.append.length > 0) {
      const last = ready.append.at(-1)!;
      this.#store.onDurable(() => this.#run(() => this.#core.durableTo(last.height, last.term)));
    }
    for (const [block, effects] of final) this.#announce(block, effects);
    if (ready.becameLeader) {
      this.opts.log(`${this.opts.id} is leader for term ${this.#core.status().term}`);
      this.#propose(true);
    }
    if (this.#core.status().role !== 'leader') this.#failPendingNotLeader();
    else if (this.#pending.length > 0) this.#schedulePropose();
    // Unless a proposal (scheduled above, or arriving within the linger) carries the commit first.
    if (ready.commitUnsent) this.#scheduleCommitFlush();
  }

  #scheduleCommitFlush(): void {
    if (this.#commitFlush) return;
    this.#commitFlush = setTimeout(() => {
      this.#commitFlush = undefined;
      this.#run(() => this.#core.flushCommit());
    }, this.opts.commitNoticeLingerMs ?? COMMIT_NOTICE_LINGER_MS);
  }

  /** Signs every appended block and records our own endorsements; the caller sends them. */
  #endorse(entries: RaftEntry<Block | null>[]): EndorsementWire[] {
    const endorsements: EndorsementWire[] = entries.map((e) => ({
      height: e.height,
      hash: e.hash,
      sig: this.opts.signer.sign(endorsementMessage(e.hash)),
    }));
    for (const e of endorsements) this.#store.saveEndorsement(e.height, e.hash, { sp: this.opts.id, sig: e.sig });
    return endorsements;
  }

  #certificationLags(): boolean {
    return this.#store.certifiedHeight() + CERT_LAG_BLOCKS < this.#store.lastHeight();
  }

  #ownUncertifiedEndorsements(): EndorsementWire[] {
    const out: EndorsementWire[] = [];
    const last = this.#store.lastHeight();
    for (let h = this.#store.certifiedHeight() + 1; h <= last && out.length < MAX_CERTS_PER_BLOCK; h++) {
      const record = this.#store.endorsements(h);
      const own = record?.sigs.find((e) => e.sp === this.opts.id);
      const block = this.#store.block(h);
      if (own && block && record!.hash === block.hash) out.push({ height: h, hash: block.hash, sig: own.sig });
    }
    return out;
  }

  /** Tells the submitters of a final block's transactions their outcome, and the provider. */
  #announce(block: Block, effects: BlockEffects): void {
    for (const [id, result] of effects.results) this.#settle(id, { ...result, txId: id });
    this.emit('applied', block, effects);
  }

  /** Tells every caller waiting for the transaction its outcome or failure, once. */
  #settle(id: string, outcome: Submitted | CairnError): void {
    const w = this.#waiters.get(id);
    if (!w) return;
    this.#waiters.delete(id);
    clearTimeout(w.timer);
    for (const c of w.callers) {
      if (outcome instanceof CairnError) c.reject(outcome);
      else c.resolve(outcome);
    }
  }

  #failPendingNotLeader(): void {
    if (this.#pending.length === 0) return;
    for (const tx of this.#pending.splice(0)) {
      this.#settle(txId(tx), new CairnError('NOT_LEADER', 'leadership changed before the transaction was proposed; retry'));
    }
  }

  #schedulePropose(): void {
    if (this.#proposeScheduled) return;
    this.#proposeScheduled = true;
    // Transactions that arrive in the same turn share a block.
    setImmediate(() => {
      this.#proposeScheduled = false;
      this.#propose(false);
    });
  }

  #propose(empty: boolean): void {
    const s = this.#core.status();
    if (this.#stopped || s.role !== 'leader') return;
    if (!empty && (this.#pending.length === 0 || s.lastHeight - s.commit >= MAX_UNCOMMITTED_BLOCKS)) return;
    const txs = empty ? [] : takeBlockTxs(this.#pending);
    const certs = this.#certificates(s.commit);
    this.#run(() =>
      this.#core.propose((height, term, prevHash) => {
        const block = makeBlock({ height, prevHash, time: Date.now(), proposer: this.opts.id, term, certs }, txs, this.opts.signer);
        return { height, term, hash: block.hash, prevHash, data: block };
      }),
    );
  }

  /** Certificates for final blocks that no block on the chain certifies yet. */
  #certificates(commit: number): Certificate[] {
    const need = majority(this.#validators.size);
    const out: Certificate[] = [];
    for (let h = this.#store.certifiedHeight() + 1; h <= commit && out.length < MAX_CERTS_PER_BLOCK; h++) {
      const e = this.#store.endorsements(h);
      const block = this.#store.block(h);
      if (!e || !block || e.hash !== block.hash || e.sigs.length < need) break; // certificates stay contiguous
      out.push({ height: h, hash: e.hash, sigs: e.sigs });
    }
    return out;
  }
}
