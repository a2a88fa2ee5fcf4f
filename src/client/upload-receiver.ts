/**
 * Receives multipart uploads: each file part streams straight into its own upload pipeline as the
 * request's chunks arrive (reading pauses while a pipeline is full), so nothing is buffered on
 * disk or held whole in memory.
 */
import type { Writable } from 'node:stream';
import type { Context } from 'koa';
import { CairnError, isCairnError } from '../errors.js';
import { wellFormed } from './format.js';
import { MultipartParser, boundaryOf, type PartHeaders } from './multipart.js';
import { RequestChunks } from './request-chunks.js';
import type { ClientService } from './service.js';
import type { Session } from './sessions.js';
import type { FileUpload, UploadResult } from './upload.js';

const MAX_FILES_PER_REQUEST = 64;
const MAX_OTHER_FIELDS = 16;
const MAX_FIELD_BYTES = 64 * 1024; // all non-file fields together; they are read and ignored
const MAX_PART_HEADER_BYTES = 16 * 1024;

/**
 * Control characters (C0, DEL, C1) and bidirectional formatting marks: the latter make a name
 * read otherwise than it is ("invoice\u202Egpj.exe" shows as "invoiceexe.jpg" in a listing).
 */
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * File names are never trusted, but kept as the user gave them (escaped wherever shown, encoded
 * in Content-Disposition): only invisible characters go, and the length is bounded.
 */
export function cleanName(raw: string | null | undefined): string {
  // Cut at 255 UTF-16 units, but never inside a character (half a surrogate pair is not text).
  const clean = (raw ?? '').replace(INVISIBLE, '').trim().slice(0, 255).replace(/[\uD800-\uDBFF]$/, '');
  return wellFormed(clean) || 'unnamed';
}

function cleanType(raw: string | null | undefined): string {
  return raw && /^[\w.+-]+\/[\w.+-]+$/.test(raw) && raw.length <= 127 ? raw.toLowerCase() : 'application/octet-stream';
}

/** Resolves when the sink wants more; rejects if it fails first. */
function drained(sink: Writable): Promise<void> {
  // A sink that already failed and closed sends no more events.
  if (sink.destroyed) return Promise.reject(sink.errored ?? new CairnError('UNAVAILABLE', 'the upload pipeline stopped before the file was received'));
  return new Promise((resolve, reject) => {
    const settle = (err?: Error) => {
      sink.off('drain', onDrain).off('error', settle).off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => settle();
    const onClose = () => settle(new CairnError('UNAVAILABLE', 'the upload pipeline stopped before the file was received'));
    sink.on('drain', onDrain).on('error', settle).on('close', onClose);
  });
}

/**
 * Whom an upload is for: a session already checked, or (the page's form, without JavaScript) a
 * session its `_csrf` field must vouch for. That field comes first in the form, so it is checked
 * before any file byte is taken, and the token never has to ride in the URL (logs, history).
 */
export type UploadAuth = Session | { byFormToken: (token: string | undefined) => Session };

/** The form field that carries the CSRF token, and the longest a token may be. */
const TOKEN_FIELD = '_csrf';
const MAX_TOKEN_BYTES = 256;
/**
 * What a form that must still show its token may send before it has: the page's form sends it
 * first, so this is room for the boundary and the token part's headers.
 */
const MAX_BYTES_BEFORE_TOKEN = 64 * 1024;
/** What a form may hold beside its files' bytes: boundaries, part headers, fields, preamble, epilogue. */
const FORM_OVERHEAD_BYTES = 1024 * 1024;

export async function receiveUploads(ctx: Context, service: ClientService, auth: UploadAuth, maxBytes: number): Promise<UploadResult[]> {
  if (!ctx.is('multipart/form-data')) {
    throw new CairnError('BAD_REQUEST', 'upload files as multipart/form-data, in a field named "file"');
  }
  // The form is parsed as it arrives, byte for byte: a compressed one would only fail later, as a
  // form whose closing boundary never comes.
  const encoding = ctx.get('content-encoding').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') {
    throw new CairnError('UNSUPPORTED_MEDIA_TYPE', `uploads are read as sent, without Content-Encoding (this one is "${encoding.slice(0, 40)}"): send the form uncompressed`);
  }
  const tooLarge = () => new CairnError('TOO_LARGE', `the upload is larger than the limit of ${maxBytes} bytes; nothing was stored`);
  const declared = Number(ctx.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes + FORM_OVERHEAD_BYTES) throw tooLarge();
  const parser = new MultipartParser(boundaryOf(ctx.get('content-type')), {
    maxParts: MAX_FILES_PER_REQUEST + MAX_OTHER_FIELDS,
    maxHeaderBytes: MAX_PART_HEADER_BYTES,
  });
  const uploads: FileUpload[] = [];
  // Every file's record waits for the whole request to be received and stored: one file that
  // fails before stores none of the request's files.
  let recording!: { resolve: () => void; reject: (err: Error) => void };
  const mayRecord = new Promise<void>((resolve, reject) => (recording = { resolve, reject }));
  mayRecord.catch(() => undefined); // each upload reads the outcome
  const body = new RequestChunks(ctx.req);
  let file: FileUpload | null = null; // the file part being read, if the current part is a file
  let unnamed: PartHeaders | null = null; // a part with an empty file name, until its first byte
  let token: Buffer[] | null = null; // the token field's bytes, while it is the part being read
  let tokenBytes = 0;
  let tokenText: string | undefined;
  let session: Session | null = 'byFormToken' in auth ? null : auth;
  const vouched = (): Session => (session ??= (auth as Exclude<UploadAuth, Session>).byFormToken(tokenText));
  const begin = (headers: PartHeaders): FileUpload => {
    if (uploads.length === MAX_FILES_PER_REQUEST) throw new CairnError('TOO_LARGE', `send at most ${MAX_FILES_PER_REQUEST} files in one upload`);
    const upload = service.startUpload(vouched(), cleanName(headers.filename), cleanType(headers.contentType), mayRecord);
    upload.on('error', (err: Error) => body.interrupt(err)); // answer now, even if its sender stalls
    uploads.push(upload);
    return upload;
  };
  let fileBytes = 0;
  let fieldBytes = 0;
  let received = 0; // every byte of the body, whatever part of the form it is
  try {
    // Leaving this loop early (a file over the limit) must not destroy the request: that reset the
    // connection while the client was still sending (EPIPE for it, no 413); the error handler
    // drains the rest and answers instead.
    for await (const chunk of body) {
      received += chunk.length;
      // Bytes outside any part (preamble, epilogue) count too: chunked bodies declare no length.
      if (received > maxBytes + FORM_OVERHEAD_BYTES) throw tooLarge();
      if (session === null && received > MAX_BYTES_BEFORE_TOKEN) vouched();
      for (const event of parser.push(chunk)) {
        if (event.kind === 'part') {
          if (event.headers.filename === null) {
            if (event.headers.field === TOKEN_FIELD && session === null && tokenText === undefined) token = [];
            continue;
          }
          // A form's file input with no file chosen sends an empty part named "": a file only if bytes follow.
          if (event.headers.filename === '') unnamed = event.headers;
          else file = begin(event.headers);
        } else if (event.kind === 'data') {
          if (unnamed && event.bytes.length > 0) {
            file = begin(unnamed);
            unnamed = null;
          }
          if (file) {
            fileBytes += event.bytes.length;
            if (fileBytes > maxBytes) throw tooLarge();
            if (!file.write(event.bytes)) await drained(file);
          } else if ((fieldBytes += event.bytes.length) > MAX_FIELD_BYTES) {
            throw new CairnError('TOO_LARGE', `the form's fields other than files hold more than ${MAX_FIELD_BYTES} bytes`);
          } else if (token) {
            tokenBytes += event.bytes.length;
            if (tokenBytes <= MAX_TOKEN_BYTES) token.push(Buffer.from(event.bytes));
          }
        } else {
          file?.end();
          file = null;
          unnamed = null;
          // A token longer than any is no token (not one cut to length): it is refused as wrong.
          if (token) tokenText = tokenBytes <= MAX_TOKEN_BYTES ? Buffer.concat(token).toString('utf8') : '';
          token = null;
        }
      }
    }
    parser.end();
  } catch (err) {
    await failAll(err);
    throw err;
  }
  vouched(); // a form without a file is still refused for want of a token first
  if (uploads.length === 0) throw new CairnError('BAD_REQUEST', 'the form holds no file; send one or more in a field named "file"');
  try {
    await Promise.all(uploads.map((u) => u.stored));
  } catch (err) {
    await failAll(err);
    throw err;
  }
  recording.resolve();
  const settled = await Promise.allSettled(uploads.map((u) => u.done));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(uploads.map((u) => u.discarded));
    // Past the barrier only a record can fail: others of the request may be final by now.
    const recorded = settled.flatMap((s) => (s.status === 'fulfilled' ? [`${s.value.name} (${s.value.id})`] : []));
    if (recorded.length === 0 || !isCairnError(failed.reason)) throw failed.reason;
    throw new CairnError(failed.reason.code, `${failed.reason.message}; stored all the same: ${recorded.join(', ')}`);
  }
  return settled.map((s) => (s as PromiseFulfilledResult<UploadResult>).value);

  /** Fails every file of the request and answers once what they stored is deleted (the error says nothing was stored). */
  async function failAll(err: unknown): Promise<void> {
    const failure = err instanceof Error ? err : new Error(String(err));
    recording.reject(failure);
    for (const u of uploads) u.destroy(failure);
    await Promise.all(uploads.map((u) => u.discarded));
  }
}
