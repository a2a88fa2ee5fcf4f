/**
 * Where the CPU of small uploads goes: each costs its share of a block (consensus, signatures,
 * durable commits, messages between SPs) and work of its own (HTTP, sealing, signing, verifying,
 * state). Measured at several concurrencies, so at several transactions per block, the cluster's
 * CPU per upload is fitted as  cpuPerUpload = perTx + perBlock / txPerBlock  (least squares).
 */

export interface CostPoint {
  /** Cluster CPU (every process of the cluster, not the load generator) per upload, in ms. */
  cpuMsPerUpload: number;
  txPerBlock: number;
}

export interface CostFit {
  perBlockMs: number;
  perTxMs: number;
}

/** Null without two distinct block sizes to tell the two costs apart. */
export function fitCost(points: readonly CostPoint[]): CostFit | null {
  const usable = points.filter((p) => Number.isFinite(p.cpuMsPerUpload) && p.txPerBlock >= 1);
  const xs = usable.map((p) => 1 / p.txPerBlock);
  const ys = usable.map((p) => p.cpuMsPerUpload);
  const n = usable.length;
  if (n < 2) return null;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  const sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
  if (sxx < 1e-6) return null;
  const sxy = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0);
  const perBlockMs = sxy / sxx;
  const round = (v: number) => Math.round(v * 100) / 100;
  return { perBlockMs: round(perBlockMs), perTxMs: round(my - perBlockMs * mx) };
}
