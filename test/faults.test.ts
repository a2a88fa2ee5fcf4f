/**
 * Faults caused for real on real SP processes: one SP down, stalled (SIGSTOP), its disk lost,
 * its shards corrupted on disk, killed -9 in the middle of writes; and garbage at its port from
 * peers with and without the cluster key.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { waitFor } from './support/cluster.js';
import { Api } from './support/http.js';
import { ManualCluster } from './support/manual-cluster.js';
import { allHealthy, repairAndWait } from './support/repair.js';
import { MailboxClient } from '../src/mailbox/client.js';
import { encodeFrame } from '../src/mailbox/frame.js';
import { tlsPskTransport } from '../src/mailbox/transport.js';

const password = 'fault test password';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The SP must close a connection that sent it garbage: resolves on close or error, fails after a deadline. */
function closedWithin(socket: Socket, what: string, ms = 20_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${what}: the SP neither closed nor refused it within ${ms} ms`));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.once('error', done);
    socket.once('close', done);
  });
}

async function signedIn(base: string): Promise<Api> {
  const api = new Api(base);
  const name = `u${randomBytes(4).toString('hex')}`;
  assert.equal((await api.register(name, password)).status, 201);
  assert.equal((await api.signIn(name, password)).status, 200);
  return api;
}

async function expectAll(api: Api, files: Map<string, Buffer>): Promise<void> {
  for (const [id, bytes] of files) {
    const d = await api.download(id);
    assert.equal(d.status, 200, `download ${id}`);
    assert.ok(d.bytes.equals(bytes), `file ${id} differs`);
  }
}

async function spShards(api: Api, id: string): Promise<{ shards: number; quarantined?: number; scrub: any }> {
  const c = await api.call('GET', '/api/v1/cluster');
  return c.body.providers.find((p: { id: string }) => p.id === id);
}

describe('one SP down, stalled, wiped or rotten', () => {
  let cluster: ManualCluster;
  let api: Api;
  const files = new Map<string, Buffer>();
  let degradedId = '';
  const upload = async (name: string, bytes: Buffer) => {
    const r = await api.upload([{ name, bytes }]);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    files.set(r.body[0].id, bytes);
    return r.body[0].id as string;
  };

  before(async () => {
    cluster = await ManualCluster.create({ providers: 3, clients: 1, args: ['--segment-size', String(256 * 1024)] });
    api = await signedIn(cluster.clients[0]!.url);
    await upload('healthy.bin', randomBytes(1024 * 1024 + 7));
  });
  after(async () => cluster?.stop());

  it('uploads degraded, downloads and lists with one SP down', async () => {
    await cluster.stopProvider('sp3');
    try {
      const id = await upload('degraded.bin', randomBytes(700_000));
      degradedId = id;
      const details = await api.call('GET', `/api/v1/files/${id}`);
      assert.equal(details.status, 200);
      assert.equal(details.body.health, 'degraded');
      for (const seg of details.body.segments) {
        const placed = seg.shards.filter((s: { sp: string | null }) => s.sp !== null);
        assert.equal(placed.length, 2, 'two of three shards stored');
        assert.ok(placed.every((s: { sp: string }) => s.sp !== 'sp3'));
      }
      await expectAll(api, files);
      const list = await api.call('GET', '/api/v1/files');
      assert.equal(list.status, 200);
      assert.equal(list.body.length, files.size);
    } finally {
      await cluster.startProvider('sp3'); // later tests need it whatever happened here
    }
  });

  it('does not wait on a stalled SP: hedged reads, degraded writes', async () => {
    await waitFor('sp3 to be back in the chain', async () => (await api.call('GET', '/api/v1/chain')).body.replicas.every((r: { up: boolean }) => r.up));
    // A file with a data shard (k = 2: shards 0 and 1, the ones a reader asks for) on sp1.
    const onSp1 = async (id: string) => ((await api.call('GET', `/api/v1/files/${id}`)).body.segments as { shards: { sp: string | null }[] }[]).some((seg) => seg.shards.slice(0, 2).some((sh) => sh.sp === 'sp1'));
    let healthyId = [...files.keys()][0]!;
    for (let i = 0; i < 10 && !(await onSp1(healthyId)); i++) healthyId = await upload(`reads-sp1-${i}.bin`, randomBytes(1024 * 1024));
    assert.ok(await onSp1(healthyId), 'a file reads a data shard from sp1');
    const hedges = async () => {
      const h = (await api.call('GET', '/api/v1/cluster')).body.hedges as { shardReads: number; chainReads: number };
      return h.shardReads + h.chainReads;
    };
    const hedgesBefore = await hedges();
    cluster.pauseProvider('sp1');
    try {
      // At once, before the client has a reason to think sp1 down: what it asks of sp1 (the file's
      // record, a data shard) stalls, and a hedge asks another SP, or for the parity shard, instead
      // of waiting out the timeout.
      const healthy = await api.download(healthyId);
      assert.equal(healthy.status, 200);
      assert.ok(healthy.bytes.equals(files.get(healthyId)!));
      assert.ok((await hedges()) > hedgesBefore, 'the read was hedged past the stalled SP');
      console.log(`# with sp1 stalled: hedged ${JSON.stringify((await api.call('GET', '/api/v1/cluster')).body.hedges)}`);

      // The degraded file has shards on sp1 and sp2 only: with sp1 stalled it cannot be read
      // now, and says so clearly instead of breaking off or returning wrong bytes.
      const unreadable = await api.download(degradedId);
      assert.equal(unreadable.status, 503);
      assert.match(unreadable.bytes.toString(), /shards needed could be fetched/);
      await expectAll(api, new Map([...files].filter(([id]) => id !== degradedId)));

      // A write goes on without the stalled SP: recorded degraded, and read back whole.
      const bytes = randomBytes(300_000);
      const id = await upload('while-stalled.bin', bytes);
      const details = (await api.call('GET', `/api/v1/files/${id}`)).body;
      assert.equal(details.health, 'degraded');
      for (const seg of details.segments) assert.ok(seg.shards.every((s: { sp: string | null }) => s.sp !== 'sp1'), 'no shard recorded on the stalled SP');
      assert.ok((await api.download(id)).bytes.equals(bytes));
      assert.equal((await api.call('GET', '/api/v1/files')).status, 200);

      // The cluster view says sp1 is down and does not know what it holds (not that it holds nothing),
      // and a chain verification does not wait a minute for it: it is reported not answering.
      const sp1 = await waitFor('sp1 reported down', async () => {
        const p = ((await api.call('GET', '/api/v1/cluster')).body.providers as { id: string; up: boolean; shards: number | null; bytes: number | null }[]).find((x) => x.id === 'sp1')!;
        return p.up ? undefined : p;
      });
      assert.deepEqual([sp1.shards, sp1.bytes], [null, null]);
      const verdict = await Promise.race([
        api.call('GET', '/api/v1/chain/verify'),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the verification waited for the stalled SP')), 30_000).unref()),
      ]);
      const row = (verdict.body.replicas as { provider: string; ok: boolean; problems: { problem: string }[] }[]).find((r) => r.provider === 'sp1')!;
      assert.equal(row.ok, false);
      assert.match(row.problems[0]!.problem, /not answering/);
    } catch (err) {
      console.log(cluster.output.slice(-40).join('\n'));
      throw err;
    } finally {
      cluster.resumeProvider('sp1');
    }
  });

  it('repairs degraded files once every SP is back', async () => {
    await waitFor('all SPs in the chain', async () => (await api.call('GET', '/api/v1/chain')).body.replicas.every((r: { up: boolean }) => r.up));
    const { code, out } = await cluster.repair(); // `cairn repair`, as an operator runs it
    assert.equal(code, 0, out);
    const run = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!);
    assert.ok(run.shardsRebuilt > 0, out);
    await allHealthy(api);
    await expectAll(api, files);
  });

  it('rebuilds a wiped SP: chain catch-up and shard repair', async () => {
    const before = await spShards(api, 'sp2');
    assert.ok(before.shards > 0);
    await cluster.stopProvider('sp2');
    rmSync(join(cluster.dataDir, 'sp2', 'lmdb'), { recursive: true, force: true });
    await cluster.startProvider('sp2');
    await waitFor('sp2 to catch up to the same head', async () => {
      const c = await api.call('GET', '/api/v1/chain');
      const heads = new Set(c.body.replicas.map((r: { height: number; head: string }) => `${r.height}:${r.head}`));
      return c.body.replicas.every((r: { up: boolean }) => r.up) && heads.size === 1;
    }, 30_000);
    assert.equal((await spShards(api, 'sp2')).shards, 0, 'the wiped SP starts empty');
    await repairAndWait(api);
    assert.equal((await spShards(api, 'sp2')).shards, before.shards, 'repair restored every shard of sp2');
    await allHealthy(api);
    await expectAll(api, files);
  });

  it('serves right bytes past rotten shards; scrub finds them and repair replaces them', async () => {
    const before = await spShards(api, 'sp1');
    await cluster.stopProvider('sp1');
    const env = open({ path: join(cluster.dataDir, 'sp1', 'lmdb'), maxDbs: 8 });
    const shards = env.openDB<Buffer, string>({ name: 'shards', encoding: 'binary' });
    let flipped = 0;
    let dataShardsFlipped = 0; // k = 2: shards 0 and 1 are data shards, read first by every download
    for (const { key, value } of shards.getRange({ limit: 6 })) {
      if (/\/[01]$/.test(key)) dataShardsFlipped += 1;
      const bad = Buffer.from(value);
      bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0x40;
      shards.putSync(key, bad);
      flipped += 1;
    }
    await env.close();
    assert.equal(flipped, 6);
    await cluster.startProvider('sp1');
    await waitFor('sp1 back', async () => (await api.call('GET', '/api/v1/chain')).body.replicas.every((r: { up: boolean }) => r.up));

    await expectAll(api, files); // every byte right although six shards on sp1 are rotten
    // SPs serve without re-hashing; the client found the rotten data shards and reported them.
    await waitFor('sp1 to remove the rotten shards readers reported', async () => ((await spShards(api, 'sp1')).quarantined ?? 0) >= dataShardsFlipped, 10_000);
    const run = await repairAndWait(api);
    const after = await spShards(api, 'sp1');
    assert.ok((after.quarantined ?? 0) >= flipped, `sp1 removed ${after.quarantined} rotten shards, expected ${flipped}`);
    assert.equal(after.shards, before.shards, 'repair put back every removed shard');
    console.log(`# corruption: ${flipped} shards flipped; sp1 quarantined ${after.quarantined}; scrub found ${after.scrub?.bad ?? 0}; repair rebuilt ${run.shardsRebuilt}`);
    await allHealthy(api);
    await expectAll(api, files);
  });

  it('cairn repair finds the leader past a stalled one, and says so when the pass outlasts --wait-ms', async () => {
    const stalled = (await api.call('GET', '/api/v1/chain')).body.leader as string;
    assert.match(stalled, /^sp\d$/);
    cluster.pauseProvider(stalled); // its socket accepts, its process answers nothing
    try {
      // The pass needs every SP's shards, so with one stalled it runs for minutes: longer than 1 s.
      const { code, out } = await cluster.repair(['--wait-ms', '1000'], 60_000);
      assert.equal(code, 1, out);
      const still = /TIMEOUT: the repair pass on (sp\d) is still running after 1 s/.exec(out);
      assert.ok(still, out);
      assert.notEqual(still[1], stalled, `the pass ran on the new leader, not on the stalled ${stalled}`);
    } finally {
      cluster.resumeProvider(stalled);
    }
  });
});

describe('a cluster of one SP (k 1, m 0)', () => {
  let cluster: ManualCluster;
  before(async () => {
    cluster = await ManualCluster.create({ providers: 1, clients: 1, args: ['--k', '1', '--m', '0'] });
  });
  after(async () => cluster?.stop());

  it('stores a file of several segments as one shard each, and reads it back', async () => {
    const api = await signedIn(cluster.clients[0]!.url);
    const bytes = randomBytes(300_000);
    const up = await api.upload([{ name: 'single.bin', bytes }]);
    assert.equal(up.status, 201, JSON.stringify(up.body)); // the chain refused every such record before
    const record = (await api.call('GET', `/api/v1/files/${up.body[0].id}`)).body as { segments: { shards: { sp: string }[] }[] };
    assert.ok(record.segments.length >= 2);
    assert.ok(record.segments.every((seg) => seg.shards.length === 1 && seg.shards[0]!.sp === 'sp1'));
    assert.ok((await api.download(up.body[0].id)).bytes.equals(bytes));
  });
});

describe('kill -9 in the middle of LMDB writes', () => {
  let cluster: ManualCluster;
  before(async () => {
    cluster = await ManualCluster.create({ providers: 1, clients: 0, args: ['--k', '1', '--m', '0'] });
  });
  after(async () => cluster?.stop());

  it('restarts with every acknowledged shard intact, every time', async () => {
    const key = Buffer.from(readFileSync(join(cluster.dataDir, 'cluster.key'), 'utf8').trim(), 'hex');
    const address = cluster.providers.get('sp1')!.address;
    const acked = new Map<string, string>();
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const client = new MailboxClient({ id: 'test', address, transport: tlsPskTransport(key), requestTimeoutMs: 10_000, maxInFlight: 16, maxQueued: 4096 });
      let writing = true;
      const writers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; writing && i < 2000; i++) {
          const bytes = randomBytes(64 * 1024 + ((i * 131) % 4096));
          const k = `${randomBytes(16).toString('hex')}/${w}/0`;
          try {
            await client.request('shard.put', { key: k, hash: sha(bytes) }, bytes);
            acked.set(k, sha(bytes));
          } catch {
            return; // the SP died mid-request: not acknowledged, no promise made
          }
        }
      });
      const target = acked.size + 50 + Math.floor(Math.random() * 100);
      await waitFor('writes under way', () => acked.size >= target, 20_000, 5);
      await cluster.killProvider('sp1');
      writing = false;
      await Promise.all(writers);
      await client.close();
      await cluster.startProvider('sp1');
    }
    const reader = new MailboxClient({ id: 'test', address, transport: tlsPskTransport(key), requestTimeoutMs: 10_000, maxInFlight: 32, maxQueued: 100_000 });
    await Promise.all(
      [...acked].map(async ([k, hash]) => {
        const reply = await reader.request('shard.get', { key: k });
        assert.equal(sha(reply.payload!), hash, `shard ${k}`);
      }),
    );
    await reader.close();
    console.log(`# kill during write: ${rounds} kills, ${acked.size} acknowledged shards all read back intact`);
  });
});

describe('garbage at an SP port, with and without the cluster key', () => {
  let cluster: ManualCluster;
  let api: Api;
  before(async () => {
    cluster = await ManualCluster.create({ providers: 3, clients: 1 });
    api = await signedIn(cluster.clients[0]!.url);
  });
  after(async () => cluster?.stop());

  it('stays up, keeps serving, and stores nothing from strangers', async () => {
    const up = await api.upload([{ name: 'before.bin', bytes: randomBytes(50_000) }]);
    assert.equal(up.status, 201);
    const pid = cluster.pid('sp1');
    const shardsBefore = (await spShards(api, 'sp1')).shards;
    const [host, portText] = cluster.providers.get('sp1')!.address.split(':');
    const port = Number(portText);
    const clusterKey = Buffer.from(readFileSync(join(cluster.dataDir, 'cluster.key'), 'utf8').trim(), 'hex');

    const frames: Uint8Array[][] = [];
    const valid = (header: unknown, payload?: Uint8Array) => encodeFrame(header, payload);
    for (let i = 0; i < 1500; i++) {
      const bytes = randomBytes(16 + (i % 300));
      switch (i % 6) {
        case 0: frames.push([bytes]); break; // random bytes
        case 1: frames.push(valid({ t: 'shard.put', id: i + 1, from: 'x', body: { key: `${'a'.repeat(32)}/0/0`, hash: sha(bytes) } }, bytes.subarray(1))); break; // wrong hash
        case 2: frames.push(valid({ t: 'shard.put', id: i + 1, from: 'x', body: { key: '../../etc', hash: 5 } }, bytes)); break; // bad body
        case 3: frames.push(valid({ t: `no.such.${i}`, id: i + 1, from: 'x', body: null })); break; // unknown type
        case 4: frames.push([Buffer.from([0x7f, 0xff, 0xff, 0xff]), bytes]); break; // huge length
        default: { const f = Buffer.concat(valid({ t: 'chain.status', id: i + 1, from: 'x', body: {} }).map((p) => Buffer.from(p))); f[9] = f[9]! ^ 0xff; frames.push([f.subarray(0, f.length - 1)]); } // cut and mutated
      }
    }
    // Posing as an SP without its node key: the link key does not match, the handshake fails.
    const poser = tlsPskTransport(clusterKey, { sp: { self: 'sp2', keyWith: () => randomBytes(32) }, to: 'sp1' });
    await assert.rejects(poser.connect(host!, port, 3_000), (err: unknown) => (err as { code?: string }).code === 'UNAUTHENTICATED', 'an SP id without its node key');
    // Without the key: plain TCP to a TLS-PSK port, and TLS with a wrong key.
    let refused = 0;
    for (let c = 0; c < 30; c++) {
      const s = connect(port, host!, () => {
        for (const f of frames.slice(c * 50, c * 50 + 50)) for (const p of f) s.write(p);
        s.end();
      });
      s.resume();
      await closedWithin(s, `plain TCP connection ${c}`);
    }
    for (let c = 0; c < 10; c++) {
      try {
        await tlsPskTransport(randomBytes(32)).connect(host!, port, 3_000);
      } catch {
        refused += 1;
      }
    }
    assert.equal(refused, 10, 'a wrong cluster key never completes the handshake');
    assert.equal((await spShards(api, 'sp1')).shards, shardsBefore, 'nothing stored from unauthenticated peers');

    // With the key: the same garbage inside an authenticated connection.
    for (let c = 0; c < 30; c++) {
      const socket = await tlsPskTransport(clusterKey).connect(host!, port, 3_000);
      const closed = closedWithin(socket, `authenticated connection ${c}`);
      socket.resume();
      for (const f of frames.slice(c * 50, c * 50 + 50)) for (const p of f) socket.write(p);
      socket.end();
      await closed;
    }
    // Each hostile message alone on a connection that stays usable (above, most connections
    // close at the first broken frame, before a well-formed one behind it is read): each refused
    // with its own code, nothing stored.
    const member = new MailboxClient({ id: 'x', address: cluster.providers.get('sp1')!.address, transport: tlsPskTransport(clusterKey), requestTimeoutMs: 10_000 });
    try {
      const code = (want: string) => (err: unknown) => (err as { code?: string }).code === want;
      const bytes = randomBytes(1000);
      const key = `${'a'.repeat(32)}/0/0`;
      await assert.rejects(member.request('shard.put', { key, hash: sha(bytes) }, bytes.subarray(1)), code('HASH_MISMATCH'));
      await assert.rejects(member.request('shard.put', { key: '../../etc', hash: 5 }, bytes), code('BAD_MESSAGE'));
      // Bigger than any shard of this cluster (4 MiB segments, k 2: at most 2 MiB + 8): none is stored
      // (each would come back whole, into memory, on every read of it).
      const oversize = randomBytes(2 * 1024 * 1024 + 16);
      await assert.rejects(member.request('shard.put', { key, hash: sha(oversize) }, oversize), code('TOO_LARGE'));
      await assert.rejects(member.request('no.such.message', null), code('UNKNOWN_MESSAGE'));
      const listed = (await member.request('shard.list', { after: 'a'.repeat(31), limit: 10 })).body as { keys: string[] };
      assert.equal(listed.keys.includes(key), false, 'nothing stored under the key of the wrong-hash put');
      // Consensus and the sweep are between SPs: a member holding only the cluster key (every web
      // client does) can neither vote, append, endorse nor sweep, whatever id it states.
      for (const [type, body] of [
        ['raft', { msg: { type: 'preVote', term: 99, lastHeight: 0, lastTerm: 0 } }],
        ['chain.endorse', { endorsements: [] }],
        ['shard.sweep', { keys: [key] }],
      ] as const) {
        await assert.rejects(member.request(type, body), code('FORBIDDEN'), type);
      }
    } finally {
      await member.close();
    }
    assert.equal(cluster.pid('sp1'), pid, 'the SP process is the same one: it never died');
    assert.equal((await spShards(api, 'sp1')).shards, shardsBefore, 'no shard with a wrong hash or bad key was stored');
    const again = await api.upload([{ name: 'after.bin', bytes: randomBytes(50_000) }]);
    assert.equal(again.status, 201);
    assert.equal((await api.download(again.body[0].id)).status, 200);
  });
});
