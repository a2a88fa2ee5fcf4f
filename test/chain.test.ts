/** Chain data model: blocks, certificates, state rules, and verification of a stored replica. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Packr, pack, unpack } from 'msgpackr';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockProblems, blockWireBytes, endorsementMessage, makeBlock, MAX_BLOCK_BYTES, MAX_INLINE_BYTES_PER_BLOCK, takeBlockTxs, type Block } from '../src/chain/block.js';
import { canonical } from '../src/chain/canonical.js';
import { ChainStore } from '../src/chain/chain-store.js';
import { genesisHash, type Genesis } from '../src/chain/genesis.js';
import { applyBlock, expectedSegments, fileRoot, keys, stateDigest, type StateValue } from '../src/chain/state.js';
import { inlineBytes, inlineSealed, LIMITS, signTx, txId, txLeafHash, txP, txWireBytes, verifyTx, type FileRecord, type Tx, type TxBody } from '../src/chain/tx.js';
import { verifyReplica } from '../src/chain/verify.js';
import { newSigningSeed, sealSmall, sealTo, boxKeyFromSeed, signingKeyFromSeed, type SigningKey } from '../src/crypto/keys.js';
import { lmdbDir, openProviderDbs } from '../src/provider/store.js';
import { writeClusterFile } from '../src/config/cluster-file.js';
import { execFileSync } from 'node:child_process';
import { CLI } from './support/cluster.js';

const sps = ['sp1', 'sp2', 'sp3'].map((id) => ({ id, key: signingKeyFromSeed(newSigningSeed()) }));
const genesis: Genesis = { chainId: 'test', time: 1, validators: sps.map((s) => ({ id: s.id, signKey: s.key.publicKey })) };
const CHAIN = genesisHash(genesis);
/** What crosses a mailbox: msgpack and back. */
const msgpackRoundTrip = (value: unknown): unknown => unpack(pack(value));
const kdf = { alg: 'scrypt' as const, N: 1 << 14, r: 8, p: 1, salt: '00'.repeat(16) };

function user(name: string) {
  const signing = signingKeyFromSeed(newSigningSeed());
  const box = boxKeyFromSeed(newSigningSeed());
  const register = signTx({ type: 'user.register', username: name, signKey: signing.publicKey, boxKey: box.publicKey, kdf }, name, signing, CHAIN);
  return { name, signing, box, register };
}

function record(owner: ReturnType<typeof user>, id: string): FileRecord {
  const segments = [{ sealedLength: 48, shards: ['sp1', 'sp2', 'sp3'].map((sp, i) => ({ hash: `${i}`.repeat(64), sp })) }];
  return {
    id,
    owner: owner.name,
    size: 32,
    createdAt: 5,
    k: 2,
    m: 1,
    segmentSize: 4096,
    meta: sealSmall(Buffer.alloc(32, 1), Buffer.from('{}'), 'x'),
    ownerKey: sealTo(owner.box.publicKey, Buffer.alloc(32, 2), 'y'),
    segments,
    root: fileRoot({ segments }),
  };
}

function chainOf(txBatches: Tx[][]): Block[] {
  const blocks: Block[] = [];
  let prev = genesisHash(genesis);
  txBatches.forEach((txs, i) => {
    const b = makeBlock({ height: i + 1, prevHash: prev, time: 100 + i, proposer: 'sp1', term: 1, certs: [] }, txs, sps[0]!.key);
    blocks.push(b);
    prev = b.hash;
  });
  return blocks;
}

const entryOf = (b: Block) => ({ height: b.header.height, term: 1, hash: b.hash, prevHash: b.header.prevHash, data: b });

/** A ChainStore on LMDB in a temp dir, closed once its writes are on disk, the dir removed either way. */
async function withStore(fn: (store: ChainStore, dbs: ReturnType<typeof openProviderDbs>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-chain-'));
  try {
    const dbs = openProviderDbs(dir);
    const store = new ChainStore(dbs, genesis);
    await fn(store, dbs);
    await store.settled();
    await dbs.root.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('canonical encoding', () => {
  it('sorts keys at every level so equal values encode equally', () => {
    assert.equal(canonical({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } }).toString(), '{"a":{"c":[3,{"e":0,"f":1}],"d":2},"b":1}');
  });

  it('stands in for binary with its SHA-256, so a signature over it still commits to every byte', () => {
    const bytes = Buffer.from('sealed bytes');
    assert.equal(canonical({ inline: bytes }).toString(), `{"inline":{"sha256":"${createHash('sha256').update(bytes).digest('hex')}"}}`);
    assert.notDeepEqual(canonical({ inline: Buffer.from('sealed bytez') }), canonical({ inline: bytes }));
    assert.deepEqual(canonical({ inline: new Uint8Array(bytes) }), canonical({ inline: bytes }), 'a Uint8Array and a Buffer of the same bytes');
  });
});

describe('blocks', () => {
  const alice = user('alice');
  const [block] = chainOf([[alice.register]]);

  it('a well-formed block has no problems', () => {
    assert.deepEqual(blockProblems(block!, genesis), []);
  });

  it('finds a change to any part of a block', () => {
    const cases: [string, (b: Block) => void][] = [
      ['transaction field', (b) => ((b.txs[0]!.body as { username: string }).username = 'mallory')],
      ['transaction signature', (b) => (b.txs[0]!.sig = `${b.txs[0]!.sig.slice(0, -1)}${b.txs[0]!.sig.endsWith('0') ? '1' : '0'}`)],
      ['header time', (b) => (b.header.time += 1)],
      ['previous hash', (b) => (b.header.prevHash = '0'.repeat(64))],
      ['proposer', (b) => (b.header.proposer = 'sp9')],
      ['block signature', (b) => (b.sig = sps[1]!.key.sign(Buffer.from(b.hash, 'hex')))],
    ];
    for (const [what, mutate] of cases) {
      const copy = structuredClone(block!);
      mutate(copy);
      assert.ok(blockProblems(copy, genesis).length > 0, `${what} change not found`);
    }
  });

  it('a transaction leaf is the hash of its whole canonical encoding, for every kind of transaction', () => {
    const odd = user('o.d_d-1');
    const sealed = Buffer.alloc(116, 0xef);
    const inline = { ...record(odd, 'a'.repeat(32)), size: 100, segments: [], inline: sealed, root: fileRoot({ segments: [], inline: sealed }) };
    const txs = [
      odd.register,
      signTx({ type: 'file.put', file: record(odd, 'b'.repeat(32)) }, odd.name, odd.signing, CHAIN),
      signTx({ type: 'file.put', file: inline }, odd.name, odd.signing, CHAIN),
      signTx({ type: 'file.put', file: { ...inline, inline: sealed.toString('hex') } }, odd.name, odd.signing, CHAIN),
      signTx({ type: 'file.share', fileId: 'b'.repeat(32), to: 'alice', key: sealTo(alice.box.publicKey, Buffer.alloc(32), 'k') }, odd.name, odd.signing, CHAIN),
      signTx({ type: 'file.delete', fileId: 'b'.repeat(32) }, odd.name, odd.signing, CHAIN),
      signTx({ type: 'file.place', fileId: 'b'.repeat(32), placements: [{ segment: 0, shard: 1, sp: 'sp3' }] }, 'sp1', sps[0]!.key, CHAIN),
    ];
    for (const tx of txs) {
      // As a replica holds it (msgpack and parsed), and as its maker does.
      for (const held of [txP(msgpackRoundTrip(tx)), tx]) {
        assert.equal(txLeafHash(held), createHash('sha256').update(canonical(held)).digest('hex'), held.body.type);
      }
    }
  });

  it('checks commit certificates: a majority of distinct validators signing that hash', () => {
    const target = block!.hash;
    const sig = (i: number) => ({ sp: sps[i]!.id, sig: sps[i]!.key.sign(endorsementMessage(target)) });
    const withCert = (sigs: { sp: string; sig: string }[]) =>
      makeBlock({ height: 2, prevHash: block!.hash, time: 200, proposer: 'sp1', term: 1, certs: [{ height: 1, hash: target, sigs }] }, [], sps[0]!.key);
    assert.deepEqual(blockProblems(withCert([sig(0), sig(1)]), genesis), []);
    assert.ok(blockProblems(withCert([sig(0)]), genesis).length > 0, 'one signature of three is no majority');
    assert.ok(blockProblems(withCert([sig(0), sig(0)]), genesis).length > 0, 'the same signer twice counts once');
    const forged = { sp: 'sp2', sig: sps[0]!.key.sign(endorsementMessage(target)) };
    assert.ok(blockProblems(withCert([sig(0), forged]), genesis).length > 0, 'a signature by the wrong key');
    const proposal = { sp: 'sp2', sig: sps[1]!.key.sign(Buffer.from(target, 'hex')) };
    assert.ok(blockProblems(withCert([sig(0), proposal]), genesis).length > 0, 'a proposal signature is not an endorsement');
    // A replica may skip endorsements it verified on arrival, and only those.
    const knownSp1 = (_c: unknown, e: { sp: string }) => e.sp === 'sp1';
    assert.deepEqual(blockProblems(withCert([{ sp: 'sp1', sig: 'a'.repeat(128) }, sig(1)]), genesis, knownSp1), []);
    assert.ok(blockProblems(withCert([sig(0), forged]), genesis, knownSp1).length > 0, 'an unknown forged signature is still checked');
  });
});

describe('state rules', () => {
  const alice = user('alice');
  const bob = user('bob');
  const id = 'a'.repeat(32);
  const state = new Map<string, StateValue>();
  const applyTo = (target: Map<string, StateValue>, txs: Tx[], height: number) => {
    const block = makeBlock({ height, prevHash: '0'.repeat(64), time: height, proposer: 'sp1', term: 1, certs: [] }, txs, sps[0]!.key);
    const effects = applyBlock({ get: (k) => target.get(k) }, block, genesis);
    for (const [k, v] of effects.writes) v === null ? target.delete(k) : target.set(k, v);
    return txs.map((t) => effects.results.get(txId(t))!);
  };
  const apply = (txs: Tx[], height: number) => applyTo(state, txs, height);

  it('registers users once', () => {
    const [a, b] = apply([alice.register, bob.register], 1);
    assert.ok(a!.ok && b!.ok);
    const dup = user('alice');
    assert.deepEqual(apply([dup.register], 2).map((r) => r.ok), [false]);
    assert.equal((state.get(keys.user('alice')) as { signKey: string }).signKey, alice.signing.publicKey);
  });

  it('stores, shares and deletes a file only as its owner allows', () => {
    const put = signTx({ type: 'file.put', file: record(alice, id) }, 'alice', alice.signing, CHAIN);
    assert.equal(apply([put], 3)[0]!.ok, true);
    const forgedPut = signTx({ type: 'file.put', file: { ...record(alice, 'b'.repeat(32)) } }, 'alice', bob.signing, CHAIN);
    assert.equal(apply([forgedPut], 4)[0]!.ok, false, 'signed with the wrong key');
    const bobDelete = signTx({ type: 'file.delete', fileId: id }, 'bob', bob.signing, CHAIN);
    const r = apply([bobDelete], 5)[0]!;
    assert.equal(r.ok, false);
    assert.match(r.error!, /owner/);
    const share = signTx({ type: 'file.share', fileId: id, to: 'bob', key: sealTo(bob.box.publicKey, Buffer.alloc(32), 'k') }, 'alice', alice.signing, CHAIN);
    assert.equal(apply([share], 6)[0]!.ok, true);
    assert.equal(state.get(keys.shared('bob', id)), 1);
    const badRoot = record(alice, 'c'.repeat(32));
    badRoot.root = '0'.repeat(64);
    assert.equal(apply([signTx({ type: 'file.put', file: badRoot }, 'alice', alice.signing, CHAIN)], 7)[0]!.ok, false);
    assert.equal(apply([signTx({ type: 'file.delete', fileId: id }, 'alice', alice.signing, CHAIN)], 8)[0]!.ok, true);
    assert.equal(state.get(keys.file(id)), undefined);
    assert.equal(state.get(keys.shared('bob', id)), undefined);
  });

  it('takes a transaction signed for this chain, or made before chains were signed in, and refuses one for another chain', () => {
    const other = genesisHash({ ...genesis, chainId: 'another' });
    const elsewhere = signTx({ type: 'file.put', file: record(alice, 'ad'.repeat(16)) }, 'alice', alice.signing, other);
    assert.deepEqual(apply([elsewhere], 20)[0], { height: 20, ok: false, error: 'signed for another chain' });
    assert.equal(state.get(keys.file('ad'.repeat(16))), undefined);
    // The chain is signed: moved to this one, the signature no longer verifies.
    const moved = { ...elsewhere, chain: CHAIN };
    assert.equal(verifyTx(moved, alice.signing.publicKey), false);
    assert.equal(apply([moved], 21)[0]!.ok, false);
    // A chain-bound one keeps its chain through a mailbox.
    assert.equal(txP(msgpackRoundTrip(elsewhere)).chain, other);

    // A chain begun before transactions named it: no chain, signed over body, signer, nonce and
    // time. Its blocks still apply, until it takes the first transaction that names it.
    const older = (body: TxBody, signer: string, key: SigningKey, time: number): Tx => {
      const unsigned = { body, signer, nonce: time.toString(16).padStart(32, '0'), time };
      return { ...unsigned, sig: key.sign(canonical(unsigned)) };
    };
    const carol = user('carol');
    const before = new Map<string, StateValue>();
    const register = older(carol.register.body, 'carol', carol.signing, 1);
    assert.equal(txP(msgpackRoundTrip(register)).chain, undefined);
    assert.equal(applyTo(before, [register], 1)[0]!.ok, true);
    assert.equal(applyTo(before, [older({ type: 'file.put', file: record(carol, 'ae'.repeat(16)) }, 'carol', carol.signing, 2)], 2)[0]!.ok, true);
    assert.equal(applyTo(before, [signTx({ type: 'file.put', file: record(carol, 'af'.repeat(16)) }, 'carol', carol.signing, CHAIN)], 3)[0]!.ok, true);
    assert.deepEqual(applyTo(before, [older({ type: 'file.put', file: record(carol, 'a0'.repeat(16)) }, 'carol', carol.signing, 4)], 4)[0], {
      height: 4,
      ok: false,
      error: 'names no chain, and this chain has taken transactions that name it',
    });
  });

  it('applies a transaction once: a replay is skipped, whether its outcome is kept under its time or, as before, its id', () => {
    const fid = '9'.repeat(32);
    const put = signTx({ type: 'file.put', file: record(alice, fid) }, 'alice', alice.signing, CHAIN, 1_000);
    assert.equal(apply([put], 30)[0]!.ok, true);
    assert.deepEqual(state.get(keys.txResult(1_000, txId(put))), { height: 30, ok: true });
    assert.equal(state.get(keys.legacyTxResult(txId(put))), undefined, 'new outcomes go under their time only');
    assert.equal(apply([signTx({ type: 'file.delete', fileId: fid }, 'alice', alice.signing, CHAIN, 1_001)], 31)[0]!.ok, true);
    // Its submitter (a client retrying after a leader died) learns the first outcome, not a timeout.
    assert.deepEqual(apply([put], 32)[0], { height: 30, ok: true }, 'a replayed put is skipped: the deleted file does not come back');
    assert.equal(state.get(keys.file(fid)), undefined);

    // An outcome an older build kept under the transaction's id.
    const older = signTx({ type: 'file.put', file: record(alice, '8'.repeat(32)) }, 'alice', alice.signing, CHAIN, 999);
    state.set(keys.legacyTxResult(txId(older)), { height: 2, ok: true });
    assert.deepEqual(apply([older], 33)[0], { height: 2, ok: true }, 'final before the change, so not applied again');
    assert.equal(state.get(keys.file('8'.repeat(32))), undefined);

    const times = [0, 1, 1_000, 2 ** 40, Number.MAX_SAFE_INTEGER];
    const ordered = times.map((t) => keys.txResult(t, 'f'.repeat(64)));
    assert.deepEqual([...ordered].sort(), ordered, 'outcome keys sort by time');
  });

  it('digests a state the same whichever key its outcomes are kept under', () => {
    const id = 'e'.repeat(64);
    const result = { height: 3, ok: true };
    const user = { username: 'x' };
    const asBefore = stateDigest([[keys.legacyTxResult(id), result], [keys.user('x'), user]]);
    assert.equal(stateDigest([[keys.txResult(77, id), result], [keys.user('x'), user]]), asBefore);
    assert.equal(stateDigest([[keys.user('x'), user], [keys.txResult(77, id), result]]), asBefore, 'in any order');
    assert.notEqual(stateDigest([[keys.txResult(77, id), { height: 4, ok: true }], [keys.user('x'), user]]), asBefore);
  });

  it('counts segments with a short first one, and refuses a first segment longer than the rest', () => {
    const segment = record(alice, 'e'.repeat(32)).segments[0]!;
    const withFirst = (idChar: string, size: number, first: number, count: number): FileRecord => {
      const segments = Array.from({ length: count }, () => segment);
      return { ...record(alice, idChar.repeat(32)), size, firstSegmentSize: first, segments, root: fileRoot({ segments }) };
    };
    assert.equal(expectedSegments(4096, 8192, 4096), 1);
    assert.equal(expectedSegments(4097, 8192, 4096), 2);
    assert.equal(expectedSegments(4096 + 8192 + 1, 8192, 4096), 3);
    assert.equal(expectedSegments(0, 8192), 1);
    const put = (f: FileRecord, height: number) => apply([signTx({ type: 'file.put', file: f }, 'alice', alice.signing, CHAIN)], height)[0]!;
    assert.equal(put(withFirst('e', 4097, 4096, 2), 13).ok, true);
    assert.equal(put(withFirst('f', 4097, 4096, 1), 14).ok, false, 'one segment cannot hold 4097 bytes when the first holds 4096');
    const longer = put({ ...withFirst('0', 8193, 8192, 1), segmentSize: 4096 }, 15);
    assert.equal(longer.ok, false);
    assert.match(longer.error!, /first segment/);
  });

  it('stores a small file inline only when its bytes, size, segments and root agree', () => {
    const inlineRecord = (idChar: string, size: number, sealed: number): FileRecord => {
      const inline = Buffer.alloc(sealed, 0xab);
      return { ...record(alice, idChar.repeat(32)), size, segments: [], inline, root: fileRoot({ segments: [], inline }) };
    };
    const put = (f: FileRecord, height: number) => apply([signTx({ type: 'file.put', file: f }, 'alice', alice.signing, CHAIN)], height)[0]!;
    assert.equal(put(inlineRecord('1', 100, 116), 20).ok, true);
    assert.deepEqual((state.get(keys.file('1'.repeat(32))) as { record: FileRecord }).record.inline, Buffer.alloc(116, 0xab));
    assert.equal(put(inlineRecord('2', 0, 16), 21).ok, true, 'an empty file is its tag alone');
    const short = put(inlineRecord('3', 100, 115), 22);
    assert.equal(short.ok, false);
    assert.match(short.error!, /inline bytes/);
    const withShards = put({ ...inlineRecord('4', 100, 116), segments: record(alice, '4'.repeat(32)).segments }, 23);
    assert.equal(withShards.ok, false, 'inline and shards at once');
    const otherRoot = put({ ...inlineRecord('5', 100, 116), root: fileRoot(record(alice, '5'.repeat(32))) }, 24);
    assert.equal(otherRoot.ok, false);
    assert.match(otherRoot.error!, /Merkle root/);
    assert.equal(put({ ...record(alice, '6'.repeat(32)), segments: [], root: fileRoot({ segments: [] }) }, 25).ok, false, 'no segments and no inline bytes');
  });

  it('still reads and applies inline bytes in hex, as records made before they went binary hold them', () => {
    const sealed = Buffer.alloc(116, 0xcd);
    const hex = sealed.toString('hex');
    // What the previous build signed: the record with its bytes as a hex string.
    const legacy = { ...record(alice, '7'.repeat(32)), size: 100, segments: [], inline: hex, root: fileRoot({ segments: [], inline: sealed }) };
    const tx = signTx({ type: 'file.put', file: legacy }, 'alice', alice.signing, CHAIN);
    const parsed = txP(msgpackRoundTrip(tx));
    assert.equal(verifyTx(parsed, alice.signing.publicKey), true, 'its signature still verifies');
    assert.equal(inlineBytes(parsed), 116);
    assert.deepEqual(inlineSealed((parsed.body as { file: FileRecord }).file), sealed);
    assert.equal(apply([parsed], 26)[0]!.ok, true);
    assert.throws(() => txP(msgpackRoundTrip({ ...tx, body: { ...tx.body, file: { ...legacy, inline: `${hex}a` } } })), /inline/);
    const binary = signTx({ type: 'file.put', file: { ...legacy, id: '8'.repeat(32), inline: sealed } }, 'alice', alice.signing, CHAIN);
    assert.equal(inlineBytes(txP(msgpackRoundTrip(binary))), 116);
  });

  it('lets only a validator move shards, and keeps a segment on distinct SPs', () => {
    const fid = 'd'.repeat(32);
    assert.equal(apply([signTx({ type: 'file.put', file: record(alice, fid) }, 'alice', alice.signing, CHAIN)], 9)[0]!.ok, true);
    const byUser = signTx({ type: 'file.place', fileId: fid, placements: [{ segment: 0, shard: 0, sp: 'sp2' }] }, 'alice', alice.signing, CHAIN);
    assert.equal(apply([byUser], 10)[0]!.ok, false);
    const doubled = signTx({ type: 'file.place', fileId: fid, placements: [{ segment: 0, shard: 0, sp: 'sp2' }] }, 'sp1', sps[0]!.key, CHAIN);
    assert.equal(apply([doubled], 11)[0]!.ok, false, 'two shards of a segment on sp2');
    const swap = signTx({ type: 'file.place', fileId: fid, placements: [{ segment: 0, shard: 0, sp: 'sp2' }, { segment: 0, shard: 1, sp: 'sp1' }] }, 'sp1', sps[0]!.key, CHAIN);
    assert.equal(apply([swap], 12)[0]!.ok, true);
  });
});

describe('inline bytes per block', () => {
  const alice = user('alice');
  const inlinePut = (i: number) => {
    const inline = Buffer.alloc(LIMITS.maxInlineBytes);
    const file = { ...record(alice, i.toString(16).padStart(32, '0')), size: LIMITS.maxInlineBytes - 16, segments: [], inline, root: fileRoot({ segments: [], inline }) };
    return signTx({ type: 'file.put', file }, 'alice', alice.signing, CHAIN);
  };
  const perBlock = MAX_INLINE_BYTES_PER_BLOCK / LIMITS.maxInlineBytes;

  it('a proposer takes only what one block may carry, in order', () => {
    const pending = [alice.register, ...Array.from({ length: perBlock + 2 }, (_, i) => inlinePut(i))];
    const first = takeBlockTxs(pending);
    assert.equal(first.length, 1 + perBlock, 'the register and as many inline files as fit');
    assert.equal(first[0], alice.register);
    assert.equal(pending.length, 2);
    assert.equal(takeBlockTxs(pending).length, 2);
    assert.equal(pending.length, 0);
  });

  it('a block over the bound is refused', () => {
    const [over] = chainOf([Array.from({ length: perBlock + 1 }, (_, i) => inlinePut(i))]);
    assert.match(blockProblems(over!, genesis).join('; '), /inline file bytes/);
    const [within] = chainOf([Array.from({ length: perBlock }, (_, i) => inlinePut(i))]);
    assert.deepEqual(blockProblems(within!, genesis), []);
  });

  it('a changed inline byte breaks the block root and the signature', () => {
    const tx = inlinePut(0);
    const [block] = chainOf([[tx]]);
    const changed = Buffer.from((tx.body as { file: FileRecord }).file.inline!);
    changed[100] = changed[100]! ^ 1;
    const tampered = structuredClone(block!);
    (tampered.txs[0]!.body as { file: FileRecord }).file.inline = changed;
    assert.match(blockProblems(tampered, genesis).join('; '), /Merkle root/);
    assert.equal(verifyTx(tampered.txs[0]!, alice.signing.publicKey), false);
    assert.equal(verifyTx(tx, alice.signing.publicKey), true);
  });
});

describe('signature checks', () => {
  it('answer a second check of the same object, key and signature from memory, and only that', () => {
    const alice = user('alice');
    const bob = user('bob');
    const tx = signTx({ type: 'file.put', file: record(alice, '1'.repeat(32)) }, 'alice', alice.signing, CHAIN);
    assert.equal(verifyTx(tx, alice.signing.publicKey), true);
    assert.equal(verifyTx(tx, alice.signing.publicKey), true, 'the same check again');
    assert.equal(verifyTx(tx, bob.signing.publicKey), false, 'another key is checked, not remembered');
    const forged = { ...tx, sig: bob.signing.sign(Buffer.from('something else')) };
    assert.equal(verifyTx(forged, alice.signing.publicKey), false, 'a copy with another signature is checked');
    // Even the same object, its signature swapped after a check that passed: checked again.
    const swapped = { ...tx };
    assert.equal(verifyTx(swapped, alice.signing.publicKey), true);
    swapped.sig = forged.sig;
    assert.equal(verifyTx(swapped, alice.signing.publicKey), false);
  });
});

describe('the chain store', () => {
  it('tracks the last certified height through appends, truncation and a reopen', async () => {
    await withStore(async (store, dbs) => {
      const [b1] = chainOf([[]]);
      const cert = { height: 1, hash: b1!.hash, sigs: [{ sp: 'sp1', sig: 'a'.repeat(128) }] };
      const b2 = makeBlock({ height: 2, prevHash: b1!.hash, time: 200, proposer: 'sp1', term: 1, certs: [cert] }, [], sps[0]!.key);
      assert.equal(store.certifiedHeight(), 0);
      store.persist({ term: 1, votedFor: 'sp1', commit: 0 }, undefined, [entryOf(b1!), entryOf(b2)]);
      assert.equal(store.certifiedHeight(), 1);
      await store.settled();
      assert.equal(new ChainStore(dbs, genesis).certifiedHeight(), 1, 'found again on start');
      store.persist(undefined, 1, []);
      assert.equal(store.certifiedHeight(), 0, 'the certificate went with the truncated block');
      assert.equal(store.block(2), undefined, 'a truncated block is not served from the cache');
      assert.equal(store.lastHeight(), 1);
    });
  });
});

describe('the chain store: endorsements', () => {
  it("keep only endorsements of this log's own blocks, and follow a block replaced by truncation", async () => {
    await withStore(async (store) => {
      const [b1, x2] = chainOf([[], []]);
      const y2 = makeBlock({ height: 2, prevHash: b1!.hash, time: 999, proposer: 'sp2', term: 2, certs: [] }, [], sps[1]!.key);
      const e = (sp: string) => ({ sp, sig: sp.slice(-1).repeat(128) });
      store.persist({ term: 1, votedFor: 'sp1', commit: 0 }, undefined, [entryOf(b1!), entryOf(x2!)]);
      store.saveEndorsement(3, 'c'.repeat(64), e('sp2'));
      assert.equal(store.endorsements(3), undefined, 'no block at 3 here: ignored');
      store.saveEndorsement(2, y2.hash, e('sp2'));
      assert.equal(store.endorsements(2), undefined, 'another block than ours at 2: ignored');
      store.saveEndorsement(2, x2!.hash, e('sp2'));
      assert.deepEqual(store.endorsements(2), { hash: x2!.hash, sigs: [e('sp2')] });

      // A new leader's block replaces ours at 2: the endorsements of the old one go with it.
      store.persist({ term: 2, votedFor: 'sp2', commit: 1 }, 1, [{ ...entryOf(y2), term: 2 }]);
      assert.equal(store.endorsements(2), undefined, 'truncated with its block');
      store.saveEndorsement(2, x2!.hash, e('sp3'));
      assert.equal(store.endorsements(2), undefined, 'a late endorsement of the truncated block: ignored');
      store.saveEndorsement(2, y2.hash, e('sp1'));
      store.saveEndorsement(2, y2.hash, e('sp2'));
      assert.deepEqual(store.endorsements(2), { hash: y2.hash, sigs: [e('sp1'), e('sp2')] }, 'the new block gathers its own');
      await store.settled();
    });
  });
});

describe('the chain store: group commits', () => {
  it('makes a step readable at once and durable later, in order; listings merge what is on its way to disk', async () => {
    await withStore(async (store, dbs) => {
      const alice = user('alice');
      const [a, b] = ['a'.repeat(32), 'b'.repeat(32)];
      const put = (id: string) => signTx({ type: 'file.put', file: record(alice, id) }, 'alice', alice.signing, CHAIN);
      const blocks = chainOf([[alice.register, put(a)], [put(b)], [signTx({ type: 'file.delete', fileId: a }, 'alice', alice.signing, CHAIN)]]);
      const step = (i: number) => {
        const bl = blocks[i]!;
        store.write(() => {
          store.persist(undefined, undefined, [entryOf(bl)]);
          store.applyFinal(bl);
        });
      };
      const order: string[] = [];
      step(0);
      store.onDurable(() => order.push('first'));
      await store.settled();
      step(1);
      store.onDurable(() => order.push('second'));
      // Block 2's file is readable and listed before LMDB has it.
      assert.equal(dbs.state.get(keys.file(b)), undefined, 'not committed yet within the same turn');
      assert.equal((store.get(keys.file(b)) as { record: FileRecord } | undefined)?.record.id, b);
      assert.deepEqual([...store.range('o/alice/')].map(([k]) => k), [keys.owned('alice', a), keys.owned('alice', b)]);
      // Paged: one key on disk, the next still on its way there, then none.
      assert.deepEqual(store.keysAfter('f/', undefined, 1), [keys.file(a)]);
      assert.deepEqual(store.keysAfter('f/', keys.file(a), 1), [keys.file(b)]);
      assert.deepEqual(store.keysAfter('f/', keys.file(b), 10), []);
      assert.deepEqual(store.keysAfter('f/', undefined, 10), [keys.file(a), keys.file(b)]);
      await store.settled();
      // Block 3 removes a file that is on disk: gone from reads and listings at once.
      step(2);
      store.onDurable(() => order.push('third'));
      assert.ok(dbs.state.get(keys.file(a)) !== undefined, 'still on disk');
      assert.equal(store.get(keys.file(a)), undefined);
      assert.deepEqual([...store.range('o/alice/')].map(([k]) => k), [keys.owned('alice', b)]);
      await store.settled();
      assert.deepEqual(order, ['first', 'second', 'third']);
      const reopened = new ChainStore(dbs, genesis);
      assert.equal(reopened.applied(), 3);
      assert.equal(reopened.lastHeight(), 3);
      assert.deepEqual([...reopened.range('o/alice/')].map(([k]) => k), [keys.owned('alice', b)]);
    });
  });
});

describe('verifying a stored replica', () => {
  it('passes a clean replica and names the height of a changed byte', async () => {
    await withStore(async (store, dbs) => {
      const alice = user('alice');
      const blocks = chainOf([[alice.register], [signTx({ type: 'file.put', file: record(alice, 'e'.repeat(32)) }, 'alice', alice.signing, CHAIN)], []]);
      store.persist({ term: 1, votedFor: 'sp1', commit: 3 }, undefined, blocks.map(entryOf));
      for (const b of blocks) store.applyFinal(b);
      const clean = await verifyReplica('sp1', store);
      assert.equal(clean.ok, true, JSON.stringify(clean.problems));
      assert.equal(clean.height, 3);

      await store.settled(); // the tampering below goes to the disk, under what the store wrote
      const tampered = structuredClone(blocks[1]!);
      tampered.txs[0]!.time += 1;
      dbs.blocks.putSync(2, tampered);
      const bad = await verifyReplica('sp1', store);
      assert.equal(bad.ok, false);
      assert.ok(bad.problems.some((p) => p.height === 2), JSON.stringify(bad.problems));
      assert.ok(bad.problems.every((p) => p.height >= 2));
    });
  });
});

describe('certificates', () => {
  it('are refused unverified when they name an SP twice or more SPs than there are', () => {
    const alice = user('alice');
    const [first] = chainOf([[alice.register]]);
    const endorse = (sp: (typeof sps)[number]) => ({ sp: sp.id, sig: sp.key.sign(endorsementMessage(first!.hash)) });
    const block = (sigs: { sp: string; sig: string }[]) => makeBlock({ height: 2, prevHash: first!.hash, time: 1, proposer: 'sp1', term: 1, certs: [{ height: 1, hash: first!.hash, sigs }] }, [], sps[0]!.key);
    assert.deepEqual(blockProblems(block([endorse(sps[0]!), endorse(sps[1]!)]), genesis), [], 'a majority, each SP once');
    for (const sigs of [[endorse(sps[0]!), endorse(sps[0]!)], [...sps.map(endorse), endorse(sps[2]!)]]) {
      assert.deepEqual(blockProblems(block(sigs), genesis), ['certificate for height 1 names an SP twice or more SPs than there are']);
    }
  });
});

describe('cairn verify across replicas', () => {
  it('fails replicas that each verify alone but hold other blocks at a height they all have', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-verify-'));
    try {
      writeClusterFile(join(dir, 'cluster.json'), { version: 1, genesis, providers: sps.map((sp, i) => ({ id: sp.id, address: `127.0.0.1:${7101 + i}` })), k: 2, m: 1, segmentSize: 4 * 1024 * 1024 });
      const alice = user('alice');
      const put = (id: string) => signTx({ type: 'file.put', file: record(alice, id) }, 'alice', alice.signing, CHAIN);
      const histories = { sp1: chainOf([[alice.register], [put('a'.repeat(32))]]), sp2: chainOf([[alice.register], [put('b'.repeat(32))]]) };
      for (const [id, blocks] of [['sp1', histories.sp1], ['sp2', histories.sp2], ['sp3', histories.sp1]] as const) {
        const dbs = openProviderDbs(lmdbDir(dir, id));
        const store = new ChainStore(dbs, genesis);
        store.persist({ term: 1, votedFor: 'sp1', commit: blocks.length }, undefined, blocks.map(entryOf));
        for (const b of blocks) store.applyFinal(b);
        await store.settled();
        await dbs.root.close();
      }
      const run = () => {
        try {
          return { code: 0, out: execFileSync(process.execPath, [CLI, 'verify', '--data-dir', dir], { encoding: 'utf8', env: { ...process.env, CAIRN_CONFIG: '' } }) };
        } catch (err) {
          return { code: (err as { status: number }).status, out: (err as { stdout: string }).stdout };
        }
      };
      const { code, out } = run();
      assert.equal(code, 1, out);
      assert.match(out, /replicas differ at height 2: sp1 [0-9a-f]{12}, sp2 [0-9a-f]{12}, sp3 [0-9a-f]{12}/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('block size on the wire', () => {
  const alice = user('alice');
  /** A file.put whose record names `segments` segments of three shards (~0.27 KiB each). */
  const bigPut = (i: number, segments: number) => {
    const segs = Array.from({ length: segments }, (_, s) => ({ sealedLength: 4 * 1024 * 1024 + 16, shards: ['sp1', 'sp2', 'sp3'].map((sp, j) => ({ hash: `${(s + j) % 10}`.repeat(64), sp })) }));
    const file = { ...record(alice, i.toString(16).padStart(32, '0')), size: segments * 4 * 1024 * 1024, segmentSize: 4 * 1024 * 1024, segments: segs, root: fileRoot({ segments: segs }) };
    return signTx({ type: 'file.put', file }, 'alice', alice.signing, CHAIN);
  };
  const inlinePut = (i: number) => {
    const inline = Buffer.alloc(LIMITS.maxInlineBytes, 7);
    const file = { ...record(alice, `f${i.toString(16).padStart(31, '0')}`), size: LIMITS.maxInlineBytes - 16, segments: [], inline, root: fileRoot({ segments: [], inline }) };
    return signTx({ type: 'file.put', file }, 'alice', alice.signing, CHAIN);
  };
  const packr = new Packr({ useRecords: false, structuredClone: false }); // as mailbox frames are packed

  it('is never undercounted, whatever the block holds', () => {
    const blocks = chainOf([[alice.register], [inlinePut(1), inlinePut(2)], [bigPut(3, 2000)], [bigPut(4, 1), inlinePut(5), alice.register]]);
    const withCerts = makeBlock(
      { height: 9, prevHash: blocks[3]!.hash, time: 1, proposer: 'sp1', term: 1, certs: Array.from({ length: 64 }, (_, h) => ({ height: h + 1, hash: 'a'.repeat(64), sigs: sps.map((s) => ({ sp: s.id, sig: 'b'.repeat(128) })) })) },
      [bigPut(6, 10)],
      sps[0]!.key,
    );
    for (const block of [...blocks, withCerts]) {
      const packed = packr.pack(block).length;
      const counted = blockWireBytes(block);
      assert.ok(counted >= packed, `block ${block.header.height}: counted ${counted} < ${packed} packed`);
      assert.ok(counted <= 2 * packed + 1024, `block ${block.header.height}: counted ${counted}, not wildly over ${packed}`);
    }
  });

  it('a proposer cuts blocks at MAX_BLOCK_BYTES; a transaction bigger than that gets a block of its own', () => {
    const large = bigPut(10, 6000); // ~1.6 MiB: two fit, a third does not
    const huge = bigPut(11, 20_000); // above the bound alone
    assert.ok(txWireBytes(huge) > MAX_BLOCK_BYTES);
    const pending = [alice.register, large, bigPut(12, 6000), bigPut(13, 6000), huge, alice.register];
    const sizes: number[][] = [];
    while (pending.length > 0) sizes.push(takeBlockTxs(pending).map(txWireBytes));
    assert.deepEqual(sizes.map((s) => s.length), [3, 1, 1, 1]);
    for (const s of sizes) assert.ok(s.length === 1 || s.reduce((a, b) => a + b, 0) <= MAX_BLOCK_BYTES);
  });
});
