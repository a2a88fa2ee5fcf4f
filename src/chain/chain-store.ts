/**
 * A replica's chain on disk: blocks (the Raft log), the Raft hard state, endorsements, and the
 * state derived from final blocks. The state of a block and the applied height move together in
 * one LMDB write transaction, so a crash leaves either both or neither.
 *
 * Writes are group commits off the main thread: `write` records what a consensus step changes
 * and makes it readable here at once (an overlay in memory); the batches of an event-loop turn go
 * to LMDB as one asynchronous transaction, which lmdb-js commits and flushes on its write thread.
 * `onDurable` runs a callback once everything written so far is on disk: what a replica promises
 * others (acknowledgements, votes, endorsements) waits for it. Before, each step committed synchronously and its fsync blocked the main thread (17-39 %
 * of an SP's wall time at 64 concurrent small uploads).
 */
import type { Database, RootDatabase } from 'lmdb';
import { CairnError, invariant } from '../errors.js';
import { writeDurably } from '../lmdb-durable.js';
import type { Block } from './block.js';
import { genesisHash, type Genesis } from './genesis.js';
import type { HardState, RaftEntry, RaftStorage } from './raft.js';
import { applyBlock, stateDigest, type BlockEffects, type StateValue, type StateView } from './state.js';

export interface ChainDbs {
  root: RootDatabase;
  blocks: Database<unknown, number>;
  state: Database<unknown, string>;
  meta: Database<unknown, string>;
}

export interface Endorsement {
  sp: string;
  sig: string;
}

const HARD = 'raft/hard';
const LAST = 'chain/last';
const APPLIED = 'chain/applied';
const OPENED = 'chain/opened';
const endorseKey = (height: number) => `endorse/${String(height).padStart(12, '0')}`;
/**
 * Recent blocks kept decoded: consensus reads the last few blocks over and over (appends to
 * followers, certificates, the head), and decoding one from LMDB cost the leader a third of its
 * CPU under small uploads. Blocks are immutable once stored at a height (truncation drops them
 * from the cache too), and no caller mutates a block it is given.
 */
const RECENT_BLOCKS = 256;
const MAX_UNSAVED_ENDORSEMENTS = 256;
/**
 * Batches written and not yet on disk. The chain node stops taking peers' messages well before
 * this (MAX_UNDURABLE_WRITES); reaching it means something writes without that check, and the
 * replica stops loudly rather than letting the overlay grow without bound.
 */
const MAX_UNDURABLE_BATCHES = 4096;

type DbName = 'blocks' | 'state' | 'meta';
/** One write of a batch: a value, or undefined for a removal. */
interface Op {
  db: DbName;
  key: string | number;
  value: unknown;
}
interface Batch {
  seq: number;
  ops: Op[];
  callbacks: (() => void)[];
}
/** A value a batch wrote (undefined: removed) that LMDB may not show yet, and that batch. */
type Overlay = Map<string | number, { value: unknown; seq: number }>;
/** How far back the start-up scan looks for the last certificate on the chain. */
const MAX_CERT_SCAN = 10_000;

export class ChainStore implements RaftStorage<Block | null>, StateView {
  readonly genesisHash: string;
  #last: number;
  #applied: number;
  /** The highest height certified by a block in the log (committed or not). */
  #certified: number;
  readonly #recent = new Map<number, Block>();
  /** Endorsements received since the last write, keyed by height (see saveEndorsement). */
  readonly #unsaved = new Map<number, { hash: string; sigs: Endorsement[] }>();
  /** The batch a `write` is recording, so persist and applyFinal join it. */
  #open: Batch | null = null;
  /** Written and not yet durable, oldest first. */
  readonly #undurable: Batch[] = [];
  /** Written in this event-loop turn, not yet handed to LMDB. */
  readonly #turn: Batch[] = [];
  #seq = 0;
  /** What batches not yet visible in LMDB wrote: key -> value (undefined = removed) and batch. */
  readonly #overlay: Record<DbName, Overlay> = { blocks: new Map(), state: new Map(), meta: new Map() };
  #failure: Error | null = null;

  constructor(
    private readonly dbs: ChainDbs,
    readonly genesis: Genesis,
  ) {
    this.genesisHash = genesisHash(genesis);
    const stored = dbs.meta.get('chain/genesis') as string | undefined;
    if (stored === undefined) dbs.meta.putSync('chain/genesis', this.genesisHash);
    // A configuration mistake (the wrong --cluster or --data-dir), not a bug: said so, and nothing written.
    else if (stored !== this.genesisHash) throw new CairnError('BAD_CONFIG', `this SP's data belongs to another cluster (genesis ${stored.slice(0, 12)}…, the cluster file's is ${this.genesisHash.slice(0, 12)}…): check --cluster and --data-dir`);
    // An earlier process may have stopped after committing and before its flush: one synchronous
    // commit flushes the whole file, so what is read below is durable (the core counts it so).
    dbs.root.transactionSync(() => void dbs.meta.put(OPENED, Date.now()));
    this.#last = (dbs.meta.get(LAST) as number | undefined) ?? 0;
    this.#applied = (dbs.meta.get(APPLIED) as number | undefined) ?? 0;
    this.#certified = this.#scanCertified();
  }

  /**
   * Runs `fn`, recording its writes as one batch: readable here at once, committed atomically
   * with the other batches of this event turn, durable a little later (see `onDurable`).
   */
  write<T>(fn: () => T): T {
    if (this.#failure) throw this.#failure;
    if (this.#open) return fn();
    const batch: Batch = { seq: this.#seq + 1, ops: [], callbacks: [] };
    this.#open = batch;
    let result: T;
    try {
      for (const [height, e] of this.#unsaved) this.#put('meta', endorseKey(height), e);
      this.#unsaved.clear();
      result = fn();
    } finally {
      this.#open = null;
    }
    if (batch.ops.length === 0) return result;
    invariant(this.#undurable.length < MAX_UNDURABLE_BATCHES, `${this.#undurable.length} chain writes are waiting for the disk`);
    this.#seq = batch.seq;
    this.#undurable.push(batch);
    // Every batch of this event-loop turn goes to LMDB as one transaction: lmdb-js would commit
    // them together anyway, and one hand-over costs less than one per consensus step.
    if (this.#turn.length === 0) setImmediate(() => this.#writeTurn());
    this.#turn.push(batch);
    return result;
  }

  /** Runs `callback` once every batch written so far is on disk (at once if they are). */
  onDurable(callback: () => void): void {
    const last = this.#undurable.at(-1);
    if (last) last.callbacks.push(callback);
    else callback();
  }

  /** Batches written and not yet on disk. */
  undurableWrites(): number {
    return this.#undurable.length;
  }

  /** Resolves once every batch written so far is on disk. */
  settled(): Promise<void> {
    return new Promise((resolve) => this.onDurable(resolve));
  }

  #writeTurn(): void {
    const batches = this.#turn.splice(0);
    writeDurably(this.dbs.root, () => {
      for (const batch of batches) {
        for (const op of batch.ops) {
          if (op.value === undefined) void this.#db(op.db).remove(op.key);
          else void this.#db(op.db).put(op.key, op.value);
        }
      }
    }).then(
      () => this.#durableUpTo(batches.at(-1)!.seq),
      (err: unknown) => this.#fail(err),
    );
  }

  #durableUpTo(seq: number): void {
    // Flushes complete in commit order, and a flush covers every commit before it.
    this.dbs.root.resetReadTxn();
    while (this.#undurable.length > 0 && this.#undurable[0]!.seq <= seq) {
      const batch = this.#undurable.shift()!;
      for (const op of batch.ops) {
        if (this.#overlay[op.db].get(op.key)?.seq === batch.seq) this.#overlay[op.db].delete(op.key);
      }
      for (const cb of batch.callbacks) cb();
    }
  }

  #fail(err: unknown): void {
    // A write that did not reach the disk leaves memory ahead of it: nothing said from here on
    // could be trusted, so the replica stops (a restart reads what the disk holds).
    this.#failure = new Error(`a chain write failed: ${err instanceof Error ? err.message : String(err)}`);
    setImmediate(() => {
      throw this.#failure;
    });
  }

  #put(db: DbName, key: string | number, value: unknown): void {
    invariant(this.#open !== null, 'chain writes happen inside write()');
    this.#open.ops.push({ db, key, value });
    this.#overlay[db].set(key, { value, seq: this.#open.seq });
  }

  #get(db: DbName, key: string | number): unknown {
    const o = this.#overlay[db].get(key);
    return o ? o.value : this.#db(db).get(key);
  }

  #db(db: DbName): Database<unknown, string | number> {
    return this.dbs[db] as Database<unknown, string | number>;
  }

  hardState(): HardState {
    return (this.#get('meta', HARD) as HardState | undefined) ?? { term: 0, votedFor: null, commit: 0 };
  }

  lastHeight(): number {
    return this.#last;
  }

  /** A block of the log, served from the recent-block cache when it can be. */
  block(height: number): Block | undefined {
    const cached = this.#recent.get(height);
    if (cached) return cached;
    const block = this.blockOnDisk(height);
    if (block && height > this.#last - RECENT_BLOCKS) this.#remember(height, block);
    return block;
  }

  /** A block as LMDB holds it (or a batch on its way there), never from the cache: what verification must look at. */
  blockOnDisk(height: number): Block | undefined {
    return this.#get('blocks', height) as Block | undefined;
  }

  /** The highest height a certificate in the log covers; certificates after it are still due. */
  certifiedHeight(): number {
    return this.#certified;
  }

  entry(height: number): RaftEntry<Block | null> | undefined {
    if (height === 0) return { height: 0, term: 0, hash: this.genesisHash, prevHash: '', data: null };
    if (height > this.#last) return undefined;
    const block = this.block(height);
    if (!block) return undefined;
    return { height, term: block.header.term, hash: block.hash, prevHash: block.header.prevHash, data: block };
  }

  head(): { height: number; hash: string } {
    const applied = this.applied();
    return { height: applied, hash: applied === 0 ? this.genesisHash : this.block(applied)!.hash };
  }

  /** Records what a Raft step asks to persist; its messages wait for `onDurable`. */
  persist(hard: HardState | undefined, truncateAfter: number | undefined, append: RaftEntry<Block | null>[]): void {
    if (!hard && truncateAfter === undefined && append.length === 0) return;
    this.write(() => {
      if (hard) this.#put('meta', HARD, hard);
      if (truncateAfter !== undefined) {
        invariant(truncateAfter >= this.#applied, `truncating below the applied height ${this.#applied}`);
        for (let h = this.#last; h > truncateAfter; h--) {
          this.#put('blocks', h, undefined);
          this.#put('meta', endorseKey(h), undefined); // they endorse the block that goes
          this.#recent.delete(h);
        }
        this.#last = Math.min(this.#last, truncateAfter);
        this.#certified = this.#scanCertified();
      }
      for (const e of append) {
        invariant(e.height === this.#last + 1 && e.data !== null, `append out of order at ${e.height}`);
        this.#put('blocks', e.height, e.data);
        this.#last = e.height;
        this.#remember(e.height, e.data);
        for (const cert of e.data.header.certs) this.#certified = Math.max(this.#certified, cert.height);
      }
      this.#put('meta', LAST, this.#last);
    });
  }

  applied(): number {
    return this.#applied;
  }

  get(key: string): StateValue | undefined {
    return this.#get('state', key) as StateValue | undefined;
  }

  /**
   * Keys under `prefix` in key order, with what batches on their way to disk changed. State keys
   * are ASCII (user names, hex ids), where JavaScript's string order is LMDB's byte order.
   */
  *range(prefix: string, after?: string): Iterable<[string, StateValue]> {
    const pending = [...this.#overlay.state]
      .filter((p): p is [string, { value: unknown; seq: number }] => (p[0] as string).startsWith(prefix) && (after === undefined || (p[0] as string) > after))
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
    const shadowed = new Set(pending.map(([k]) => k));
    let i = 0;
    // Overlay entries up to `key` (inclusive) come first; a removed one yields nothing.
    const pendingUpTo = function* (key: string | null): Iterable<[string, StateValue]> {
      for (; i < pending.length && (key === null || pending[i]![0] <= key); i++) {
        const [k, o] = pending[i]!;
        if (o.value !== undefined) yield [k, o.value as StateValue];
      }
    };
    for (const { key, value } of this.dbs.state.getRange({ start: after === undefined ? prefix : `${after}\u0000`, end: `${prefix}\uffff` })) {
      yield* pendingUpTo(key);
      if (!shadowed.has(key)) yield [key, value as StateValue];
    }
    yield* pendingUpTo(null);
  }

  /**
   * Up to `limit` keys under `prefix` after `after`, read at once. A caller that awaits between
   * entries must page with this rather than hold range()'s iterator: that holds an LMDB read
   * snapshot, and no page freed while it is open can be reused, so the file only grows.
   */
  keysAfter(prefix: string, after: string | undefined, limit: number): string[] {
    const keys: string[] = [];
    for (const [key] of this.range(prefix, after)) {
      keys.push(key);
      if (keys.length >= limit) break;
    }
    return keys;
  }

  /** Applies a final block's effects and advances the applied height in one transaction. */
  applyFinal(block: Block): BlockEffects {
    invariant(block.header.height === this.#applied + 1, `apply out of order: ${block.header.height} after ${this.#applied}`);
    const effects = applyBlock(this, block, this.genesis);
    this.write(() => {
      for (const [key, value] of effects.writes) this.#put('state', key, value === null ? undefined : value);
      this.#put('meta', APPLIED, block.header.height);
    });
    this.#applied = block.header.height;
    return effects;
  }

  /**
   * Records a validator's endorsement of the block this log holds at `height`; one of any other
   * block (a stale one of an old leader's, or of a height not here yet) is ignored, and a record
   * for a block no longer here is replaced, so the records always speak of this log's blocks.
   * It is written with the next `write` (every consensus step that changes anything), not in a
   * commit of its own: a crash may lose the endorsements received since, and followers send
   * theirs again to every new leader.
   */
  saveEndorsement(height: number, hash: string, e: Endorsement): void {
    if (this.block(height)?.hash !== hash) return;
    const held = this.endorsements(height);
    const current = held?.hash === hash ? held : { hash, sigs: [] };
    if (current.sigs.some((s) => s.sp === e.sp)) return;
    const next = { hash, sigs: [...current.sigs, e] };
    // Inside a write, #unsaved is empty (flushed when the write began): the record goes straight in.
    if (this.#open) this.#put('meta', endorseKey(height), next);
    else this.#unsaved.set(height, next);
    if (this.#unsaved.size > MAX_UNSAVED_ENDORSEMENTS) this.write(() => undefined);
  }

  endorsements(height: number): { hash: string; sigs: Endorsement[] } | undefined {
    return this.#unsaved.get(height) ?? (this.#get('meta', endorseKey(height)) as { hash: string; sigs: Endorsement[] } | undefined);
  }

  /** Whether `write` has anything to do beyond what the caller brings. */
  hasUnsaved(): boolean {
    return this.#unsaved.size > 0;
  }

  /** Digest of the stored state and of the state rebuilt from blocks alone (for verify). */
  /**
   * Yields to the event loop every `blocksPerTurn` blocks; the last blocks and the stored state
   * are read in one turn, so both digests are of the same applied height.
   */
  async stateDigests(blocksPerTurn = Infinity): Promise<{ stored: string; rebuilt: string }> {
    const rebuilt = new Map<string, StateValue>();
    const view: StateView = { get: (k) => rebuilt.get(k) };
    for (let h = 1; h <= this.#applied; h++) {
      const block = this.blockOnDisk(h);
      if (!block) break;
      for (const [k, val] of applyBlock(view, block, this.genesis).writes) {
        if (val === null) rebuilt.delete(k);
        else rebuilt.set(k, val);
      }
      if (h % blocksPerTurn === 0) await new Promise((r) => setImmediate(r));
    }
    return { stored: stateDigest(this.range('')), rebuilt: stateDigest(rebuilt) };
  }

  #remember(height: number, block: Block): void {
    this.#recent.set(height, block);
    for (const h of this.#recent.keys()) {
      if (this.#recent.size <= RECENT_BLOCKS) break;
      this.#recent.delete(h); // Map order is insertion order: oldest first
    }
  }

  #scanCertified(): number {
    for (let h = this.#last, scanned = 0; h >= 1 && scanned < MAX_CERT_SCAN; h--, scanned++) {
      const certs = this.blockOnDisk(h)?.header.certs ?? [];
      if (certs.length > 0) return Math.max(...certs.map((c) => c.height));
    }
    return 0;
  }
}
