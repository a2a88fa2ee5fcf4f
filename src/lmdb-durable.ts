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
import { CairnError } from './errors.js';

export function writeDurably(root: RootDatabase, fn: () => void): Promise<void> {
  guardCommitEchoes();
  const committed = root.transaction(fn);
  // `flushed` covers every write queued before it is asked, this one included.
  const flushed = root.flushed;
  return Promise.all([committed, flushed]).then(
    () => undefined,
    (err: unknown) => {
      // lmdb-js rejects a failed commit (disk full, I/O error) with a generic error whose
      // `commitError` promise rejects with the cause; unheard, that one would end the process.
      const cause = (err as { commitError?: Promise<unknown> }).commitError;
      return (cause ?? Promise.reject(err)).then(
        () => Promise.reject(storageFailed(err)),
        (why: unknown) => Promise.reject(storageFailed(why)),
      );
    },
  );
}

function storageFailed(err: unknown): CairnError {
  return new CairnError('STORAGE_FAILED', `the disk refused a write (full or failing): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

let guarded = false;

/**
 * lmdb-js also rejects a promise of its own, out of reach, for every commit that fails; the
 * writes' callers hear of the failure, so that echo must not end the process (Node ends it on
 * any unhandled rejection). Anything else unhandled still does: it is our bug.
 */
function guardCommitEchoes(): void {
  if (guarded) return;
  guarded = true;
  process.on('unhandledRejection', (reason) => {
    if (reason instanceof Error && 'commitError' in reason) return;
    throw reason;
  });
}
