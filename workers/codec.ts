/**
 * Piscina worker for the per-segment CPU work: pool.run(task, { name: 'encode' | 'decode', transferList }).
 * Tasks are built with makeEncodeTask / makeDecodeTask and results read with unwrapOutcome
 * (src/codec/segment-codec.ts). Result buffers are moved, never cloned.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import {
  type CodecOutcome,
  type DecodeResult,
  type DecodeTask,
  type EncodeResult,
  type EncodeTask,
  decodeInputFromTask,
  decodeSegment,
  encodeSegment,
  failure,
  ownsBuffer,
  toEncodeResult,
} from '../src/codec/segment-codec.js';
import { releaseWhenIdle } from '../src/idle.js';

/**
 * A worker holds no pool, but its dead AES and shard buffers are freed only at its next GC, which
 * an idle worker never reaches: collect once it has had no task for a while.
 */
const activity = { at: performance.now(), lastUsed: () => activity.at, releaseIdle: () => undefined };
releaseWhenIdle(activity);

/** Wraps a result so Piscina transfers `transfer` instead of cloning (move() alone only sees a top-level buffer). */
function moved<T>(value: CodecOutcome<T>, transfer: ArrayBuffer[]): ReturnType<typeof move> {
  return move({
    get [transferableSymbol]() {
      return transfer;
    },
    get [valueSymbol]() {
      return value;
    },
  });
}

export function encode(task: EncodeTask): ReturnType<typeof move> | CodecOutcome<EncodeResult> {
  activity.at = performance.now();
  try {
    const segment = encodeSegment(task);
    // The plaintext's buffer goes back too, so the client can refill it. Here it is always this
    // worker's alone (transferred or cloned), also when the plaintext fills only its start.
    const plain = task.plaintext;
    const spent = plain.buffer instanceof ArrayBuffer && plain.byteOffset === 0 && plain.buffer !== segment.buffer ? plain.buffer : undefined;
    return moved({ ok: true, value: toEncodeResult(segment, spent) }, spent ? [segment.buffer, spent] : [segment.buffer]);
  } catch (err) {
    return failure(err);
  }
}

export function decode(task: DecodeTask): ReturnType<typeof move> | CodecOutcome<DecodeResult> {
  activity.at = performance.now();
  try {
    const plaintext = decodeSegment(decodeInputFromTask(task));
    if (task.out !== undefined && plaintext.buffer === task.out) {
      return moved({ ok: true, value: { plaintext, spent: task.buffer } }, [task.out, task.buffer]);
    }
    // Transferring a view's buffer would move whatever else shares it; copy unless it is exclusively ours.
    const owned = ownsBuffer(plaintext) && plaintext.buffer !== task.buffer ? plaintext : new Uint8Array(plaintext);
    return moved({ ok: true, value: { plaintext: owned, spent: task.buffer } }, [owned.buffer, task.buffer]);
  } catch (err) {
    return failure(err);
  }
}
