/**
 * What a signed-in user may see of a file record: access rules, the file key (opened with the
 * user's box key), the decrypted name and type, and the file's health from its placements.
 */
import { CairnError } from '../errors.js';
import type { StoredFile } from '../chain/state.js';
import { openSealed, openSmall, type SealedBox } from '../crypto/keys.js';
import { MAX_FILE_KEYS_PER_SESSION, type Session } from './sessions.js';

export type Health = 'ok' | 'degraded' | 'lost';

export const keyContext = (fileId: string) => `cairn-file-key:${fileId}`;
export const metaContext = (fileId: string) => `cairn-file-meta:${fileId}`;

/** The file key sealed to `username`, if the file is shared with them: an own entry only (a user named "constructor" is not Object's). */
function shareOf(file: StoredFile, username: string): SealedBox | undefined {
  return Object.hasOwn(file.shares, username) ? file.shares[username] : undefined;
}

/** 404 for files the user may not see: whether a file id exists is not revealed to strangers. */
export function authorize(file: StoredFile | null, session: Session, id: string): StoredFile {
  if (!file || (file.record.owner !== session.username && !shareOf(file, session.username))) {
    throw new CairnError('NOT_FOUND', `no file ${id} that you can access`);
  }
  return file;
}

export function requireOwner(file: StoredFile, session: Session): void {
  if (file.record.owner !== session.username) throw new CairnError('FORBIDDEN', 'only the owner of a file may do this');
}

export function fileKey(file: StoredFile, session: Session): Buffer {
  const sealed = file.record.owner === session.username ? file.record.ownerKey : shareOf(file, session.username);
  if (!sealed) throw new CairnError('NOT_FOUND', `no file ${file.record.id} that you can access`);
  const id = `${file.record.id}/${sealed.epk}`;
  const known = session.fileKeys.get(id);
  if (known) return known;
  const key = openSealed(session.keys.box, sealed, keyContext(file.record.id));
  if (session.fileKeys.size >= MAX_FILE_KEYS_PER_SESSION) session.fileKeys.delete(session.fileKeys.keys().next().value!);
  session.fileKeys.set(id, key);
  return key;
}

export interface FileMeta {
  name: string;
  type: string;
}

export function fileMeta(file: StoredFile, key: Uint8Array): FileMeta {
  const text = openSmall(key, file.record.meta, metaContext(file.record.id)).toString('utf8');
  let meta: Partial<FileMeta> | null;
  try {
    meta = JSON.parse(text) as Partial<FileMeta> | null;
  } catch (err) {
    throw new CairnError('INTEGRITY', `the name and type of file ${file.record.id} are not readable`, { cause: err });
  }
  return { name: String(meta?.name), type: String(meta?.type) };
}

/** Health as placements and SP liveness say: a shard on a down SP counts as missing. */
export function health(file: StoredFile, isUp: (sp: string) => boolean): Health {
  const { k, m } = file.record;
  let worst: Health = 'ok';
  for (const seg of file.record.segments) {
    const present = seg.shards.filter((s) => s.sp !== null && isUp(s.sp)).length;
    if (present < k) return 'lost';
    if (present < k + m) worst = 'degraded';
  }
  return worst;
}

export interface FileSummary {
  id: string;
  name: string;
  type: string;
  size: number;
  createdAt: string;
  owner: string;
  health: Health;
  block: number;
}

export function summarize(file: StoredFile, session: Session, isUp: (sp: string) => boolean): FileSummary {
  const meta = fileMeta(file, fileKey(file, session));
  return {
    id: file.record.id,
    name: meta.name,
    type: meta.type,
    size: file.record.size,
    createdAt: new Date(file.record.createdAt).toISOString(),
    owner: file.record.owner,
    health: health(file, isUp),
    block: file.height,
  };
}
