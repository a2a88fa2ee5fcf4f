/**
 * One writer per data folder. Two processes on one SP's LMDB (two clusters started on one data
 * dir, or the orphan of a killed supervisor beside its successor) each append their own blocks to
 * the same chain and corrupt every replica; LMDB itself lets several processes write in turn.
 * The lock is a file holding its owner's pid: one whose process is gone is stale and taken over.
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { CairnError } from './errors.js';

/** Takes the lock at `path` for `what` (e.g. "storage provider sp1"); returns its release. */
export function takeLock(path: string, what: string): () => void {
  mkdirSync(dirname(path), { recursive: true });
  for (let tries = 0; tries < 2; tries++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return () => {
        try {
          if (ownerOf(path) === process.pid) unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = ownerOf(path);
      // This process's own lock is a thread-isolated actor restarted after a crash.
      if (owner !== null && owner !== process.pid && alive(owner)) {
        throw new CairnError('BAD_CONFIG', `${dirname(path)} is in use by process ${owner} (${what} of a cluster already running); stop that one first, or delete ${path} if process ${owner} is not cairn`);
      }
      try {
        unlinkSync(path);
      } catch {
        // Someone else took it over meanwhile: the next try finds out.
      }
    }
  }
  throw new CairnError('BAD_CONFIG', `could not lock ${path} for ${what}: another process keeps taking it`);
}

function ownerOf(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // someone else's process, but running
  }
}
