/**
 * Chain nodes wired to each other in one process (real ChainStores on LMDB in a temp dir; the
 * network is a function call a test can make lossy), for behaviour that needs control over
 * which messages arrive.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CairnError, isCairnError } from '../src/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { endorsementMessage } from '../src/chain/block.js';
import { ChainNode, type PeerLink } from '../src/chain/chain-node.js';
import { ChainStore } from '../src/chain/chain-store.js';
import { genesisHash, type Genesis } from '../src/chain/genesis.js';
import type { RaftMessage } from '../src/chain/raft-types.js';
import { canonical } from '../src/chain/canonical.js';
import { signTx } from '../src/chain/tx.js';
import { boxKeyFromSeed, newSigningSeed, signingKeyFromSeed, type SigningKey } from '../src/crypto/keys.js';
import { openProviderDbs } from '../src/provider/store.js';

const kdf = { alg: 'scrypt' as const, N: 1 << 14, r: 8, p: 1, salt: '00'.repeat(16) };

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function registration(name: string, chain: string) {
  const signing = signingKeyFromSeed(newSigningSeed());
  return signTx({ type: 'user.register', username: name, signKey: signing.publicKey, boxKey: boxKeyFromSeed(newSigningSeed()).publicKey, kdf }, name, signing, chain);
}

interface TestChain {
  nodes: Map<string, ChainNode>;
  signers: Map<string, SigningKey>;
  stores: Map<string, ChainStore>;
  leader: ChainNode;
  /** The chain's genesis hash, that its transactions are signed for. */
  hash: string;
  /** Submits a registration to the leader; resolves with its (final, accepted) height. */
  submit(name: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Three chain nodes on LMDB in a temp dir, wired by setImmediate calls. `deliver` may drop a
 * message (return false) and sees every one that is sent.
 */
async function startChain(tickMs: number, commitNoticeLingerMs: number | undefined, deliver: (from: string, to: string, type: 'raft' | 'chain.endorse', body: unknown) => boolean): Promise<TestChain> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-chain-node-'));
  const ids = ['sp1', 'sp2', 'sp3'];
  const signers = new Map(ids.map((id) => [id, signingKeyFromSeed(newSigningSeed())]));
  const genesis: Genesis = { chainId: 'lossy', time: 1, validators: ids.map((id) => ({ id, signKey: signers.get(id)!.publicKey })) };
  const nodes = new Map<string, ChainNode>();
  const stores = new Map<string, ChainStore>();
  const dbs = ids.map((id) => openProviderDbs(join(dir, id)));
  const close = async () => {
    for (const node of nodes.values()) node.stop();
    await new Promise((r) => setImmediate(r)); // messages already on their way find the nodes stopped
    for (const st of stores.values()) await st.settled();
    for (const d of dbs) await d.root.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    ids.forEach((id, i) => {
      const peers: PeerLink = {
        send: (to, type, body) => {
          if (!deliver(id, to, type, body)) return;
          setImmediate(() => {
            const node = nodes.get(to)!;
            if (type === 'raft') node.onRaft(id, (body as { msg: RaftMessage<never> }).msg);
            else node.onEndorse(id, (body as { endorsements: never[] }).endorsements);
          });
        },
        submit: (to, tx) => nodes.get(to)!.submit(tx),
        flush: () => undefined, // setImmediate delivers after this turn either way
      };
      const store = new ChainStore(dbs[i]!, genesis);
      stores.set(id, store);
      nodes.set(id, new ChainNode({ id, store, signer: signers.get(id)!, peers, tickMs, commitNoticeLingerMs, log: () => undefined }));
    });
    for (const node of nodes.values()) node.start();
    await until('a leader is elected', () => [...nodes.values()].some((n) => n.status().role === 'leader'));
  } catch (err) {
    await close();
    throw err;
  }
  const leader = [...nodes.values()].find((n) => n.status().role === 'leader')!;
  const submit = async (name: string) => {
    const result = await leader.submit(registration(name, genesisHash(genesis)));
    assert.equal(result.ok, true, result.error);
    return result.height;
  };
  return { nodes, signers, stores, leader, submit, close, hash: genesisHash(genesis) };
}

describe('chain nodes', () => {
  it('certify blocks whose endorsements were lost, without a change of leader', async () => {
    let dropEndorsements = false;
    const chain = await startChain(10, undefined, (_from, _to, type) => type === 'raft' || !dropEndorsements);
    try {
      const { leader, submit } = chain;
      const leaderStore = chain.stores.get(leader.status().id)!;

      // Every endorsement is lost for a while: blocks become final, but none gets a certificate.
      dropEndorsements = true;
      let lostUpTo = 0;
      for (let i = 0; i < 3; i++) lostUpTo = await submit(`lost${i}`);
      const certifiedBefore = leaderStore.certifiedHeight();
      assert.ok(certifiedBefore < lostUpTo, 'the blocks of the lossy stretch are not certified');

      // Links heal; the leader never changes. New blocks alone cannot certify the old ones
      // (certificates are contiguous): the followers must send the lost endorsements again.
      dropEndorsements = false;
      // Certificates travel in blocks, so the chain keeps moving while we wait (bounded).
      const deadline = Date.now() + 5_000;
      for (let i = 0; leaderStore.certifiedHeight() < lostUpTo; i++) {
        assert.ok(Date.now() < deadline, `certified up to ${leaderStore.certifiedHeight()} after ${i} more blocks; the lost stretch ends at ${lostUpTo}`);
        await submit(`after${i}`);
      }
      assert.equal(leader.status().role, 'leader', 'no election was needed');
    } finally {
      await chain.close();
    }
  });

  it('answer a transaction submitted again after it is final with its first outcome, and make no block for it', async () => {
    // What a web client does when its leader died before answering: it sends the same transaction again.
    const chain = await startChain(10, undefined, () => true);
    try {
      const tx = registration('again', chain.hash);
      const first = await chain.leader.submit(tx);
      assert.equal(first.ok, true, first.error);
      const leaderStore = chain.stores.get(chain.leader.status().id)!;
      const height = leaderStore.lastHeight();
      assert.deepEqual(await chain.leader.submit(tx), first);
      const follower = [...chain.nodes.values()].find((n) => n !== chain.leader)!;
      const followerStore = chain.stores.get(follower.status().id)!;
      await until('the follower applied the block', () => followerStore.applied() >= first.height);
      assert.deepEqual(await follower.submit(tx), first);
      assert.equal(leaderStore.lastHeight(), height, 'no block for a transaction that is final already');
    } finally {
      await chain.close();
    }
  });

  it('refuse a copy of a transaction with a bad signature, so it cannot stand in for the genuine one', async () => {
    const chain = await startChain(10, undefined, () => true);
    try {
      const tx = registration('genuine', chain.hash);
      const sig = tx.sig;
      const forged = { ...tx, sig: `${sig.slice(0, -2)}${sig.endsWith('00') ? '01' : '00'}` };
      const height = chain.stores.get(chain.leader.status().id)!.lastHeight();
      await assert.rejects(chain.leader.submit(forged), (err: unknown) => isCairnError(err, 'INVALID_TX'));
      assert.equal(chain.stores.get(chain.leader.status().id)!.lastHeight(), height, 'no block for it');
      const real = await chain.leader.submit(tx);
      assert.equal(real.ok, true, real.error);
    } finally {
      await chain.close();
    }
  });

  it('refuse a transaction signed for another chain, or by an older client for none, so no other cluster\'s can be replayed here', async () => {
    const chain = await startChain(10, undefined, () => true);
    try {
      const store = chain.stores.get(chain.leader.status().id)!;
      const height = store.lastHeight();
      const elsewhere = registration('elsewhere', 'f'.repeat(64));
      await assert.rejects(chain.leader.submit(elsewhere), (err: unknown) => isCairnError(err, 'INVALID_TX') && /signed for chain ffffffffffff/.test((err as Error).message));
      const { chain: _dropped, ...unsigned } = registration('older', chain.hash);
      const signing = signingKeyFromSeed(newSigningSeed());
      const body = { ...unsigned.body, signKey: signing.publicKey };
      const older = { ...unsigned, body, sig: signing.sign(canonical({ body, signer: unsigned.signer, nonce: unsigned.nonce, time: unsigned.time })) };
      await assert.rejects(chain.leader.submit(older), (err: unknown) => isCairnError(err, 'INVALID_TX') && /names no chain/.test((err as Error).message));
      assert.equal(store.lastHeight(), height, 'no block for either');
      assert.equal((await chain.leader.submit(registration('here', chain.hash))).ok, true);
    } finally {
      await chain.close();
    }
  });

  it('refuse a transaction whose signer no one registered, so it never takes room in a block', async () => {
    const chain = await startChain(10, undefined, () => true);
    try {
      const ghost = signingKeyFromSeed(newSigningSeed());
      const tx = signTx({ type: 'file.delete', fileId: '0'.repeat(32) }, 'ghost', ghost, chain.hash);
      const store = chain.stores.get(chain.leader.status().id)!;
      await until('a block of the leader\'s own term is final', () => store.applied() >= 1);
      const height = store.lastHeight();
      await assert.rejects(chain.leader.submit(tx), (err: unknown) => isCairnError(err, 'INVALID_TX') && /ghost is not a registered user/.test((err as Error).message));
      const follower = [...chain.nodes.values()].find((n) => n !== chain.leader)!;
      await assert.rejects(follower.submit(tx), (err: unknown) => isCairnError(err, 'INVALID_TX'), 'also through a follower');
      assert.equal(store.lastHeight(), height, 'no block for it');
      // Once registered, the same user's transactions are taken.
      const register = signTx({ type: 'user.register', username: 'ghost', signKey: ghost.publicKey, boxKey: boxKeyFromSeed(newSigningSeed()).publicKey, kdf }, 'ghost', ghost, chain.hash);
      assert.equal((await chain.leader.submit(register)).ok, true);
      const again = signTx({ type: 'file.delete', fileId: '0'.repeat(32) }, 'ghost', ghost, chain.hash);
      const refused = await chain.leader.submit(again);
      assert.equal(refused.ok, false, 'recorded, refused by the rules: no such file');
    } finally {
      await chain.close();
    }
  });

  it("take a fresh user's transaction at a node that applied the registration while it waited to lead", async () => {
    // N holds the registration's block but never hears from the leader that it is final; the
    // leader then goes. N reads the user as unknown, wins the election, applies the block, and
    // must take the user's transaction then, not refuse it as from no one.
    let leaderId = '';
    let follower = '';
    let other = '';
    let gate = Infinity;
    let holdVotes = false;
    const chain = await startChain(10, undefined, (from, to, type, body) => {
      const msg = (body as { msg?: { type: string; commit?: number } }).msg;
      if (from === leaderId && to === follower && type === 'raft' && msg?.type === 'append' && (msg.commit ?? 0) >= gate) return false;
      if (from === other && type === 'raft' && (msg?.type === 'vote' || msg?.type === 'preVote')) return false; // the third does not run
      if (holdVotes && from === other && to === follower && (msg?.type === 'voteResp' || msg?.type === 'preVoteResp')) return false;
      return true;
    });
    try {
      leaderId = chain.leader.status().id;
      [follower, other] = [...chain.nodes.keys()].filter((id) => id !== leaderId) as [string, string];
      await until('the first block applied everywhere', () => [...chain.stores.values()].every((st) => st.applied() >= 1));
      gate = chain.stores.get(leaderId)!.lastHeight() + 1;
      const signing = signingKeyFromSeed(newSigningSeed());
      const register = signTx({ type: 'user.register', username: 'fresh', signKey: signing.publicKey, boxKey: boxKeyFromSeed(newSigningSeed()).publicKey, kdf }, 'fresh', signing, chain.hash);
      assert.equal((await chain.leader.submit(register)).ok, true);
      holdVotes = true; // N cannot win until the transaction waits at it
      chain.leader.stop(); // the user was told "registered"; the leader then goes
      const n = chain.nodes.get(follower)!;
      await until(`${follower} runs for leader`, () => n.status().leader === null, 5_000);
      assert.equal(chain.stores.get(follower)!.get('u/fresh'), undefined, 'the registration is not applied here yet');
      // As a web client does, it asks again while the new leader says it is catching up (retryable).
      const tx = signTx({ type: 'file.delete', fileId: '0'.repeat(32) }, 'fresh', signing, chain.hash);
      const submitted = (async () => {
        for (let attempt = 0; attempt < 50; attempt++) {
          const r = await n.submit(tx).catch((err: unknown) => {
            if (isCairnError(err, 'NOT_LEADER')) return new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20));
            throw err;
          });
          if (r) return r;
        }
        return undefined;
      })();
      holdVotes = false; // N wins, commits a block of its term and applies the registration
      const result = await submitted;
      assert.equal(result?.error, 'unknown file', 'recorded, refused by the rules only');
    } finally {
      await chain.close();
    }
  });

  it('tell every caller of a transaction submitted again while it waits its outcome, or the failure', async () => {
    let isolated = '';
    const chain = await startChain(10, undefined, (from, to) => from !== isolated && to !== isolated);
    const settledWithin = <T>(p: Promise<T>, what: string) =>
      Promise.race([p.then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e })), new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} never settled`)), 5_000).unref())]);
    try {
      // Both callers of one transaction sent twice before it is final learn the one outcome.
      const tx = registration('twice', chain.hash);
      const [a, b] = await Promise.all([chain.leader.submit(tx), chain.leader.submit(tx)]);
      assert.equal(a.ok, true, a.error);
      assert.deepEqual(b, a);
      // A leader that cannot reach a majority fails both callers when it stops (as it would at
      // its timeout, or on losing leadership): the second caller is not left waiting forever.
      isolated = chain.leader.status().id;
      const leaderStore = chain.stores.get(isolated)!;
      const proposedBefore = leaderStore.lastHeight();
      const stuck = registration('stuck', chain.hash);
      const first = settledWithin(chain.leader.submit(stuck), 'the first submit');
      const second = settledWithin(chain.leader.submit(stuck), 'the second submit');
      await until('both wait for a block that cannot be final', () => leaderStore.lastHeight() > proposedBefore);
      chain.leader.stop();
      for (const outcome of [await first, await second]) {
        assert.equal(outcome.ok, false);
        assert.ok(outcome.e instanceof CairnError && outcome.e.code === 'UNAVAILABLE', String(outcome.e));
      }
    } finally {
      await chain.close();
    }
  });

  it("keep certifying after a follower sends its endorsement of an old leader's block the leader never held", async () => {
    const chain = await startChain(10, undefined, () => true);
    try {
      await chain.submit('before');
      const leaderStore = chain.stores.get(chain.leader.status().id)!;
      const follower = [...chain.nodes.keys()].find((id) => id !== chain.leader.status().id)!;
      // What a follower sends a new leader: its own endorsements of blocks not yet certified,
      // here of a block from an old term at a height the leader has not reached.
      const stale = 'ab'.repeat(32);
      const height = leaderStore.lastHeight() + 1;
      chain.leader.onEndorse(follower, [{ height, hash: stale, sig: chain.signers.get(follower)!.sign(endorsementMessage(stale)) }]);
      let last = 0;
      for (let i = 0; i < 6; i++) last = await chain.submit(`after${i}`);
      await until(`blocks up to ${last - 2} are certified`, () => leaderStore.certifiedHeight() >= last - 2, 5_000);
      assert.notEqual(leaderStore.endorsements(height)?.hash, stale);
    } finally {
      await chain.close();
    }
  });

  it('vouch for holding every final transaction only as a leader with a majority (what the orphan sweep reads)', async () => {
    let cutOff = '';
    const chain = await startChain(10, undefined, (from, to) => from !== cutOff && to !== cutOff);
    try {
      const height = await chain.submit('vouched');
      await chain.leader.leaderRead();
      const leaderStore = chain.stores.get(chain.leader.status().id)!;
      assert.ok(leaderStore.applied() >= height, 'the leader has applied what is final');
      const follower = [...chain.nodes.values()].find((n) => n !== chain.leader)!;
      await assert.rejects(follower.leaderRead(), (err: unknown) => err instanceof CairnError && err.code === 'NOT_LEADER');
      // Cut off from both followers, the old leader may miss what a new one makes final.
      cutOff = chain.leader.status().id;
      await until('the cut-off leader to lose its majority', () => !chain.leader.status().hasQuorum);
      await assert.rejects(chain.leader.leaderRead(), (err: unknown) => err instanceof CairnError && err.code === 'NOT_LEADER');
    } finally {
      await chain.close();
    }
  });

  it('certify every block with a majority of endorsements, no more: each extra one costs every follower a verification', async () => {
    const chain = await startChain(10, undefined, () => true);
    try {
      const leaderStore = chain.stores.get(chain.leader.status().id)!;
      let last = 0;
      for (let i = 0; i < 6; i++) last = await chain.submit(`m${i}`);
      const deadline = Date.now() + 5_000;
      for (let i = 0; leaderStore.certifiedHeight() < last; i++) {
        assert.ok(Date.now() < deadline, `certified up to ${leaderStore.certifiedHeight()}, want ${last}`);
        await chain.submit(`c${i}`);
      }
      let certs = 0;
      for (let h = 1; h <= leaderStore.lastHeight(); h++) {
        for (const cert of leaderStore.block(h)!.header.certs) {
          certs++;
          assert.equal(cert.sigs.length, 2, `the certificate for height ${cert.height} carries ${cert.sigs.length} signatures`);
          assert.equal(new Set(cert.sigs.map((e) => e.sp)).size, 2, 'from two validators');
        }
      }
      assert.ok(certs >= last, `${certs} certificates for ${last} blocks`);
      // The followers took every block with its certificates: they checked each one.
      for (const [id, store] of chain.stores) assert.ok(store.certifiedHeight() >= last, `${id} certified up to ${store.certifiedHeight()}`);
    } finally {
      await chain.close();
    }
  });

  it('drop peers\' messages while too many writes wait for the disk, and take them again once it caught up', async () => {
    const chain = await startChain(10, undefined, () => true);
    try {
      await chain.submit('before');
      const id = [...chain.nodes.keys()].find((n) => n !== chain.leader.status().id)!;
      const follower = chain.nodes.get(id)!;
      const store = chain.stores.get(id)!;
      const { term } = follower.status();
      // A disk that has not kept up: 1,024 writes queued in this turn, none of them durable yet.
      for (let i = 0; store.undurableWrites() < 1024; i++) {
        assert.ok(i < 2048, 'every write is one batch');
        store.persist(store.hardState(), undefined, []); // the same hard state again: a write that changes nothing
      }
      // A message of a later term would move the follower to it, if it were taken.
      const probe = { type: 'append', term: term + 5, prevHeight: 0, prevTerm: 0, entries: [], commit: 0 } as RaftMessage<never>;
      follower.onRaft(chain.leader.status().id, probe);
      assert.equal(follower.status().term, term, 'dropped while the writes wait');
      await store.settled();
      assert.ok(store.undurableWrites() < 1024, 'the chain itself may have written since, not 1,024 times');
      follower.onRaft(chain.leader.status().id, probe);
      assert.equal(follower.status().term, term + 5, 'taken once the disk caught up');
    } finally {
      await chain.close();
    }
  });

  it('tell followers of commits in the next block when one follows, and by heartbeat when none does', async () => {
    // Appends without entries that raise what a follower knows is final: commit notices, or a
    // heartbeat that happens to fall between a commit and the next block. The linger here is
    // longer than the whole test, so however loaded the machine, a commit reaches the followers
    // in the next block's appends or in a heartbeat (every 2 ticks), never in a notice of its own.
    const known = new Map<string, number>();
    let notices = 0;
    const chain = await startChain(100, 60_000, (_from, to, type, body) => {
      const msg = type === 'raft' ? (body as { msg: RaftMessage<never> }).msg : undefined;
      if (msg?.type === 'append') {
        if (msg.entries.length === 0 && msg.commit > (known.get(to) ?? 0)) notices += 1;
        known.set(to, Math.max(known.get(to) ?? 0, msg.commit));
      }
      return true;
    });
    try {
      const blocks = 30;
      let height = 0;
      for (let i = 0; i < blocks; i++) height = await chain.submit(`user${i}`);
      // Telling at once (setImmediate) sent 2 × blocks: one per follower and block.
      assert.ok(notices < blocks / 2, `${notices} commit notices without entries for ${blocks} blocks to 2 followers`);
      // The chain is idle now: the last commit still reaches every follower, which applies it.
      await until(`every replica applied ${height}`, () => [...chain.stores.values()].every((st) => st.applied() >= height), 5_000);
    } finally {
      await chain.close();
    }
  });
});
