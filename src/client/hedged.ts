/**
 * Hedged requests (Dean and Barroso, "The Tail at Scale"): ask `need` candidates at once, the next
 * one whenever one gives up, and one more every `hedgeMs` while fewer than `need` have answered,
 * so a stalled SP costs a fraction of a second instead of a timeout. Shard reads and chain reads
 * both go through here.
 */

export interface HedgeOptions<R> {
  /** Answers to wait for. */
  need: number;
  /** The pause after which one more candidate is asked; null never asks early (writes). */
  hedgeMs: number | null;
  /** Called for each candidate asked early. */
  onHedge: () => void;
  /** An answer that came after the outcome was settled (a hedge that lost the race), e.g. to free it. */
  onLate?: (answer: R) => void;
}

export interface Hedged<C, R> {
  /** In the order they came; fewer than `need` when every candidate was tried. */
  answers: { candidate: C; answer: R }[];
  /** How many candidates were asked. */
  asked: number;
}

/**
 * `ask` resolves with an answer, with undefined to give up on that candidate (the next is asked),
 * or rejects to end everything with that error at once.
 */
export function hedged<C, R>(candidates: readonly C[], ask: (candidate: C) => Promise<R | undefined>, opts: HedgeOptions<R>): Promise<Hedged<C, R>> {
  return new Promise((resolve, reject) => {
    const answers: { candidate: C; answer: R }[] = [];
    let asked = 0;
    let active = 0;
    let done = false;
    const end = (settle: () => void) => {
      if (done) return;
      done = true;
      clearInterval(hedge);
      settle();
    };
    const finish = () => end(() => resolve({ answers, asked }));
    const launch = (): boolean => {
      if (done || asked >= candidates.length) return false;
      const candidate = candidates[asked++]!;
      active += 1;
      ask(candidate).then(
        (answer) => {
          active -= 1;
          if (done) {
            if (answer !== undefined) opts.onLate?.(answer);
            return;
          }
          if (answer !== undefined) {
            answers.push({ candidate, answer });
            if (answers.length >= opts.need) return finish();
          } else if (launch()) return;
          if (active === 0) finish();
        },
        (err: unknown) => {
          active -= 1;
          end(() => reject(err));
        },
      );
      return true;
    };
    const hedge =
      opts.hedgeMs === null
        ? undefined
        : setInterval(() => {
            if (launch()) opts.onHedge();
          }, opts.hedgeMs);
    for (let j = 0; j < opts.need; j++) launch();
    if (active === 0) finish();
  });
}
