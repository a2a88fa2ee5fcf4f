/**
 * Giving memory back once a process goes quiet. A transfer leaves behind what an idle cluster does
 * not need: recycled buffers in pools, garbage that V8 collects only when more is allocated, and
 * freed blocks that glibc keeps in its arenas (measured after 320 MiB up and down in one process:
 * ~160 MiB free inside the arenas, and RSS fell from 512 to 338 MiB with malloc_trim alone).
 *
 * Every thread that holds releasable memory watches the process's CPU time; when a busy stretch is
 * followed by QUIET_MS of next to nothing, it drops what its registered holders keep and runs a
 * full GC (actors' isolates get `--expose-gc`, see heap-flags.ts). The main thread then also asks
 * glibc to return free pages (malloc_trim), a little later, so that the other threads' frees come
 * first. Nothing is released while work goes on: a busy process would fault the pages straight
 * back in, which costs more on this kind of VM than keeping them.
 */
import { createRequire } from 'node:module';
import { isMainThread, MessageChannel } from 'node:worker_threads';

/** Sampling period of the process's CPU time. */
const CHECK_MS = 500;
/**
 * CPU time per wall time, in one core, below which a sample counts as quiet: above an idle
 * cluster's heartbeats, probes and the other threads' own releases (~6 % of a core in one
 * process), far below any transfer (100-200 %).
 */
const QUIET_CPU = 0.25;
/** Quiet time after work before threads release what they hold. */
const QUIET_MS = 1_000;
/** Extra quiet time before the main thread trims the heap, after the other threads have freed. */
const TRIM_AFTER_MS = 1_000;

export interface IdleReleasable {
  /** Drops memory kept for speed; called on the holder's own thread, never during its work. */
  releaseIdle(): void;
}

interface Watch {
  holders: Set<WeakRef<IdleReleasable>>;
  trimHeap: boolean;
  timer: NodeJS.Timeout | null;
}

const watch: Watch = { holders: new Set(), trimHeap: false, timer: null };

/**
 * Registers a holder to be asked to release when the process goes quiet. Held weakly: a holder
 * that is otherwise gone is not kept alive by this.
 */
export function releaseWhenIdle(holder: IdleReleasable): void {
  watch.holders.add(new WeakRef(holder));
  start();
}

/**
 * Has this thread collect its garbage when the process goes quiet, though it holds no pool: a
 * codec worker's dead buffers are otherwise freed only at its next GC, which an idle worker never
 * reaches, so their memory would stay with the process.
 */
export function collectWhenIdle(): void {
  start();
}

/** Also have this (main) thread return glibc's free pages to the system when the process goes quiet. */
export function trimHeapWhenIdle(): void {
  if (!isMainThread) return;
  watch.trimHeap = true;
  start();
}

function start(): void {
  if (watch.timer) return;
  let last = cpuMs();
  let lastAt = performance.now();
  let quietSince: number | null = null;
  let released = true; // nothing to give back before the first busy stretch
  let trimmed = true;
  watch.timer = setInterval(() => {
    const now = performance.now();
    const cpu = cpuMs();
    const busy = (cpu - last) / Math.max(1, now - lastAt) > QUIET_CPU;
    last = cpu;
    lastAt = now;
    if (busy) {
      quietSince = null;
      released = false;
      trimmed = false;
      return;
    }
    quietSince ??= now;
    if (!released && now - quietSince >= QUIET_MS) {
      released = true;
      releaseHolders();
    }
    if (watch.trimHeap && !trimmed && now - quietSince >= QUIET_MS + TRIM_AFTER_MS) {
      trimmed = true;
      trimHeap();
    }
    // What releasing cost is not work: it must not count as a busy stretch that arms another.
    last = cpuMs();
    lastAt = performance.now();
  }, CHECK_MS);
  watch.timer.unref();
}

function releaseHolders(): void {
  for (const ref of watch.holders) {
    const holder = ref.deref();
    if (holder) holder.releaseIdle();
    else watch.holders.delete(ref);
  }
  // Garbage still holding buffers goes now, not whenever this isolate next allocates enough.
  (globalThis as { gc?: () => void }).gc?.();
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

let mallocTrim: ((pad: number) => number) | null | undefined;

/** glibc's malloc_trim through koffi (a foreign-function library); a no-op where either is missing. */
function trimHeap(): void {
  if (mallocTrim === undefined) mallocTrim = loadMallocTrim();
  mallocTrim?.(0);
}

function loadMallocTrim(): ((pad: number) => number) | null {
  const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  if (process.platform !== 'linux' || !glibc) return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as { load(name: string): { func(signature: string): (pad: number) => number } };
    return koffi.load('libc.so.6').func('int malloc_trim(size_t pad)');
  } catch {
    return null; // not fatal: the memory is free inside the process either way
  }
}
