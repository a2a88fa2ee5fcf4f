/**
 * The head of an HTTP/1.1 response (status line and header fields), for the benchmark's lean
 * clients: they read what cairn sends, so this is no general HTTP parser.
 */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface ResponseHead {
  /** 0 when the status line is not one. */
  status: number;
  statusLine: string;
  /** Lower-case names. */
  fields: Map<string, string>;
  /** Offset of the body's first byte in the bytes parsed. */
  bodyAt: number;
}

/** The head at the start of `bytes`, or null while its blank line has not arrived. */
export function parseResponseHead(bytes: Buffer): ResponseHead | null {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = lines[0] ?? '';
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const fields = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status, statusLine, fields, bodyAt: end + 4 };
}
