/**
 * Repair, run by the chain's leader (one repairer at a time, so two never place the same shard).
 * A pass asks every SP to scrub, takes each SP's shard inventory, and for every segment below
 * k+m shards rebuilds the missing shards from k others (ciphertext only: no user key is ever
 * needed), stores each on its SP or, if that SP is gone, on another SP holding no shard of the
 * segment (rendezvous order), and records new placements on the chain with a file.place signed
 * by this SP. Bounded: one segment at a time, a bounded backlog report, bounded inventories.
 */
import { ReedSolomon } from '../codec/reed-solomon.js';
import { shardSize } from '../codec/shards.js';
import { hashAlgOf, shardHashHex, type ShardHashAlg } from '../crypto/shard-hash.js';
import type { SigningKey } from '../crypto/keys.js';
import type { ChainStore } from '../chain/chain-store.js';
import type { Submitted } from '../chain/chain-node.js';
import { keys as stateKeys, type StoredFile } from '../chain/state.js';
import { MAX_SWEEP_KEYS } from '../mailbox/messages.js';
import { signTx, type Tx } from '../chain/tx.js';
import { rendezvousOrder } from '../chain/placement.js';
import { shardKey } from './shard-store.js';
import { isCairnError } from '../errors.js';

/** How the repairer reaches shards on any SP, itself included. */
export interface ShardAccess {
  providers: readonly string[];
  scrub(sp: string): Promise<{ scanned: number; bad: number }>;
  list(sp: string, after: string | undefined, limit: number): Promise<string[]>;
  get(sp: string, key: string): Promise<Uint8Array>;
  put(sp: string, key: string, hash: string, alg: ShardHashAlg, bytes: Uint8Array): Promise<void>;
  /** Deletes those of `keys` older than the SP's grace; how many went. */
  sweep(sp: string, keys: string[]): Promise<number>;
}

export interface RepairRun {
  startedAt: number;
  finishedAt: number | null;
  segmentsChecked: number;
  shardsMissing: number;
  shardsRebuilt: number;
  placementsRecorded: number;
  failures: number;
  stillDegraded: number; // segments that could not reach k+m (e.g. no spare SP while one is down)
  scrubbedBad: number;
  orphansDeleted: number; // shards no final record named, old enough to be nobody's upload
}

/** One line for a person: the SP's log and `cairn repair` say the same. */
export function describeRun(run: RepairRun): string {
  return `${run.segmentsChecked} segments checked, ${run.shardsMissing} shards missing, ${run.shardsRebuilt} rebuilt, ${run.placementsRecorded} re-placed, ${run.stillDegraded} still degraded, ${run.orphansDeleted} orphans deleted, ${run.failures} failures`;
}

export interface RepairStatus {
  running: boolean;
  backlog: number; // shards known missing and not yet rebuilt in the current pass
  lastRun: RepairRun | null;
}

const LIST_PAGE = 5_000;
const REACH_ATTEMPTS = 4;
const REACH_RETRY_MS = 500;

/**
 * An SP that just restarted may refuse a moment (connection backoff): try a few times before
 * calling it down. One that let a request time out is stalled: asking again would only hold the
 * pass for another timeout.
 */
async function reach<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= REACH_ATTEMPTS || isCairnError(err, 'TIMEOUT')) throw err;
      await new Promise((r) => setTimeout(r, REACH_RETRY_MS * attempt));
    }
  }
}
const MAX_INVENTORY = 5_000_000;
const MAX_PLACEMENTS_PER_TX = 1024;
/** File records read at once by a pass (one read snapshot, closed before any of them is worked on). */
const FILE_PAGE = 256;

export class Repairer {
  #running: Promise<RepairRun> | null = null;
  #backlog = 0;
  #last: RepairRun | null = null;

  constructor(
    private readonly opts: {
      id: string;
      signer: SigningKey;
      chain: ChainStore;
      submit: (tx: Tx) => Promise<Submitted>;
      /** Resolves once the chain state read here holds every final record (see ChainNode.leaderRead). */
      leaderRead: () => Promise<void>;
      shards: ShardAccess;
      log: (line: string) => void;
    },
  ) {}

  status(): RepairStatus {
    return { running: this.#running !== null, backlog: this.#backlog, lastRun: this.#last };
  }

  /**
   * Starts a pass unless one is running; resolves with that pass's outcome. `scrub`: have every SP
   * re-hash all its shards first, at full speed (an operator's pass); the periodic pass relies on
   * the SPs' background scrubbing instead, which is throttled.
   */
  run(options: { scrub: boolean }): Promise<RepairRun> {
    this.#running ??= this.#pass(options.scrub)
      .catch((err: Error) => {
        this.opts.log(`repair pass failed: ${err.message}`);
        // The pass's own record says it ended, and how: status readers see it, not a pass "running" for ever.
        const run = this.#last!;
        run.finishedAt = Date.now();
        run.failures += 1;
        return run;
      })
      .finally(() => {
        this.#running = null;
        this.#backlog = 0;
      });
    return this.#running;
  }

  async #inventory(sp: string): Promise<Set<string> | null> {
    const keys = new Set<string>();
    let after: string | undefined;
    try {
      while (keys.size < MAX_INVENTORY) {
        const page = await reach(() => this.opts.shards.list(sp, after, LIST_PAGE));
        for (const k of page) keys.add(k);
        if (page.length < LIST_PAGE) break;
        after = page.at(-1);
      }
      return keys;
    } catch {
      return null; // SP down: its shards count as missing, and nothing is placed on it
    }
  }

  async #pass(scrub: boolean): Promise<RepairRun> {
    const run: RepairRun = {
      startedAt: Date.now(),
      finishedAt: null,
      segmentsChecked: 0,
      shardsMissing: 0,
      shardsRebuilt: 0,
      placementsRecorded: 0,
      failures: 0,
      stillDegraded: 0,
      scrubbedBad: 0,
      orphansDeleted: 0,
    };
    this.#last = run;
    const sps = this.opts.shards.providers;
    if (scrub) {
      const scrubs = await Promise.allSettled(sps.map((sp) => reach(() => this.opts.shards.scrub(sp))));
      for (const s of scrubs) if (s.status === 'fulfilled') run.scrubbedBad += s.value.bad;
    }
    // Files recorded after this height stored their shards after the lists below were taken: they
    // would look missing, so they wait for the next pass.
    const asOf = this.opts.chain.applied();
    const inventory = new Map<string, Set<string> | null>();
    for (const sp of sps) inventory.set(sp, await this.#inventory(sp));

    // Segments left short of k+m this pass: their stray copies are kept from the sweep, as one may
    // be what rebuilds them when another SP comes back.
    const short = new Set<string>();
    // File by file in pages of keys, each record read when its turn comes: a file deleted meanwhile
    // is passed over, and no read snapshot stays open across the pass's network waits.
    for (let page = this.opts.chain.keysAfter('f/', undefined, FILE_PAGE); page.length > 0; page = this.opts.chain.keysAfter('f/', page.at(-1), FILE_PAGE)) {
      for (const fileKey of page) {
        const file = this.opts.chain.get(fileKey) as StoredFile | undefined;
        if (file === undefined || file.height > asOf) continue;
        const placements: { segment: number; shard: number; sp: string }[] = [];
        for (const [index, seg] of file.record.segments.entries()) {
          run.segmentsChecked += 1;
          const key = (i: number) => shardKey(file.record.id, index, i);
          const present = seg.shards.map((sh, i) => sh.sp !== null && inventory.get(sh.sp)?.has(key(i)) === true);
          const missing = present.flatMap((ok, i) => (ok ? [] : [i]));
          if (missing.length === 0) continue;
          run.shardsMissing += missing.length;
          this.#backlog += missing.length;
          try {
            const moved = await this.#repairSegment(file, index, present, inventory);
            run.shardsRebuilt += moved.rebuilt;
            placements.push(...moved.placements);
            if (moved.rebuilt < missing.length) {
              run.stillDegraded += 1;
              short.add(`${file.record.id}/${index}`);
            }
          } catch (err) {
            run.failures += 1;
            short.add(`${file.record.id}/${index}`);
            this.opts.log(`repair of ${file.record.id} segment ${index} failed: ${(err as Error).message}`);
          }
          this.#backlog -= missing.length;
        }
        for (let i = 0; i < placements.length; i += MAX_PLACEMENTS_PER_TX) {
          const batch = placements.slice(i, i + MAX_PLACEMENTS_PER_TX);
          const tx = signTx({ type: 'file.place', fileId: file.record.id, placements: batch }, this.opts.id, this.opts.signer, this.opts.chain.genesisHash);
          // One file's placement not final in time (a leader change) is that file's failure, not the pass's.
          const result = await this.opts.submit(tx).catch((err: Error) => ({ ok: false, error: err.message }));
          if (result.ok) run.placementsRecorded += batch.length;
          else {
            run.failures += 1;
            this.opts.log(`placement of ${file.record.id} refused: ${result.error}`);
          }
        }
      }
    }
    await this.#sweep(inventory, short, run);
    run.finishedAt = Date.now();
    this.opts.log(`repair pass: ${describeRun(run)}`);
    return run;
  }

  /**
   * Deletes shards that no final record names where they lie: left by an upload that failed and
   * could not clean up (or kept them because its record might have been final), by a repair whose
   * placement was refused, or stale copies of re-placed shards. Each SP deletes only those older
   * than its grace, which exceeds the time an upload may take to be recorded, so a shard whose
   * record is still coming stays. Each batch is judged against the state just before it is sent.
   */
  async #sweep(inventory: Map<string, Set<string> | null>, short: ReadonlySet<string>, run: RepairRun): Promise<void> {
    try {
      await this.opts.leaderRead();
    } catch (err) {
      this.opts.log(`orphan sweep skipped: ${(err as Error).message}`);
      return;
    }
    for (const [sp, held] of inventory) {
      if (!held) continue;
      let batch: string[] = [];
      let file: StoredFile | undefined;
      try {
        for (const key of held) {
          const [id, segment, shard] = key.split('/') as [string, string, string];
          if (file?.record.id !== id) file = this.opts.chain.get(stateKeys.file(id)) as StoredFile | undefined;
          if (file?.record.segments[Number(segment)]?.shards[Number(shard)]?.sp === sp) continue;
          if (short.has(`${id}/${segment}`)) continue;
          batch.push(key);
          if (batch.length === MAX_SWEEP_KEYS) {
            run.orphansDeleted += await reach(() => this.opts.shards.sweep(sp, batch));
            batch = [];
          }
        }
        if (batch.length > 0) run.orphansDeleted += await reach(() => this.opts.shards.sweep(sp, batch));
      } catch (err) {
        run.failures += 1;
        this.opts.log(`orphan sweep on ${sp} failed: ${(err as Error).message}`);
      }
    }
  }

  async #repairSegment(
    file: StoredFile,
    index: number,
    present: boolean[],
    inventory: Map<string, Set<string> | null>,
  ): Promise<{ rebuilt: number; placements: { segment: number; shard: number; sp: string }[] }> {
    const { k, m, id } = file.record;
    const seg = file.record.segments[index]!;
    const wanted = present.flatMap((ok, i) => (ok ? [] : [i]));
    // Where each missing shard goes, decided before any byte is read: back on its own SP if that
    // is up and holds no other shard of the segment, else on a spare that holds none; first the
    // shards that can go home, so a spare never takes the SP another shard belongs on.
    const holding = new Set(seg.shards.filter((sh, i) => present[i] && sh.sp !== null).map((sh) => sh.sp!));
    const targets = new Map<number, string>();
    for (const i of wanted) {
      const home = seg.shards[i]!.sp;
      if (home !== null && inventory.get(home) && !holding.has(home)) {
        targets.set(i, home);
        holding.add(home);
      }
    }
    const up = [...inventory.entries()].filter(([, inv]) => inv !== null).map(([sp]) => sp);
    const spares = rendezvousOrder(`${id}/${index}`, up).filter((sp) => !holding.has(sp));
    for (const i of wanted) if (!targets.has(i) && spares.length > 0) targets.set(i, spares.shift()!);
    if (targets.size === 0) return { rebuilt: 0, placements: [] }; // no SP can take any: reading would be for nothing

    const size = shardSize(seg.sealedLength, k);
    const alg = hashAlgOf(file.record.hashAlg);
    const shards: (Uint8Array | null)[] = new Array<Uint8Array | null>(k + m).fill(null);
    let good = 0;
    for (let i = 0; i < k + m && good < k; i++) {
      // Its recorded place first, then a stray copy elsewhere (a stale one left by a re-placement
      // is as good: the hash on the chain decides).
      const key = shardKey(id, index, i);
      const recorded = present[i] ? [seg.shards[i]!.sp!] : [];
      const strays = [...inventory.entries()].filter(([sp, inv]) => sp !== seg.shards[i]!.sp && inv?.has(key)).map(([sp]) => sp);
      for (const sp of [...recorded, ...strays]) {
        try {
          const bytes = await this.opts.shards.get(sp, key);
          if (bytes.length === size && shardHashHex(alg, bytes) === seg.shards[i]!.hash) {
            shards[i] = bytes;
            good += 1;
            break;
          }
        } catch {
          /* another copy or shard will do */
        }
      }
    }
    if (good < k) throw new Error(`only ${good} of ${k} shards needed could be read`);
    new ReedSolomon(k, m).reconstruct(shards, size, true);

    let rebuilt = 0;
    const placements: { segment: number; shard: number; sp: string }[] = [];
    for (const [i, target] of targets) {
      const bytes = shards[i]!;
      const hash = seg.shards[i]!.hash;
      if (shardHashHex(alg, bytes) !== hash) throw new Error(`rebuilt shard ${i} does not match its recorded hash`);
      await this.opts.shards.put(target, shardKey(id, index, i), hash, alg, bytes);
      rebuilt += 1;
      if (target !== seg.shards[i]!.sp) placements.push({ segment: index, shard: i, sp: target });
    }
    return { rebuilt, placements };
  }
}
