/**
 * glibc's allocator, tuned and trimmed through koffi (a foreign-function library: Node offers no
 * way to call mallopt or malloc_trim, and an addon of our own would need a compiler on every
 * machine). Everything here is a no-op where glibc or koffi is missing.
 *
 * By default glibc maps every block of 128 KiB or more on its own and gives memory freed at the
 * top of a heap straight back. A transfer allocates such blocks all the time (segment and frame
 * buffers, LMDB's dirty pages, every 128 KiB of AES output from node:crypto), so memory went back
 * and forth to the kernel, and on this VM every fresh page costs (~0.5–2 s of CPU per GB). While
 * the process works, freed memory now stays in its heaps for the next block; once it is quiet,
 * src/idle.ts lets glibc trim again and hands every free page back (malloc_trim).
 */
import { createRequire } from 'node:module';

// mallopt parameters (malloc.h).
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

/** Blocks below this come from the heaps (glibc's maximum, 32 MiB on 64-bit): no mmap per buffer. */
const MMAP_THRESHOLD = 32 * 1024 * 1024;
/**
 * Free memory a heap keeps at its top while the process works. malloc_trim does not shrink the
 * top of a thread's heap, only free() does, so when quiet the threshold goes back to glibc's
 * default before the threads let their buffers go.
 */
const BUSY_TRIM_THRESHOLD = 32 * 1024 * 1024;
const QUIET_TRIM_THRESHOLD = 128 * 1024;

interface Glibc {
  mallopt(param: number, value: number): number;
  malloc_trim(pad: number): number;
}

let glibc: Glibc | null | undefined;

function load(): Glibc | null {
  if (glibc !== undefined) return glibc;
  glibc = null;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  if (process.platform !== 'linux' || !report?.header?.glibcVersionRuntime) return glibc;
  try {
    type Koffi = { load(name: string): { func(signature: string): (...args: number[]) => number } };
    const libc = (createRequire(import.meta.url)('koffi') as Koffi).load('libc.so.6');
    const mallopt = libc.func('int mallopt(int param, int value)');
    const trim = libc.func('int malloc_trim(size_t pad)');
    glibc = { mallopt: (param, value) => mallopt(param, value), malloc_trim: (pad) => trim(pad) };
  } catch {
    // Not fatal: the allocator keeps its defaults, and memory stays free inside the process.
  }
  return glibc;
}

/** Keeps freed memory in the process while it works. */
export function holdFreedMemory(): void {
  const libc = load();
  if (!libc) return;
  libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
  libc.mallopt(M_TRIM_THRESHOLD, BUSY_TRIM_THRESHOLD);
}

/** Lets free() give memory at a heap's top back again, as glibc does by default. */
export function letFreedMemoryGo(): void {
  load()?.mallopt(M_TRIM_THRESHOLD, QUIET_TRIM_THRESHOLD);
}

/** Returns the free pages of every heap to the system. */
export function trimHeap(): void {
  load()?.malloc_trim(0);
}
