/** Small formatting helpers for the pages and the JSON API: sizes, dates, hashes, chain transactions. */
import type { Block } from '../chain/block.js';
import { inlineSealed, type Tx } from '../chain/tx.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 0 B, 999 B, 1.0 KiB, 12.3 MiB, 512 GiB … (binary units, three significant figures at most). */
export function humanSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '–';
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u += 1;
  }
  if (u === 0) return `${n} B`;
  return `${n >= 100 ? Math.round(n) : n.toFixed(1)} ${UNITS[u]}`;
}

/**
 * The string with every lone UTF-16 surrogate replaced by U+FFFD: such a string (a name cut
 * inside a character, by an older client) cannot be percent-encoded or sent as UTF-8 faithfully.
 */
export function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** 12 h, 90 min, 3 s, 1500 ms: the largest unit that keeps the number whole. */
export function humanDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['min', 60_000], ['s', 1_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  }
  return `${ms} ms`;
}

/** "2026-11-25 04:43 UTC": short, unambiguous, the same on every client. */
export function humanDate(value: string | number): string {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return '–';
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function isoDate(value: string | number): string {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export function shortHash(hash: string | null | undefined, n = 12): string {
  if (!hash) return '–';
  return hash.length > n ? `${hash.slice(0, n)}…` : hash;
}

/** An error message as a sentence: capital first letter, final full stop. */
export function sentence(message: string): string {
  const m = message.trim();
  if (!m) return m;
  const first = m[0]!.toUpperCase() + m.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

export function percent(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const p = x * 100;
  return `${p < 10 && p > 0 ? p.toFixed(1) : Math.round(p)} %`;
}

export function thousands(n: number): string {
  return Number.isFinite(n) ? n.toLocaleString('en-US') : '–';
}

export interface TxSummary {
  type: string;
  signer: string;
  fileId: string | null;
  detail: string;
}

/** One line per transaction for the chain explorer: what it did, who signed it, which file. */
export function summarizeTx(tx: Tx): TxSummary {
  const b = tx.body;
  switch (b.type) {
    case 'user.register':
      return { type: b.type, signer: tx.signer, fileId: null, detail: `registers user ${b.username}` };
    case 'file.put':
      return {
        type: b.type,
        signer: tx.signer,
        fileId: b.file.id,
        detail:
          b.file.inline !== undefined
            ? `stores ${humanSize(b.file.size)} inline`
            : `stores ${humanSize(b.file.size)} in ${b.file.segments.length} segment${b.file.segments.length === 1 ? '' : 's'} (${b.file.k}+${b.file.m})`,
      };
    case 'file.delete':
      return { type: b.type, signer: tx.signer, fileId: b.fileId, detail: 'deletes the file' };
    case 'file.share':
      return { type: b.type, signer: tx.signer, fileId: b.fileId, detail: `shares it with ${b.to}` };
    case 'file.place':
      return { type: b.type, signer: tx.signer, fileId: b.fileId, detail: `re-places ${b.placements.length} shard${b.placements.length === 1 ? '' : 's'}` };
    default:
      return { type: (b as { type: string }).type, signer: tx.signer, fileId: null, detail: '' };
  }
}

/** A block as the JSON API shows it: a small file's inline bytes as hex, like every other binary field there. */
export function blockJson(block: Block): unknown {
  return {
    ...block,
    txs: block.txs.map((tx) => {
      const b = tx.body;
      if (b.type !== 'file.put' || b.file.inline === undefined) return tx;
      return { ...tx, body: { ...b, file: { ...b.file, inline: inlineSealed(b.file)!.toString('hex') } } };
    }),
  };
}
