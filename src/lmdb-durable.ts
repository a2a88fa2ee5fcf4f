/**
 * An asynchronous LMDB transaction that resolves only once it is on disk. lmdb-js (with
 * overlappingSync, its default on Linux) resolves a write when it is committed — visible, and kept
 * if the process dies — and flushes it to disk a moment later on its own write thread, with a
 * scheme of meta pages that keeps the file whole after a crash either way. A promise made to
 * another machine (a shard stored, a log entry acknowledged) must wait for the flush, or a power
 * cut could lose what was promised. Transactions queued in one event turn share a commit and a
 * flush (group commit), and none of it blocks the event loop.
 */
import type { RootDatabase } from 'lmdb';

export function writeDurably(root: RootDatabase, fn: () => void): Promise<void> {
  const committed = root.transaction(fn);
  // `flushed` covers every write queued before it is asked, this one included.
  const flushed = root.flushed;
  return Promise.all([committed, flushed]).then(() => undefined);
}
