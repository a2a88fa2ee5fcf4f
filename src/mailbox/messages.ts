/**
 * The message catalogue of an SP's mailbox: every type, its body schema and its reply. Both ends
 * import it, so a message's shape is written once; the server validates bodies with these parsers
 * before any handler runs.
 */
import * as v from '../validate.js';
import { txP, type Tx } from '../chain/tx.js';
import { SHARD_HASH_ALGS } from '../crypto/shard-hash.js';
import type { Block } from '../chain/block.js';
import type { StoredFile, TxResult, UserRecord } from '../chain/state.js';
import type { ScrubStats } from '../provider/scrubber.js';
import type { MailboxServerStats } from './server.js';
import type { ShardCheck } from '../provider/shard-store.js';
import type { RepairRun, RepairStatus } from '../provider/repairer.js';

/** Keys per shard.sweep: its reply and its deletes stay small, one write each. */
export const MAX_SWEEP_KEYS = 1_000;
const shardKeyP = v.str({ min: 1, max: 64, pattern: /^[0-9a-f]{32}\/\d{1,6}\/\d{1,3}$/ });

/**
 * The requests whose payloads may travel on a lane (src/mailbox/lane.ts): their handlers check
 * the bytes against what the request says (a shard's hash). Clients send them so, SPs take them so.
 */
export const LANE_TYPES: ReadonlySet<string> = new Set(['shard.put']);

export const bodies = {
  /**
   * `recordWithinMs`: how long the sender may take to record the shard (a web client's
   * max-upload-ms). An SP whose orphan grace is not longer refuses it rather than take a shard it
   * could sweep before its record is final: SPs and clients on different hosts have their own settings.
   * `hashAlg`: the hash `hash` is (src/crypto/shard-hash.ts); absent: SHA-256.
   */
  'shard.put': v.object({ key: shardKeyP, hash: v.hex32, hashAlg: v.optional(v.literal(...SHARD_HASH_ALGS)), recordWithinMs: v.optional(v.int({ min: 1, max: Number.MAX_SAFE_INTEGER })) }),
  'shard.get': v.object({ key: shardKeyP }),
  'shard.check': v.object({ key: shardKeyP }),
  'shard.delete': v.object({ key: shardKeyP }),
  'shard.list': v.object({ after: v.optional(v.str({ max: 64 })), limit: v.int({ min: 1, max: 10_000 }) }),
  /** Shards repair found no final record naming; the SP deletes those older than its grace. */
  'shard.sweep': v.object({ keys: v.array(shardKeyP, { min: 1, max: MAX_SWEEP_KEYS }) }),
  'sp.stats': v.object({}),
  'chain.submit': v.object({ tx: txP }),
  'chain.status': v.object({}),
  'chain.blocks': v.object({ from: v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }), limit: v.int({ min: 1, max: 256 }) }),
  'chain.verify': v.object({ atHeight: v.optional(v.int({ min: 1, max: Number.MAX_SAFE_INTEGER })) }),
  'state.user': v.object({ username: v.str({ min: 1, max: 64 }), minHeight: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }) }),
  'state.file': v.object({ id: v.str({ min: 1, max: 64 }), minHeight: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }) }),
  'scrub.run': v.object({}),
  'repair.start': v.object({ wait: v.optional(v.bool) }),
  'repair.status': v.object({}),
  'state.files': v.object({ username: v.str({ min: 1, max: 64 }), minHeight: v.int({ min: 0, max: Number.MAX_SAFE_INTEGER }) }),
} as const;

export type MessageType = keyof typeof bodies;
export type Body<T extends MessageType> = v.Parsed<(typeof bodies)[T]>;

export interface ChainStatus {
  id: string;
  role: 'follower' | 'candidate' | 'leader';
  term: number;
  leader: string | null;
  commit: number;
  applied: number;
  head: string;
  hasQuorum: boolean;
}

export interface SpStats {
  id: string;
  shards: number;
  bytes: number;
  quarantined: number;
  chain: ChainStatus;
  scrub: ScrubStats;
  /** Its mailbox: connections, requests in flight, payloads that came on lanes. */
  mailbox: MailboxServerStats;
}

export interface VerifyReport {
  provider: string;
  ok: boolean;
  height: number;
  head: string;
  problems: { height: number; problem: string }[];
  /** The hash of this replica's block at the height asked for (absent: not asked, or not applied that far). */
  at?: { height: number; hash: string };
}

/** Replies, by type: what a successful request answers. */
export interface Replies {
  'shard.put': { stored: true };
  'shard.get': { hash: string }; // + payload
  'shard.check': { state: ShardCheck };
  'shard.delete': { deleted: boolean };
  'shard.list': { keys: string[] };
  'shard.sweep': { deleted: number };
  'sp.stats': SpStats;
  'chain.submit': TxResult & { txId: string };
  'chain.status': ChainStatus;
  'chain.blocks': { blocks: Block[] };
  'chain.verify': VerifyReport;
  'scrub.run': { scanned: number; bad: number };
  'repair.start': { started: true; run?: RepairRun };
  'repair.status': RepairStatus;
  'state.user': { user: UserRecord | null; height: number };
  'state.file': { file: StoredFile | null; height: number };
  'state.files': { files: StoredFile[]; height: number };
}

export type { Tx };
