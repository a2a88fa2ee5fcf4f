/**
 * Summaries of V8 CPU profiles (`node --cpu-prof`, or cpu-prof-preload.ts): self time per function,
 * per process and thread, with idle time and the profiler's own work left out, so a report can say
 * where the CPU went.
 *
 *   node dist/test/bench/profile.js DIR   # summarise every .cpuprofile in DIR
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  name: string;
  file: string;
  totalMs: number;
  top: { name: string; ms: number; percent: number }[];
}

function frameName(cf: CpuProfile['nodes'][number]['callFrame']): string {
  const fn = cf.functionName || '(anonymous)';
  if (!cf.url) return fn;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(cf.url);
  const where = m ? m[1]! : basename(cf.url.replace(/^file:\/\//, ''));
  return `${fn} (${where}${m ? '' : `:${cf.lineNumber + 1}`})`;
}

function selfTimes(file: string, into: Map<string, number>): number {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  let total = 0;
  prof.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const dt = (prof.timeDeltas[i] ?? 0) / 1000;
    const n = frameName(node.callFrame);
    // Not the program's work: idle, a Piscina worker blocked waiting for a task (through the
    // preload's wrapper), and the inspector serving the profiler itself (url-less `dispatch`).
    if (n === '(idle)' || n === 'dispatch' || node.callFrame.url.includes('cpu-prof-preload')) return;
    total += dt;
    into.set(n, (into.get(n) ?? 0) + dt);
  });
  return total;
}

/** Self time by function over one or more profiles (slices of one thread). */
export function summarise(files: string[], name: string, topN = 10): ProfileSummary {
  const self = new Map<string, number>();
  let total = 0;
  for (const f of files) total += selfTimes(f, self);
  const top = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([n, ms]) => ({ name: n, ms: Math.round(ms), percent: total > 0 ? Math.round((ms / total) * 1000) / 10 : 0 }));
  return { name, file: basename(files[0] ?? ''), totalMs: Math.round(total), top };
}

/**
 * Summaries of every profile in dir, one per process and thread (slices merged); files are named
 * CPU.<a>.<b>.<pid>.<thread>.<seq>.cpuprofile (`node --cpu-prof` and cpu-prof-preload alike).
 * `label` names a thread from its pid and thread id.
 */
export function summariseDir(dir: string, label: (pid: number, tid: number) => string, topN = 10, notBeforeMs = 0): ProfileSummary[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  const groups = new Map<string, { pid: number; tid: number; files: string[] }>();
  for (const f of files) {
    const parts = f.split('.');
    // Slices stamped before notBeforeMs (epoch ms in the second field of preload slices) are skipped.
    if (parts[1] === 'bench' && Number(parts[2]) < notBeforeMs) continue;
    const pid = Number(parts[3]);
    const tid = Number(parts[4]);
    const key = `${pid}.${tid}`;
    if (!groups.has(key)) groups.set(key, { pid, tid, files: [] });
    groups.get(key)!.files.push(join(dir, f));
  }
  return [...groups.values()]
    .map((g) => summarise(g.files, label(g.pid, g.tid), topN))
    .filter((s) => s.totalMs > 50)
    .sort((a, b) => b.totalMs - a.totalMs);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const s of summariseDir(process.argv[2] ?? '.', (pid, tid) => `pid ${pid} thread ${tid}`, 15)) {
    console.log(`\n${s.name} (${s.file}): ${s.totalMs} ms busy`);
    for (const t of s.top) console.log(`  ${String(t.percent).padStart(5)} %  ${String(t.ms).padStart(7)} ms  ${t.name}`);
  }
}
