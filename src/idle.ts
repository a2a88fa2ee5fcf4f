/**
 * Giving memory back once work stops. A transfer leaves behind what an idle cluster does not
 * need: recycled buffers in pools, garbage that V8 collects only when more is allocated, and
 * freed blocks that glibc keeps in its heaps (measured after 320 MiB up and down in one process:
 * ~160 MiB free inside them, and RSS fell from 512 to 338 MiB with malloc_trim alone).
 *
 * Every thread that holds releasable memory checks twice a second: a holder unused for RELEASE_MS
 * (a pool no transfer has touched for KEEP_WARM_MS) lets its memory go, and the thread then runs
 * a full GC (actors' isolates get `--expose-gc`, see heap-flags.ts). The main thread runs the
 * process's heap policy (src/glibc-heap.ts): glibc holds freed memory while the process works,
 * may trim again once the process is quiet — before the holders let go, so that their frees
 * shrink their heaps — and then gives every free page back. Nothing is released while work goes
 * on: a busy process would fault the pages straight back in, which costs more on this kind of VM
 * than keeping them.
 */
import { isMainThread, MessageChannel } from 'node:worker_threads';
import { holdFreedMemory, letFreedMemoryGo, trimHeap } from './glibc-heap.js';

/** How often each thread checks. */
const CHECK_MS = 500;
/**
 * How long memory stays in place after the last work: a person's next click within it finds the
 * pools, the heap's pages and the compiled code where they were. A download started 3 s after the
 * last one sent its first byte in 21.6–29.6 ms when memory went back after 1–2 s of quiet, in
 * 10.2–14.0 ms with it kept (6–12 ms for one right after another). jemalloc's default decay for
 * freed pages is the same 10 s; an idle cluster reaches its idle size this much later.
 */
export const KEEP_WARM_MS = 10_000;
/** Time without use after which a holder lets its memory go. */
const RELEASE_MS = KEEP_WARM_MS;
/**
 * CPU time per wall time, in one core, below which the process counts as quiet for the heap
 * policy, over a half second and on average over a quiet window (with its main thread's own pools
 * unused): above an idle cluster's heartbeats and probes (2-14 % of a core per half second for all
 * actors in one process).
 */
const QUIET_CPU = 0.25;
/**
 * Cores in one half second that are real work (a transfer), not a heartbeat's or a GC's blip: a
 * quiet window has none, so it starts when the work stopped (and after the pools it used let go).
 */
const WORK_CPU = 0.75;
/** Quiet time before glibc may trim again: just before the holders let go, so their frees shrink the heaps. */
const LOOSEN_MS = KEEP_WARM_MS - 500;
/** Quiet time before the free pages go back, after the holders have let go. */
const TRIM_MS = KEEP_WARM_MS + 1_000;
/** A process whose own pools were used this recently is working, whatever its CPU says. */
const BUSY_WINDOW_MS = 500;
/** Samples kept: enough to cover the longest quiet window. */
const MAX_SAMPLES = Math.ceil(TRIM_MS / CHECK_MS) + 2;

export interface IdleReleasable {
  /** performance.now() of the holder's last use. */
  lastUsed(): number;
  /** Drops memory kept for speed; called on the holder's own thread, never during its work. */
  releaseIdle(): void;
}

interface Watch {
  holders: Set<WeakRef<IdleReleasable>>;
  manageHeap: boolean;
  timer: NodeJS.Timeout | null;
}

const watch: Watch = { holders: new Set(), manageHeap: false, timer: null };

/**
 * Registers a holder to be asked to release once it has not been used for a while. Held weakly:
 * a holder that is otherwise gone is not kept alive by this.
 */
export function releaseWhenIdle(holder: IdleReleasable): void {
  watch.holders.add(new WeakRef(holder));
  start();
}

/**
 * Has this (main) thread run the process's heap policy: glibc holds freed memory while the process
 * works, and gives it back once the process is quiet.
 */
export function manageHeapWhenIdle(): void {
  if (!isMainThread) return;
  watch.manageHeap = true;
  holdFreedMemory();
  start();
}

function start(): void {
  if (watch.timer) return;
  /** The last use each holder had when it last let go: released again only after a newer use. */
  const releasedAfter = new WeakMap<IdleReleasable, number>();
  /** The process's CPU time at each check, newest last, as far back as the longest quiet window. */
  const samples: CpuSample[] = [];
  let uncounted = 0; // CPU the releases themselves used: not work
  let holding = watch.manageHeap;
  let trimmed = false; // start-up leaves garbage too: trimmed once the first quiet window passes
  watch.timer = setInterval(() => {
    const now = performance.now();
    const before = cpuMs();
    let working = false;
    let quietForTrim = false;
    if (watch.manageHeap) {
      samples.push({ at: now, cpu: before - uncounted });
      if (samples.length > MAX_SAMPLES) samples.shift();
      // A process whose own pools were used in the last moment is working, whatever its CPU says
      // (an SP serving a download dips below QUIET_CPU in some half seconds).
      working = cores(samples, samples.length - 2) > QUIET_CPU || usedWithin(BUSY_WINDOW_MS, now);
      // Work within the trim's window may have left memory to give back once it is quiet again;
      // a half second's blip in an otherwise quiet window leaves nothing new.
      quietForTrim = quietFor(samples, TRIM_MS, now);
      if (!quietForTrim) trimmed = false;
      if (working) {
        if (!holding) holdFreedMemory();
        holding = true;
      } else if (holding && quietFor(samples, LOOSEN_MS, now)) {
        holding = false;
        letFreedMemoryGo();
      }
    }
    let freed = false;
    for (const ref of watch.holders) {
      const holder = ref.deref();
      if (!holder) {
        watch.holders.delete(ref);
        continue;
      }
      const lastUsed = holder.lastUsed();
      if (releasedAfter.get(holder) !== lastUsed && now - lastUsed >= RELEASE_MS) {
        releasedAfter.set(holder, lastUsed);
        holder.releaseIdle();
        freed = true;
      }
    }
    // Garbage still holding buffers goes now, not whenever this isolate next allocates enough.
    if (freed) (globalThis as { gc?: () => void }).gc?.();
    if (quietForTrim && !trimmed && !working) {
      trimmed = true;
      trimHeap();
    }
    // What releasing cost is not work: it must not count as a busy stretch.
    uncounted += cpuMs() - before;
  }, CHECK_MS);
  watch.timer.unref();
}

/** A process's CPU time (ms) at a moment (performance.now()). */
export interface CpuSample {
  at: number;
  cpu: number;
}

/** Cores the process used on average between two samples. */
function rate(a: CpuSample, b: CpuSample): number {
  return (b.cpu - a.cpu) / Math.max(1, b.at - a.at);
}

/** Cores the process used on average from samples[from] to the newest sample (0 without two samples). */
function cores(samples: readonly CpuSample[], from: number): number {
  const first = samples[from];
  const newest = samples.at(-1)!;
  return !first || first === newest ? 0 : rate(first, newest);
}

/** Quiet for the last `ms`: none of this thread's pools used, and the process's CPU quiet (quietWindow). */
function quietFor(samples: CpuSample[], ms: number, now: number): boolean {
  return !usedWithin(ms, now) && quietWindow(samples, ms, now);
}

/**
 * Whether CPU samples (one per check, oldest first) show the last `ms` quiet: under QUIET_CPU
 * cores on average and no half second above WORK_CPU. An average, not every half second: over a
 * 10 s window some half second nearly always carries a heartbeat, a probe or a GC above
 * QUIET_CPU, and a rule per half second put the trim off for good in a thread-isolated cluster (no
 * trim within 26 s of a transfer in 3 of 3 runs). Without samples as old as the window, not quiet.
 */
export function quietWindow(samples: readonly CpuSample[], ms: number, now: number): boolean {
  // The newest sample at least `ms` old (within half a check, for timer jitter).
  let from = -1;
  for (let i = samples.length - 1; i >= 0; i--) {
    if (samples[i]!.at <= now - ms + CHECK_MS / 2) {
      from = i;
      break;
    }
  }
  if (from < 0 || cores(samples, from) > QUIET_CPU) return false;
  // ...and no half second of real work in it, so the window starts when the work stopped.
  for (let i = from + 1; i < samples.length; i++) if (rate(samples[i - 1]!, samples[i]!) > WORK_CPU) return false;
  return true;
}

function usedWithin(ms: number, now: number): boolean {
  for (const ref of watch.holders) {
    const holder = ref.deref();
    if (holder && now - holder.lastUsed() < ms) return true;
  }
  return false;
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage(); // the whole process, from any thread
  return (user + system) / 1000;
}

/**
 * Frees ArrayBuffers' memory at once, without waiting for a GC: moving a buffer into a message
 * for a closed port detaches it here, and the dropped message releases its backing store.
 */
export function freeBuffers(buffers: Iterable<ArrayBuffer>): void {
  const list = [...buffers].filter((b) => b.byteLength > 0);
  if (list.length === 0) return;
  const { port1, port2 } = new MessageChannel();
  port2.close();
  port1.postMessage(null, list);
  port1.close();
}
