/**
 * Raft messages as they cross the network between SPs: validated at the edge (a block inside an
 * append is fully parsed) before the pure core ever sees them.
 */
import * as v from '../validate.js';
import { blockP, type Block } from './block.js';
import type { RaftEntry, RaftMessage } from './raft.js';

const n = v.int({ min: 0, max: Number.MAX_SAFE_INTEGER });
/**
 * Terms far below the largest safe integer: a term is adopted from any message that carries a
 * higher one, and an SP's next election asks for one more, which at the largest safe integer no
 * parser took: every SP stuck as a candidate for good. 2^48 elections never happen.
 */
export const MAX_TERM = 2 ** 48;
const term = v.int({ min: 0, max: MAX_TERM });
const entryP: v.Parser<RaftEntry<Block | null>> = (value, path) => {
  const e = v.object({ height: n, term, hash: v.hex32, prevHash: v.str({ max: 64 }), data: blockP })(value, path);
  return e as RaftEntry<Block | null>;
};

export const MAX_ENTRIES_PER_APPEND = 64;
/**
 * An append carries blocks up to this many wire bytes (at least one block): half the SPs' frame
 * limit, so an append always fits one (a block is at most MAX_BLOCK_BYTES unless one transaction
 * alone is bigger, and a transaction arrived in a frame of the web client's, at most 32 MiB).
 */
export const MAX_APPEND_BYTES = 16 * 1024 * 1024;

const messageP = v.oneOf<RaftMessage<Block | null>>('type', {
  preVote: v.object({ type: v.literal('preVote'), term, lastHeight: n, lastTerm: term }),
  preVoteResp: v.object({ type: v.literal('preVoteResp'), term, granted: v.bool }),
  vote: v.object({ type: v.literal('vote'), term, lastHeight: n, lastTerm: term }),
  voteResp: v.object({ type: v.literal('voteResp'), term, granted: v.bool }),
  append: v.object({
    type: v.literal('append'),
    term,
    prevHeight: n,
    prevTerm: term,
    entries: v.array(entryP, { max: MAX_ENTRIES_PER_APPEND }),
    commit: n,
  }),
  appendResp: v.object({ type: v.literal('appendResp'), term, success: v.bool, matchHeight: n, hintHeight: v.optional(n), hintTerm: v.optional(term) }),
});

const endorsementP = v.object({
  height: v.int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  hash: v.hex32,
  sig: v.str({ min: 128, max: 128, pattern: /^[0-9a-f]+$/ }),
});

export const raftBodyP = v.object({ msg: messageP });

/**
 * Each replica signs the hash of every block it appends and tells every other validator, so
 * whichever SP leads next can put a majority of signatures into a commit certificate.
 */
export const endorseBodyP = v.object({ endorsements: v.array(endorsementP, { min: 1, max: MAX_ENTRIES_PER_APPEND }) });
export type EndorsementWire = v.Parsed<typeof endorsementP>;
