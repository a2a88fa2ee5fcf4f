/**
 * V8 heap settings for cairn's actors. With V8's default, a heap of ~16 MB gets an old-generation
 * limit only a little above its live size, so the steady stream of short-lived request objects
 * (promises, timers, frames) set off a full mark-compact every ~100 ms under load: measured, GC
 * was up to a third of the web client's CPU. Starting the old generation at 64 MB removes almost
 * all of those collections, for at most 64 MB more garbage held per isolate before it is collected.
 * Measured back to back (1 GiB through curl, process isolation): upload 84–88 → 106–114 MB/s,
 * download 164–175 → 224–260 MB/s, client CPU per GiB 12 → 9 s up and 6.9 → 5.1 s down.
 */
import v8 from 'node:v8';

/** `--expose-gc` lets a quiet actor collect its garbage at once (src/idle.ts) instead of holding it idle. */
export const ACTOR_HEAP_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--expose-gc'];

/**
 * Applies the flags to every isolate this process creates from now on: thread-hosted actors and
 * the codec pool's workers. A process's own main isolate takes them only from its command line,
 * which is why the process host starts actors with ACTOR_HEAP_FLAGS.
 */
export function applyHeapFlagsToNewIsolates(): void {
  for (const flag of ACTOR_HEAP_FLAGS) v8.setFlagsFromString(flag);
}
