/**
 * The human report of a benchmark run: markdown tables, the targets of the performance issue with
 * the measured figure and the in-run limit beside each, ASCII charts, and SVG line charts
 * (throughput against file size, worker-pool size, segment size, erasure code).
 */
import { NEW_SHARD_HASH } from '../../src/crypto/shard-hash.js';
import { fitCost } from './cost-fit.js';
import type { BenchResult } from './run.js';

// ---------------------------------------------------------------------------------------------
// SVG

export interface Series {
  name: string;
  color: string;
  points: [x: number, y: number][];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

/** A line chart; x is log2-scaled when logX, with tick labels from xLabel. */
export function lineChart(opts: {
  title: string;
  xTitle: string;
  yTitle: string;
  series: Series[];
  logX?: boolean;
  xLabel?: (x: number) => string;
  xTicks?: number[];
  /** Dashed horizontal reference lines, e.g. the in-run limits. */
  hlines?: { name: string; color: string; y: number }[];
}): string {
  const W = 640;
  const H = 360;
  const L = 64;
  const R = 150;
  const T = 40;
  const B = 50;
  const all = opts.series.flatMap((s) => s.points);
  const fx = (x: number) => (opts.logX ? Math.log2(x) : x);
  const xs = all.map(([x]) => fx(x));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const yMax = niceMax(Math.max(1, ...all.map(([, y]) => y), ...(opts.hlines ?? []).map((h) => h.y)));
  const px = (x: number) => L + (xMax === xMin ? (W - L - R) / 2 : ((fx(x) - xMin) / (xMax - xMin)) * (W - L - R));
  const py = (y: number) => T + (1 - y / yMax) * (H - T - B);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(opts.title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const y = (yMax * i) / 5;
    parts.push(`<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${Math.round(y)}</text>`);
  }
  const ticks = opts.xTicks ?? [...new Set(all.map(([x]) => x))].sort((a, b) => a - b);
  for (const x of ticks) {
    parts.push(`<line x1="${px(x)}" y1="${H - B}" x2="${px(x)}" y2="${H - B + 5}" stroke="#333"/>`);
    parts.push(`<text x="${px(x)}" y="${H - B + 18}" text-anchor="middle">${esc(opts.xLabel ? opts.xLabel(x) : String(x))}</text>`);
  }
  parts.push(`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/>`);
  parts.push(`<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(opts.xTitle)}</text>`);
  parts.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yTitle)}</text>`);
  const nSeries = opts.series.length;
  (opts.hlines ?? []).forEach((h, i) => {
    parts.push(`<line x1="${L}" y1="${py(h.y).toFixed(1)}" x2="${W - R}" y2="${py(h.y).toFixed(1)}" stroke="${h.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    const ly = T + 10 + (nSeries + i) * 18;
    parts.push(`<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 32}" y2="${ly}" stroke="${h.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${W - R + 38}" y="${ly + 4}">${esc(`${h.name} ${Math.round(h.y)}`)}</text>`);
  });
  opts.series.forEach((s, i) => {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of pts) {
      parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(`${s.name}: ${y}`)}</title></circle>`);
      parts.push(`<text x="${px(x).toFixed(1)}" y="${(py(y) - 7).toFixed(1)}" text-anchor="middle" font-size="10" fill="${s.color}">${y < 10 ? y.toFixed(1) : Math.round(y)}</text>`);
    }
    const ly = T + 10 + i * 18;
    parts.push(`<line x1="${W - R + 12}" y1="${ly}" x2="${W - R + 32}" y2="${ly}" stroke="${s.color}" stroke-width="2"/>`);
    parts.push(`<text x="${W - R + 38}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// ASCII

/** Horizontal bars, one row per label and series. */
export function asciiBars(title: string, unit: string, rows: { label: string; values: [name: string, value: number][] }[]): string {
  const max = Math.max(1, ...rows.flatMap((r) => r.values.map(([, v]) => v)));
  const width = 40;
  const labelW = Math.max(...rows.map((r) => r.label.length), 4);
  const nameW = Math.max(...rows.flatMap((r) => r.values.map(([n]) => n.length)), 2);
  const lines = [title];
  for (const r of rows) {
    r.values.forEach(([name, v], i) => {
      const bar = '█'.repeat(Math.round((v / max) * width));
      lines.push(`${(i === 0 ? r.label : '').padStart(labelW)} ${name.padEnd(nameW)} ${bar} ${v} ${unit}`);
    });
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Charts of a result

export const COLORS = { up: '#1f77b4', down: '#d62728', floorUp: '#9ecae1', floorDown: '#fcbba1' };

const sizeLabel = (mib: number) => (mib >= 1024 ? `${mib / 1024} GiB` : mib >= 1 ? `${mib} MiB` : `${Math.round(mib * 1024)} KiB`);

export function charts(r: BenchResult): Record<string, string> {
  const out: Record<string, string> = {};
  const km = `${r.config.k}+${r.config.m}`;
  const limits = [
    { name: 'up limit', color: COLORS.floorUp, y: r.limits.floors.upload[km]?.limitMBps ?? 0 },
    { name: 'down limit', color: COLORS.floorDown, y: r.limits.floors.download[km]?.limitMBps ?? 0 },
  ];
  // Throughput against file size: the large files, plus 4 KiB files at concurrency 8 in MB/s.
  const up: [number, number][] = r.largeFiles.map((f) => [f.sizeMiB, f.upload.MBps]);
  const down: [number, number][] = r.largeFiles.map((f) => [f.sizeMiB, f.download.MBps]);
  const small = r.smallFiles.find((s) => s.concurrency === 8) ?? r.smallFiles[0];
  if (small) {
    const mib = small.fileBytes / 1024 / 1024;
    up.push([mib, Math.round(((small.uploadsPerSec * small.fileBytes) / 1e6) * 100) / 100]);
    down.push([mib, Math.round(((small.downloadsPerSec * small.fileBytes) / 1e6) * 100) / 100]);
  }
  if (up.length > 0) {
    out['throughput-vs-size.svg'] = lineChart({
      title: 'Throughput against file size (client1, HTTP API)',
      xTitle: `file size (log scale; ${small ? `${small.fileBytes / 1024} KiB at concurrency ${small.concurrency}` : ''})`,
      yTitle: 'MB/s',
      logX: true,
      xLabel: sizeLabel,
      hlines: limits,
      series: [
        { name: 'upload', color: COLORS.up, points: up },
        { name: 'download', color: COLORS.down, points: down },
      ],
    });
  }
  const ok = (pts: SweepPoint[]) => pts.filter((p) => !p.error);
  const sw = r.sweeps && { ...r.sweeps, poolSize: ok(r.sweeps.poolSize), segmentSize: ok(r.sweeps.segmentSize), erasure: ok(r.sweeps.erasure) };
  if (sw?.poolSize.length) {
    out['throughput-vs-pool.svg'] = lineChart({
      title: `Throughput against worker-pool size (${sw.fileMiB} MiB file)`,
      xTitle: 'worker threads per web client (min = max)',
      yTitle: 'MB/s',
      hlines: limits,
      series: [
        { name: 'upload', color: COLORS.up, points: sw.poolSize.map((p) => [p.value, p.uploadMBps]) },
        { name: 'download', color: COLORS.down, points: sw.poolSize.map((p) => [p.value, p.downloadMBps]) },
      ],
    });
  }
  if (sw?.segmentSize.length) {
    out['throughput-vs-segment.svg'] = lineChart({
      title: `Throughput against segment size (${sw.fileMiB} MiB file)`,
      xTitle: 'segment size (log scale)',
      yTitle: 'MB/s',
      hlines: limits,
      logX: true,
      xLabel: sizeLabel,
      series: [
        { name: 'upload', color: COLORS.up, points: sw.segmentSize.map((p) => [p.value, p.uploadMBps]) },
        { name: 'download', color: COLORS.down, points: sw.segmentSize.map((p) => [p.value, p.downloadMBps]) },
      ],
    });
  }
  if (sw?.erasure.length) {
    out['throughput-vs-erasure.svg'] = lineChart({
      title: `Throughput against k+m (${sw.fileMiB} MiB file)`,
      xTitle: 'k (with m = k/2 and k+m providers)',
      yTitle: 'MB/s',
      xLabel: (k) => `${k}+${k / 2}`,
      series: [
        { name: 'upload', color: COLORS.up, points: sw.erasure.map((p) => [p.k, p.uploadMBps]) },
        { name: 'download', color: COLORS.down, points: sw.erasure.map((p) => [p.k, p.downloadMBps]) },
      ],
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Markdown

function table(head: string[], rows: (string | number)[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const pct = (a: number, b: number) => (b > 0 ? `${Math.round((a / b) * 100)} %` : '–');

export function markdown(r: BenchResult, svgPrefix: string, svgs: string[]): string {
  const L = r.limits;
  const f = L.floors;
  const out: string[] = [];
  out.push(`# cairn benchmark — ${r.mode} run, ${r.startedAt}`);
  out.push('');
  out.push(
    `${r.machine.cpus} × ${r.machine.cpuModel}; Node ${r.machine.node}; load average at start ${r.machine.loadAverageStart.join(' / ')}. ` +
      `Took ${Math.round(r.durationSeconds)} s. MB/s = 10^6 bytes per second. Cluster: 3 SPs + 2 web clients, \`--isolation process\`, ` +
      `defaults otherwise (k+m ${r.config.k}+${r.config.m}, segment ${r.config.segmentMiB} MiB, pool max ${r.config.poolMaxThreads}), all through client1's HTTP API.`,
  );
  out.push('');
  out.push('## Targets (issue "Performance")');
  out.push('');
  out.push(table(['what', 'target', 'measured', 'in-run limit', 'achieved/limit', 'met'], r.targets.map((t) => [t.what, t.target, t.measured, t.limit, t.ratio, t.met ? 'yes' : '**no**'])));
  out.push('');
  out.push('## Limits of the machine in this run (one thread, node)');
  out.push('');
  out.push(
    table(
      ['what', 'MB/s'],
      [
        ['AES-256-GCM seal, node:crypto, 1 MiB', L.aes256GcmMBps],
        ['SHA-256, node:crypto, 1 MiB', L.sha256MBps],
        [`shard hash (${NEW_SHARD_HASH}), 1 MiB`, L.shardHashMBps],
        ['RS encode 2+1 / 4+2 / 8+4 / 10+4 (our codec, 4 MiB)', `${L.codec.rsEncode2p1} / ${L.codec.rsEncode4p2} / ${L.codec.rsEncode8p4} / ${L.codec.rsEncode10p4}`],
        ['RS rebuild one data shard 2+1 / 4+2 / 10+4', `${L.codec.rsRebuild2p1} / ${L.codec.rsRebuild4p2} / ${L.codec.rsRebuild10p4}`],
        ['segment encode 2+1 (seal+encode+hash) / decode (hash+open)', `${L.codec.segmentEncode2p1} / ${L.codec.segmentDecode2p1}`],
        ['mailbox TCP, 1 MiB requests up / down; small req/s', `${L.mailbox.tcp.uploadMBps} / ${L.mailbox.tcp.downloadMBps}; ${L.mailbox.tcp.smallRequestsPerSec}`],
        ['mailbox TLS-PSK, 1 MiB requests up (their payloads on the lane) / down; small req/s', `${L.mailbox.tlsPsk.uploadMBps} / ${L.mailbox.tlsPsk.downloadMBps}; ${L.mailbox.tlsPsk.smallRequestsPerSec}`],
        ['LMDB 1 MiB values: write, a flushed commit each / 16 per commit; read (get)', `${L.lmdb.writeSyncMBps} / ${L.lmdb.writeBatchedMBps}; ${L.lmdb.readMBps}`],
        ['LMDB 1 MiB values written per CPU-second (all threads, kernel included: new page-cache pages)', `${L.lmdb.writeCpuMBps}`],
        ['LMDB 4 KiB writes made durable one after another, per second (a consensus step that must reach the disk)', `${L.lmdb.durableCommitsPerSec}`],
      ],
    ),
  );
  out.push('');
  out.push(`Pipeline floors on ${L.cores} cores (see test/bench/limits.ts for the stages):`);
  out.push('');
  out.push(
    table(
      ['pipeline', 'CPU-s per GB at the floor', 'compute only MB/s', '+ mailbox MB/s', 'disk MB/s', 'limit MB/s'],
      [
        ...Object.entries(f.upload).map(([km, x]) => [`upload ${km}`, x.cpuSecondsPerGB, x.computeMBps, x.withTransportMBps, x.diskMBps ?? '–', x.limitMBps]),
        ['download (any k+m, shards intact)', f.download['2+1']!.cpuSecondsPerGB, f.download['2+1']!.computeMBps, f.download['2+1']!.withTransportMBps, '–', f.download['2+1']!.limitMBps],
      ],
    ),
  );
  out.push('');
  out.push('## One large file (upload, then download checked byte for byte)');
  out.push('');
  const upLimit = f.upload[`${r.config.k}+${r.config.m}`]?.limitMBps ?? 0;
  const downLimit = f.download['2+1']!.limitMBps;
  out.push(
    table(
      ['size', 'up MB/s', 'up/limit', 'down MB/s', 'down/limit', 'client RSS peak up / down MiB', 'client RSS growth up / down MiB', 'cluster RSS peak MiB', 'CPU-s/GiB up (client+SPs)', 'CPU-s/GiB down', 'first byte ms'],
      r.largeFiles.map((x) => [
        `${x.sizeMiB} MiB`,
        x.upload.MBps,
        pct(x.upload.MBps, upLimit),
        x.download.MBps,
        pct(x.download.MBps, downLimit),
        `${x.upload.rss.clientPeakMiB} / ${x.download.rss.clientPeakMiB}`,
        `${x.upload.rss.clientGrowthMiB} / ${x.download.rss.clientGrowthMiB}`,
        Math.max(x.upload.rss.clusterPeakMiB, x.download.rss.clusterPeakMiB),
        `${x.upload.clusterCpuSecondsPerGiB} (${x.upload.cpu.clientSeconds}+${x.upload.cpu.providersSeconds} s)`,
        `${x.download.clusterCpuSecondsPerGiB} (${x.download.cpu.clientSeconds}+${x.download.cpu.providersSeconds} s)`,
        x.download.firstByteMs,
      ]),
    ),
  );
  out.push('');
  if (r.timeToFirstByte) {
    const t = r.timeToFirstByte;
    out.push(`Time to first byte of a ${t.sizeMiB} MiB file over ${t.probes} probes: median ${t.firstByteMsMedian} ms (min ${t.firstByteMsMin}, max ${t.firstByteMsMax}); headers ${t.headersMsMedian} ms.`);
    out.push('');
  }
  const c = r.concurrentUploads;
  out.push(`## ${c.requests} concurrent ${c.sizeMiB} MiB uploads`);
  out.push('');
  out.push(
    table(
      ['aggregate MB/s', 'vs limit', 'fastest request', 'slowest request', 'errors', 'client RSS peak MiB', 'cores busy'],
      [[c.aggregateMBps, pct(c.aggregateMBps, upLimit), `${c.fastestSeconds} s (${c.fastestMBps} MB/s)`, `${c.slowestSeconds} s (${c.slowestMBps} MB/s)`, c.errors, c.rss.clientPeakMiB, c.cpu.coresBusy]],
    ),
  );
  out.push('');
  out.push(`## Small files (${r.smallFiles[0]?.fileBytes ?? 4096} B each; one file per request)`);
  out.push('');
  out.push(
    table(
      ['concurrency', 'uploads/s', 'upload p50 / p99 ms', 'cluster CPU ms per upload (net of idle)', 'uploads per block', 'downloads/s', 'download p50 / p99 ms', 'files up / down', 'errors up / down', 'client RSS peak MiB'],
      r.smallFiles.map((s) => [s.concurrency, s.uploadsPerSec, `${s.uploadP50Ms} / ${s.uploadP99Ms}`, s.uploadCpuMsPerUpload, s.txPerBlock, s.downloadsPerSec, `${s.downloadP50Ms} / ${s.downloadP99Ms}`, `${s.uploads} / ${s.downloads}`, `${s.uploadErrors} / ${s.downloadErrors}`, s.clientPeakRssMiB]),
    ),
  );
  const cost = fitCost(r.smallFiles.map((s) => ({ cpuMsPerUpload: s.uploadCpuMsPerUpload, txPerBlock: s.txPerBlock })));
  if (cost) {
    // The model is a straight line; how far each level lies off it says how much to trust the split.
    const fit = r.smallFiles.filter((s) => s.txPerBlock >= 1).map((s) => `${Math.round((cost.perTxMs + cost.perBlockMs / s.txPerBlock) * 100) / 100} / ${s.uploadCpuMsPerUpload} at ${s.concurrency}`);
    out.push('');
    out.push(
      `Cluster CPU per upload (net of the idle cluster's own, ${r.smallFiles.map((s) => s.idleCores).join(' / ')} cores before each level), fitted over the concurrencies above as per-transaction + per-block / uploads per block: ${cost.perTxMs} ms per transaction and ${cost.perBlockMs} ms per block; ` +
        `the fit against the measure, ms per upload: ${fit.join(', ')}.`,
    );
  }
  const smallErr = r.smallFiles.find((s) => s.firstError);
  if (smallErr) out.push(`\nFirst error: ${smallErr.firstError}`);
  out.push('');
  out.push('## Chain finality');
  out.push('');
  out.push(`${r.finality.method}. Leader: ${r.finality.leader}.`);
  out.push('');
  out.push(
    table(
      ['submitters', 'tx/s final', 'p50 ms', 'p99 ms', 'max ms', 'final / submitted', 'rejected', 'errors', 'blocks', 'tx per block'],
      r.finality.levels.map((l) => [l.submitters, l.txPerSec, l.p50Ms, l.p99Ms, l.maxMs, `${l.final} / ${l.submitted}`, l.rejected, l.errors, l.blocks, l.txPerBlock]),
    ),
  );
  out.push('');
  out.push('## Memory');
  out.push('');
  const rssRow = (name: string, s: BenchResult['idleRss']['fresh']) => [name, s.totalMiB, s.anonMiB, s.supervisorMiB, s.providersMiB, s.clientsMiB, Object.entries(s.perProcessMiB).map(([k, v]) => `${k} ${v}`).join(', ')];
  out.push(
    table(
      ['idle cluster', 'total MiB', 'without file pages (RssAnon)', 'supervisor', 'SPs', 'clients', 'per process'],
      [
        rssRow('thread isolation (default), after start', r.idleRssThreads.fresh),
        rssRow(`thread isolation, after ${r.idleRssThreads.transferMiB} MiB up and down`, r.idleRssThreads.afterTransfer),
        rssRow('process isolation, after start', r.idleRss.fresh),
        rssRow('process isolation, after the scenarios', r.idleRss.after),
      ],
    ),
  );
  out.push('');
  out.push('In thread isolation every actor is a thread of the supervisor process, so its RSS is the whole cluster. In process isolation each actor is a node process of its own (~80 MiB of runtime each). RSS also counts the LMDB data pages an SP has mapped and touched; RssAnon leaves those out (the kernel can drop them at any time).');
  out.push('');
  if (r.sweeps) {
    const sw = r.sweeps;
    out.push(`## Sweeps (${sw.fileMiB} MiB file, a fresh cluster per value, 1 web client; median of ${sw.runs} run${sw.runs === 1 ? '' : 's'}, all runs in brackets)`);
    out.push('');
    const sweepRows = (rows: SweepPoint[], label: (p: SweepPoint) => string) =>
      rows.map((p) => [
        label(p),
        `${p.uploadMBps} (${p.uploadRunsMBps.join(', ')})`,
        p.uploadLimitMBps ? pct(p.uploadMBps, p.uploadLimitMBps) : '–',
        `${p.downloadMBps} (${p.downloadRunsMBps.join(', ')})`,
        pct(p.downloadMBps, downLimit),
        p.clientPeakRssMiB,
        p.clusterIdleRssMiB,
        p.error ?? '',
      ]);
    const head = ['value', 'up MB/s', 'up/limit', 'down MB/s', 'down/limit', 'client RSS peak MiB', 'cluster idle RSS MiB', 'error'];
    out.push('Worker-pool size (`--pool-min-threads N --pool-max-threads N`):');
    out.push('');
    out.push(table(head, sweepRows(sw.poolSize, (p) => `${p.value} threads`)));
    out.push('');
    out.push('Segment size (`--segment-size`):');
    out.push('');
    out.push(table(head, sweepRows(sw.segmentSize, (p) => `${p.value} MiB`)));
    out.push('');
    out.push('Erasure code (`--providers k+m --k --m`):');
    out.push('');
    out.push(table(head, sweepRows(sw.erasure, (p) => `${p.k}+${p.m} on ${p.k + p.m} SPs`)));
    out.push('');
  }
  out.push('## Charts');
  out.push('');
  for (const name of svgs) out.push(`![${name}](${svgPrefix}${name})`);
  out.push('');
  out.push('```');
  out.push(
    asciiBars(
      'Throughput against file size (MB/s)',
      'MB/s',
      r.largeFiles.map((x) => ({ label: `${x.sizeMiB} MiB`, values: [['up', x.upload.MBps], ['down', x.download.MBps]] })),
    ),
  );
  if (r.sweeps?.poolSize.length) {
    out.push('');
    out.push(asciiBars('Throughput against worker-pool size (MB/s)', 'MB/s', r.sweeps.poolSize.filter((p) => !p.error).map((p) => ({ label: `${p.value} thr`, values: [['up', p.uploadMBps], ['down', p.downloadMBps]] }))));
  }
  if (r.sweeps?.segmentSize.length) {
    out.push('');
    out.push(asciiBars('Throughput against segment size (MB/s)', 'MB/s', r.sweeps.segmentSize.filter((p) => !p.error).map((p) => ({ label: `${p.value} MiB`, values: [['up', p.uploadMBps], ['down', p.downloadMBps]] }))));
  }
  out.push('```');
  out.push('');
  if (r.profile) {
    out.push('## Where the time went (CPU profiles of the largest transfer)');
    out.push('');
    out.push(r.profile.note);
    out.push('');
    for (const p of r.profile.processes) {
      out.push(`**${p.name}** — ${p.totalMs} ms sampled: ${p.top.map((t) => `${t.name} ${t.percent} %`).join(', ')}`);
      out.push('');
    }
  }
  return `${out.join('\n')}\n`;
}

export interface SweepPoint {
  value: number;
  k: number;
  m: number;
  /** Medians of the runs. */
  uploadMBps: number;
  downloadMBps: number;
  uploadRunsMBps: number[];
  downloadRunsMBps: number[];
  uploadLimitMBps: number;
  clientPeakRssMiB: number;
  clusterIdleRssMiB: number;
  error?: string;
}
