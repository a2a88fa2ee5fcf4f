/**
 * A replica's chain on disk: blocks (the Raft log), the Raft hard state, endorsements, and the
 * state derived from final blocks. The state of a block and the applied height move together in
 * one LMDB write transaction, so a crash leaves either both or neither.
 */
import type { Database, RootDatabase } from 'lmdb';
import { invariant } from '../errors.js';
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
const endorseKey = (height: number) => `endorse/${String(height).padStart(12, '0')}`;
/**
 * Recent blocks kept decoded: consensus reads the last few blocks over and over (appends to
 * followers, certificates, the head), and decoding one from LMDB cost the leader a third of its
 * CPU under small uploads. Blocks are immutable once stored at a height (truncation drops them
 * from the cache too), and no caller mutates a block it is given.
 */
const RECENT_BLOCKS = 256;
const MAX_UNSAVED_ENDORSEMENTS = 256;
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
  /** Set while a `write` transaction is open, so persist and applyFinal join it. */
  #inWrite = false;

  constructor(
    private readonly dbs: ChainDbs,
    readonly genesis: Genesis,
  ) {
    this.genesisHash = genesisHash(genesis);
    const stored = dbs.meta.get('chain/genesis') as string | undefined;
    if (stored === undefined) dbs.meta.putSync('chain/genesis', this.genesisHash);
    else invariant(stored === this.genesisHash, `this SP's data belongs to another cluster (genesis ${stored.slice(0, 12)}…)`);
    this.#last = (dbs.meta.get(LAST) as number | undefined) ?? 0;
    this.#applied = (dbs.meta.get(APPLIED) as number | undefined) ?? 0;
    this.#certified = this.#scanCertified();
  }

  /**
   * Runs `fn` in one synchronous, durable LMDB transaction: everything one consensus step
   * changes (log, hard state, applied state, own endorsements) costs one commit, not several.
   */
  write<T>(fn: () => T): T {
    if (this.#inWrite) return fn();
    return this.dbs.root.transactionSync(() => {
      this.#inWrite = true;
      try {
        for (const [height, e] of this.#unsaved) this.dbs.meta.putSync(endorseKey(height), e);
        this.#unsaved.clear();
        return fn();
      } finally {
        this.#inWrite = false;
      }
    });
  }

  hardState(): HardState {
    return (this.dbs.meta.get(HARD) as HardState | undefined) ?? { term: 0, votedFor: null, commit: 0 };
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

  /** A block as LMDB holds it now, never from the cache: what verification must look at. */
  blockOnDisk(height: number): Block | undefined {
    return this.dbs.blocks.get(height) as Block | undefined;
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

  /** Persists what a Raft step asks for, durably (synchronous commit) before its messages go out. */
  persist(hard: HardState | undefined, truncateAfter: number | undefined, append: RaftEntry<Block | null>[]): void {
    if (!hard && truncateAfter === undefined && append.length === 0) return;
    this.write(() => {
      if (hard) this.dbs.meta.putSync(HARD, hard);
      if (truncateAfter !== undefined) {
        invariant(truncateAfter >= this.#applied, `truncating below the applied height ${this.#applied}`);
        for (let h = this.#last; h > truncateAfter; h--) {
          this.dbs.blocks.removeSync(h);
          this.#recent.delete(h);
        }
        this.#last = Math.min(this.#last, truncateAfter);
        this.#certified = this.#scanCertified();
      }
      for (const e of append) {
        invariant(e.height === this.#last + 1 && e.data !== null, `append out of order at ${e.height}`);
        this.dbs.blocks.putSync(e.height, e.data);
        this.#last = e.height;
        this.#remember(e.height, e.data);
        for (const cert of e.data.header.certs) this.#certified = Math.max(this.#certified, cert.height);
      }
      this.dbs.meta.putSync(LAST, this.#last);
    });
  }

  applied(): number {
    return this.#applied;
  }

  get(key: string): StateValue | undefined {
    return this.dbs.state.get(key) as StateValue | undefined;
  }

  *range(prefix: string): Iterable<[string, StateValue]> {
    for (const { key, value } of this.dbs.state.getRange({ start: prefix, end: `${prefix}\uffff` })) {
      yield [key, value as StateValue];
    }
  }

  /** Applies a final block's effects and advances the applied height in one transaction. */
  applyFinal(block: Block): BlockEffects {
    invariant(block.header.height === this.#applied + 1, `apply out of order: ${block.header.height} after ${this.#applied}`);
    const effects = applyBlock(this, block, this.genesis);
    this.write(() => {
      for (const [key, value] of effects.writes) {
        if (value === null) this.dbs.state.removeSync(key);
        else this.dbs.state.putSync(key, value);
      }
      this.dbs.meta.putSync(APPLIED, block.header.height);
    });
    this.#applied = block.header.height;
    return effects;
  }

  /**
   * Records a validator's endorsement of a block. It is written with the next `write` (every
   * consensus step that changes anything), not in a commit of its own: a crash may lose the
   * endorsements received since, and followers send theirs again to every new leader.
   */
  saveEndorsement(height: number, hash: string, e: Endorsement): void {
    const current = this.endorsements(height) ?? { hash, sigs: [] };
    if (current.hash !== hash || current.sigs.some((s) => s.sp === e.sp)) return;
    const next = { hash, sigs: [...current.sigs, e] };
    // Inside a write, #unsaved is empty (flushed when the write began): the record goes straight in.
    if (this.#inWrite) this.dbs.meta.putSync(endorseKey(height), next);
    else this.#unsaved.set(height, next);
    if (this.#unsaved.size > MAX_UNSAVED_ENDORSEMENTS) this.write(() => undefined);
  }

  endorsements(height: number): { hash: string; sigs: Endorsement[] } | undefined {
    return this.#unsaved.get(height) ?? (this.dbs.meta.get(endorseKey(height)) as { hash: string; sigs: Endorsement[] } | undefined);
  }

  /** Whether `write` has anything to do beyond what the caller brings. */
  hasUnsaved(): boolean {
    return this.#unsaved.size > 0;
  }

  /** Digest of the stored state and of the state rebuilt from blocks alone (for verify). */
  stateDigests(): { stored: string; rebuilt: string } {
    const rebuilt = new Map<string, StateValue>();
    const view: StateView = { get: (k) => rebuilt.get(k) };
    for (let h = 1; h <= this.#applied; h++) {
      const block = this.blockOnDisk(h);
      if (!block) break;
      for (const [k, val] of applyBlock(view, block, this.genesis).writes) {
        if (val === null) rebuilt.delete(k);
        else rebuilt.set(k, val);
      }
    }
    const sorted = [...rebuilt.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return { stored: stateDigest(this.range('')), rebuilt: stateDigest(sorted) };
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
