/**
 * What a msgpack header may cost once decoded. A frame's byte limit does not bound its header's
 * memory: one byte (0x80) decodes to an empty object, so a 23 MiB header of empty maps took an SP
 * to 1.7 GiB and a second one killed it (heap out of memory). The header is walked first, without
 * decoding it, adding up a generous estimate of the V8 heap each item will take; one whose
 * estimate is out of proportion to its size is refused before anything is allocated. Real headers
 * (records, placements, blocks) estimate at 2–4× their size.
 *
 * msgpack extensions are refused but for the two the encoder makes of plain values (undefined and
 * a timestamp): msgpackr decodes others (records, sets, errors) into objects whose cost the walk
 * cannot see, and cairn sends none.
 */
import { CairnError } from '../errors.js';

/** Decoded heap allowed per header byte, and for any header at all. */
export const HEAP_PER_HEADER_BYTE = 8;
const HEAP_FLOOR_BYTES = 64 * 1024;

// Generous V8 sizes: an object with its properties, an array with its elements, a string, a Buffer.
// A map's keys cost their bytes only: msgpackr shares repeated keys from a cache.
const MAP_BYTES = 32;
const MAP_ENTRY_BYTES = 16;
const ARRAY_BYTES = 32;
const ELEMENT_BYTES = 8;
const STRING_BYTES = 16;
const BINARY_BYTES = 96;

/** Extension types the encoder makes of plain values: undefined (0) and a timestamp (-1). */
const PLAIN_EXTENSIONS: ReadonlySet<number> = new Set([0x00, 0xff]);

interface Item {
  /** Bytes the item takes, its contents included for strings and binaries. */
  size: number;
  heap: number;
  /** Items it holds (a map's keys and values both count). */
  items: number;
  map?: true;
  /** A string: cheaper as a map key. */
  text?: number;
  /** An extension's type byte, at this offset within the item. */
  extTypeAt?: number;
}

/**
 * Throws BAD_FRAME when the header would decode to more than its budget or carries an extension
 * cairn does not send. Malformed msgpack is left to the decoder to report (the walk stops there).
 */
export function checkHeaderBudget(bytes: Uint8Array): void {
  const budget = HEAP_FLOOR_BYTES + HEAP_PER_HEADER_BYTE * bytes.byteLength;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  // Open containers, innermost last: items still to come in each, and whether it is a map. The
  // walk takes at least one byte per item, so the stack is bounded by the header's size.
  const open: { left: number; map: boolean }[] = [{ left: 1, map: false }];
  let at = 0;
  let heap = 0;
  while (open.length > 0 && at < end) {
    const top = open[open.length - 1]!;
    if (top.left === 0) {
      open.pop();
      continue;
    }
    const isKey = top.map && top.left % 2 === 0;
    top.left -= 1;
    const item = next(bytes[at]!);
    if (item === null) return; // malformed, or a length cut off: the decoder says what is wrong
    if (item.extTypeAt !== undefined && at + item.extTypeAt < end && !PLAIN_EXTENSIONS.has(bytes[at + item.extTypeAt]!)) {
      throw new CairnError('BAD_FRAME', `frame header carries msgpack extension type ${bytes[at + item.extTypeAt]}, which no cairn message uses`);
    }
    heap += isKey && item.text !== undefined ? item.text : item.heap;
    if (heap > budget) {
      throw new CairnError('BAD_FRAME', `frame header of ${bytes.byteLength} bytes would take over ${budget} bytes of memory to decode; refused`);
    }
    at += item.size;
    if (item.items > 0) open.push({ left: item.items, map: item.map === true });
  }

  /** The item at `at`, or null where the bytes are not msgpack or end too soon to tell. */
  function next(b: number): Item | null {
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return scalar(1);
    if (b <= 0x8f) return map(1, b & 0x0f);
    if (b <= 0x9f) return array(1, b & 0x0f);
    if (b <= 0xbf) return string(1, b & 0x1f);
    if (end - at < 6) return null; // too short for a length and an extension type; nothing here can cost much
    switch (b) {
      case 0xc4: return binary(2, view.getUint8(at + 1));
      case 0xc5: return binary(3, view.getUint16(at + 1));
      case 0xc6: return binary(5, view.getUint32(at + 1));
      case 0xc7: return extension(3, view.getUint8(at + 1), 2);
      case 0xc8: return extension(4, view.getUint16(at + 1), 3);
      case 0xc9: return extension(6, view.getUint32(at + 1), 5);
      case 0xca: case 0xce: case 0xd2: return scalar(5);
      case 0xcb: case 0xcf: case 0xd3: return scalar(9);
      case 0xcc: case 0xd0: return scalar(2);
      case 0xcd: case 0xd1: return scalar(3);
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return extension(2, 1 << (b - 0xd4), 1);
      case 0xd9: return string(2, view.getUint8(at + 1));
      case 0xda: return string(3, view.getUint16(at + 1));
      case 0xdb: return string(5, view.getUint32(at + 1));
      case 0xdc: return array(3, view.getUint16(at + 1));
      case 0xdd: return array(5, view.getUint32(at + 1));
      case 0xde: return map(3, view.getUint16(at + 1));
      case 0xdf: return map(5, view.getUint32(at + 1));
      default: return null; // 0xc1 is never valid
    }
  }
}

const scalar = (size: number): Item => ({ size, heap: 0, items: 0 });
const map = (size: number, n: number): Item => ({ size, heap: MAP_BYTES + MAP_ENTRY_BYTES * n, items: 2 * n, map: true });
const array = (size: number, n: number): Item => ({ size, heap: ARRAY_BYTES + ELEMENT_BYTES * n, items: n });
const string = (head: number, n: number): Item => ({ size: head + n, heap: STRING_BYTES + n, items: 0, text: n });
const binary = (head: number, n: number): Item => ({ size: head + n, heap: BINARY_BYTES + n, items: 0 });
const extension = (head: number, n: number, typeAt: number): Item => ({ ...binary(head, n), extTypeAt: typeAt });
