/**
 * Receives multipart uploads: each file part streams straight into its own upload pipeline
 * (formidable's fileWriteStreamHandler), so nothing is buffered on disk or held whole in memory.
 */
import type { Context } from 'koa';
import { koaBody } from 'koa-body';
import { CairnError } from '../errors.js';
import type { ClientService } from './service.js';
import type { Session } from './sessions.js';
import type { FileUpload, UploadResult } from './upload.js';

const MAX_FILES_PER_REQUEST = 64;

/**
 * File names are never trusted, but kept as the user gave them (escaped wherever shown, encoded
 * in Content-Disposition): only control characters go, and the length is bounded.
 */
export function cleanName(raw: string | null | undefined): string {
  const clean = (raw ?? '').replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, 255);
  return clean || 'unnamed';
}

function cleanType(raw: string | null | undefined): string {
  return raw && /^[\w.+-]+\/[\w.+-]+$/.test(raw) && raw.length <= 127 ? raw.toLowerCase() : 'application/octet-stream';
}

export async function receiveUploads(ctx: Context, service: ClientService, session: Session, maxBytes: number): Promise<UploadResult[]> {
  if (!ctx.is('multipart/form-data')) {
    throw new CairnError('BAD_REQUEST', 'upload files as multipart/form-data, in a field named "file"');
  }
  const declared = Number(ctx.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes + 1024 * 1024) {
    throw new CairnError('TOO_LARGE', `the upload is larger than the limit of ${maxBytes} bytes`);
  }
  const uploads: FileUpload[] = [];
  const parse = koaBody({
    multipart: true,
    json: false,
    urlencoded: false,
    text: false,
    formidable: {
      maxFiles: MAX_FILES_PER_REQUEST,
      maxFields: 16,
      maxFieldsSize: 64 * 1024,
      maxFileSize: maxBytes,
      maxTotalFileSize: maxBytes,
      allowEmptyFiles: true,
      minFileSize: 0,
      fileWriteStreamHandler: (file?: { originalFilename?: string | null; mimetype?: string | null }) => {
        const upload = service.startUpload(session, cleanName(file?.originalFilename), cleanType(file?.mimetype));
        uploads.push(upload);
        return upload;
      },
    } as never,
  });
  try {
    await parse(ctx, async () => undefined);
  } catch (err) {
    for (const u of uploads) u.destroy(err instanceof Error ? err : new Error(String(err)));
    const status = (err as { httpCode?: number }).httpCode;
    if (status === 413) throw new CairnError('TOO_LARGE', `the upload is larger than the limit of ${maxBytes} bytes; nothing was stored`);
    throw err;
  }
  if (uploads.length === 0) throw new CairnError('BAD_REQUEST', 'the form holds no file; send one or more in a field named "file"');
  const settled = await Promise.allSettled(uploads.map((u) => u.done));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<UploadResult>).value);
}
