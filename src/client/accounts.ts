/**
 * Sign-up and sign-in. The password never leaves this process: it derives the account's keys,
 * sign-up publishes the public halves, sign-in re-derives and compares with the chain.
 */
import { CairnError } from '../errors.js';
import { signTx, USERNAME } from '../chain/tx.js';
import { deriveAccountKeys, newKdfParams, type AccountKeys } from '../crypto/password.js';
import type { UserRecord } from '../chain/state.js';
import type { ClusterLink } from './cluster-link.js';

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 1024;

export function checkCredentials(username: unknown, password: unknown): { username: string; password: string } {
  if (typeof username !== 'string' || !USERNAME.test(username)) {
    throw new CairnError('BAD_REQUEST', 'username must be 3–32 characters: lower-case letters, digits, and . _ - (not first)');
  }
  if (typeof password !== 'string' || password.length < PASSWORD_MIN || password.length > PASSWORD_MAX) {
    throw new CairnError('BAD_REQUEST', `password must be ${PASSWORD_MIN}–${PASSWORD_MAX} characters`);
  }
  return { username, password };
}

export async function register(link: ClusterLink, username: string, password: string): Promise<{ height: number }> {
  const existing = await link.chain('state.user', { username, minHeight: 0 });
  if (existing.user) throw new CairnError('CONFLICT', `username ${username} is taken`);
  const kdf = newKdfParams();
  const keys = await deriveAccountKeys(password, kdf);
  const tx = signTx({ type: 'user.register', username, signKey: keys.signing.publicKey, boxKey: keys.box.publicKey, kdf }, username, keys.signing, link.chainHash);
  const result = await link.chain('chain.submit', { tx });
  if (!result.ok) {
    if (result.error?.includes('taken')) throw new CairnError('CONFLICT', `username ${username} is taken`);
    throw new CairnError('BAD_REQUEST', `registration refused: ${result.error ?? 'unknown reason'}`);
  }
  return { height: result.height };
}

const BAD_LOGIN = 'wrong username or password';

/**
 * A user as the chain knows it, or null. The replica asked first may not have applied the newest
 * blocks (someone who just signed up through another web client), so a "no" is asked again at
 * the leader's height before it counts.
 */
export async function findUser(link: ClusterLink, username: string): Promise<UserRecord | null> {
  const { user } = await link.chain('state.user', { username, minHeight: 0 });
  if (user) return user;
  return (await link.chain('state.user', { username, minHeight: await link.headHeight() })).user;
}

export async function signIn(link: ClusterLink, username: string, password: string): Promise<AccountKeys> {
  const user = await findUser(link, username);
  if (!user) throw new CairnError('UNAUTHENTICATED', BAD_LOGIN);
  const keys = await deriveAccountKeys(password, user.kdf);
  if (keys.signing.publicKey !== user.signKey || keys.box.publicKey !== user.boxKey) {
    throw new CairnError('UNAUTHENTICATED', BAD_LOGIN);
  }
  return keys;
}
