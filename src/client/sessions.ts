/**
 * Signed-in sessions: the keys derived from a password live here, in this client's memory only,
 * for the session's life. Bounded in count (per user, and in all) and time; the oldest is dropped
 * past a limit.
 */
import { randomBytes } from 'node:crypto';
import { invariant } from '../errors.js';
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
  /** Each user's tokens, oldest first: one account signing in over and over displaces only its own sessions. */
  readonly #byUser = new Map<string, string[]>();

  constructor(
    private readonly ttlMs = 12 * 60 * 60 * 1000,
    private readonly max = 10_000,
    private readonly maxPerUser = 16,
  ) {}

  create(username: string, keys: AccountKeys): Session {
    for (let own = this.#byUser.get(username); own && own.length >= this.maxPerUser; own = this.#byUser.get(username)) {
      this.delete(own[0]!);
      invariant((this.#byUser.get(username)?.length ?? 0) < own.length, "a user's session list shrinks with each delete");
    }
    // Sessions are made in time order with one lifetime: the oldest is also the first to expire.
    while (this.#byToken.size >= this.max) this.delete(this.#byToken.keys().next().value!);
    const session: Session = {
      token: randomBytes(32).toString('base64url'),
      username,
      keys,
      csrf: randomBytes(24).toString('base64url'),
      expiresAt: Date.now() + this.ttlMs,
      fileKeys: new Map(),
    };
    this.#byToken.set(session.token, session);
    this.#byUser.set(username, [...(this.#byUser.get(username) ?? []), session.token]);
    return session;
  }

  get(token: string | undefined): Session | undefined {
    if (!token) return undefined;
    const s = this.#byToken.get(token);
    if (!s) return undefined;
    if (s.expiresAt < Date.now()) {
      this.delete(token);
      return undefined;
    }
    return s;
  }

  delete(token: string): void {
    const s = this.#byToken.get(token);
    if (!s) return;
    this.#byToken.delete(token);
    const rest = this.#byUser.get(s.username)!.filter((t) => t !== token);
    if (rest.length > 0) this.#byUser.set(s.username, rest);
    else this.#byUser.delete(s.username);
  }
}
