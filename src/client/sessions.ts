/**
 * Signed-in sessions: the keys derived from a password live here, in this client's memory only,
 * for the session's life. Bounded in count and time; the oldest is dropped past the limit.
 */
import { randomBytes } from 'node:crypto';
import type { AccountKeys } from '../crypto/password.js';

export interface Session {
  token: string;
  username: string;
  keys: AccountKeys;
  csrf: string;
  expiresAt: number;
  /**
   * File keys this session opened, by file id and sealed box: opening one costs an X25519
   * agreement (~20 % of a small download's CPU), and a user reads the same files again and again.
   * Bounded; as secret as `keys`, and gone with the session.
   */
  fileKeys: Map<string, Buffer>;
}

export const MAX_FILE_KEYS_PER_SESSION = 64;

export class Sessions {
  readonly #byToken = new Map<string, Session>();

  constructor(
    private readonly ttlMs = 12 * 60 * 60 * 1000,
    private readonly max = 10_000,
  ) {}

  create(username: string, keys: AccountKeys): Session {
    while (this.#byToken.size >= this.max) this.#byToken.delete(this.#byToken.keys().next().value!);
    const session: Session = {
      token: randomBytes(32).toString('base64url'),
      username,
      keys,
      csrf: randomBytes(24).toString('base64url'),
      expiresAt: Date.now() + this.ttlMs,
      fileKeys: new Map(),
    };
    this.#byToken.set(session.token, session);
    return session;
  }

  get(token: string | undefined): Session | undefined {
    if (!token) return undefined;
    const s = this.#byToken.get(token);
    if (!s) return undefined;
    if (s.expiresAt < Date.now()) {
      this.#byToken.delete(token);
      return undefined;
    }
    return s;
  }

  delete(token: string): void {
    this.#byToken.delete(token);
  }
}
