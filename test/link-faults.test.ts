/**
 * Faults on the links between a web client and its SPs, caused on purpose and every time: a proxy
 * between the client and each SP (real processes, real TLS-PSK links) drops, cuts or damages
 * exactly the messages a case names.
 *
 * - The answer to a file's record lost: the record may be final although the client heard
 *   nothing, so the client must neither record the file twice nor delete the shards it names.
 * - One SP refusing a shard (here: its bytes damaged on the way, so it answers HASH_MISMATCH, as a
 *   full or failing disk answers with an error of its own): the segment goes on without it.
 * - SPs the client wrongly believes down (their status answers lost): shards still go to them.
 * - A damaged data shard while the other is slow to come: the download uses every intact shard.
 * - One file of a request that cannot be stored: none of the request's files is recorded.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { waitFor } from './support/cluster.js';
import { Api } from './support/http.js';
import { ManualCluster } from './support/manual-cluster.js';
import { MailboxProxy, type ProxyRule } from './support/mailbox-proxy.js';
import { readClusterKey } from '../src/config/cluster-file.js';
import { tlsPskTransport } from '../src/mailbox/transport.js';

const KiB = 1024;
const password = 'lost answer password';

describe('faults on the links between a web client and its SPs', () => {
  let cluster: ManualCluster;
  let api: Api;
  const proxies = new Map<string, MailboxProxy>();
  const everyLink = (rule: ProxyRule) => proxies.forEach((p) => (p.rule = rule));
  const shardsStored = async (): Promise<number> => {
    const c = await api.call('GET', '/api/v1/cluster');
    return c.body.providers.reduce((n: number, p: { shards: number }) => n + p.shards, 0);
  };
  const listed = async (name: string): Promise<{ id: string }[]> => (await api.call('GET', '/api/v1/files')).body.filter((f: { name: string }) => f.name === name);

  before(async () => {
    let transport: ReturnType<typeof tlsPskTransport> | undefined;
    cluster = await ManualCluster.create({
      via: async (id, address, clusterFile) => {
        transport ??= tlsPskTransport(readClusterKey(clusterFile));
        const proxy = await MailboxProxy.start(transport, address);
        proxies.set(id, proxy);
        return proxy.address;
      },
    });
    api = new Api(cluster.clients[0]!.url);
    assert.equal((await api.register('lost', password)).status, 201);
    assert.equal((await api.signIn('lost', password)).status, 200);
  });

  after(async () => {
    await cluster?.stop();
    await Promise.all([...proxies.values()].map((p) => p.close()));
  });

  it('a record whose answer is lost is asked again, and the one record it made is the answer: no second file', async () => {
    let dropped = 0;
    everyLink((direction, h) => (direction === 'answer' && h.t === 'chain.submit' && dropped++ === 0 ? 'drop' : 'pass'));
    const bytes = randomBytes(100 * KiB);
    const up = await api.upload([{ name: 'once.bin', bytes }]);
    everyLink(() => 'pass');
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(dropped, 2, 'the first answer was dropped and the second passed');
    const files = await listed('once.bin');
    assert.deepEqual(files.map((f) => f.id), [up.body[0].id], 'one file, the one answered');
    const down = await api.download(up.body[0].id);
    assert.equal(down.status, 200);
    assert.ok(down.bytes.equals(bytes));
  });

  it('a record whose every answer is lost fails the upload saying the file may be stored, and keeps every shard it names', async () => {
    const shardsBefore = await shardsStored();
    let cuts = 0;
    everyLink((direction, h) => (direction === 'answer' && h.t === 'chain.submit' ? (cuts++, 'cut') : 'pass'));
    const bytes = randomBytes(600 * KiB); // more than one segment
    const up = await api.upload([{ name: 'unanswered.bin', bytes }]);
    everyLink(() => 'pass');
    assert.equal(up.status, 503, JSON.stringify(up.body));
    assert.match(up.body.error.message, /no answer came back.*may be stored: look for it in your files/);
    assert.ok(cuts >= 6, `every attempt lost its answer (${cuts} cut)`);

    // The record was final all along: the file is there once, whole, with every shard it names.
    const files = await listed('unanswered.bin');
    assert.equal(files.length, 1, 'one record, however many times it was sent');
    const record = (await api.call('GET', `/api/v1/files/${files[0]!.id}`)).body;
    const named = record.segments.flatMap((s: { shards: { sp: string | null }[] }) => s.shards.filter((sh) => sh.sp !== null)).length;
    assert.ok(named >= 6, `a record of two segments or more names their shards (${named})`);
    assert.equal(await shardsStored(), shardsBefore + named, 'no shard of the recorded file was deleted');
    const down = await api.download(files[0]!.id);
    assert.equal(down.status, 200);
    assert.ok(down.bytes.equals(bytes));
  });

  it('a shard one SP refuses leaves the segment degraded, not the upload failed', async () => {
    proxies.get('sp3')!.rule = (direction, h) => (direction === 'request' && h.t === 'shard.put' ? 'damage' : 'pass');
    const bytes = randomBytes(100 * KiB); // one segment: a shard for each SP
    const up = await api.upload([{ name: 'refused.bin', bytes }]);
    everyLink(() => 'pass');
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(up.body[0].degraded, true);
    const record = (await api.call('GET', `/api/v1/files/${up.body[0].id}`)).body;
    assert.deepEqual(record.segments[0].shards.map((sh: { sp: string | null }) => sh.sp).sort(), [null, 'sp1', 'sp2'].sort(), 'stored on the two SPs that took it');
    const down = await api.download(up.body[0].id);
    assert.equal(down.status, 200);
    assert.ok(down.bytes.equals(bytes));
  });

  it('shards go to SPs the client believes down when too few are up for a segment, and they take them', async () => {
    const probe = await api.upload([{ name: 'probe.bin', bytes: randomBytes(100 * KiB) }]);
    assert.equal(probe.status, 201);
    // sp2 and sp3 work, but every answer from them other than to a shard or a record is lost,
    // so the client's liveness probes time out and it takes them for down.
    for (const id of ['sp2', 'sp3']) proxies.get(id)!.rule = (direction, h) => (direction === 'answer' && h.t !== 'shard.put' && h.t !== 'chain.submit' ? 'drop' : 'pass');
    await waitFor('the client to take sp2 and sp3 for down', async () => {
      const shards = (await api.call('GET', `/api/v1/files/${probe.body[0].id}`)).body.segments[0].shards as { sp: string; up: boolean }[];
      return shards.filter((sh) => !sh.up).map((sh) => sh.sp).sort().join() === 'sp2,sp3';
    }, 30_000, 250);
    const bytes = randomBytes(100 * KiB);
    const up = await api.upload([{ name: 'believed-down.bin', bytes }]);
    everyLink(() => 'pass');
    assert.equal(up.status, 201, JSON.stringify(up.body));
    // One SP up, two shards needed: one more goes to an SP believed down; the third is left to repair.
    assert.equal(up.body[0].degraded, true);
    const record = (await api.call('GET', `/api/v1/files/${up.body[0].id}`)).body;
    const placed = record.segments[0].shards.map((sh: { sp: string | null }) => sh.sp).filter((sp: string | null) => sp !== null).sort();
    assert.equal(placed.length, 2, JSON.stringify(placed));
    assert.equal(placed[0], 'sp1');
    assert.ok((await api.download(up.body[0].id)).bytes.equals(bytes));
    await waitFor('the client to see every SP up again', async () => {
      const shards = (await api.call('GET', `/api/v1/files/${probe.body[0].id}`)).body.segments[0].shards as { up: boolean }[];
      return shards.every((sh) => sh.up);
    }, 30_000, 250);
  });

  it('a damaged data shard while the other data shard is late: the download waits for the late one', async () => {
    const bytes = randomBytes(100 * KiB); // one segment of two data shards and a parity shard
    const up = await api.upload([{ name: 'late.bin', bytes }]);
    assert.equal(up.status, 201);
    const holders = (await api.call('GET', `/api/v1/files/${up.body[0].id}`)).body.segments[0].shards.map((sh: { sp: string }) => sh.sp) as string[];
    // The data shard 0 comes damaged; data shard 1 comes after the hedge has fetched the parity
    // shard instead; only data shard 1 and the parity shard together open the segment.
    proxies.get(holders[0]!)!.rule = (direction, h) => (direction === 'answer' && h.t === 'shard.get' ? 'damage' : 'pass');
    proxies.get(holders[1]!)!.rule = (direction, h) => (direction === 'answer' && h.t === 'shard.get' ? 'late' : 'pass');
    const down = await api.download(up.body[0].id);
    everyLink(() => 'pass');
    assert.equal(down.status, 200);
    assert.ok(down.bytes.equals(bytes));
  });

  it('a request one of whose files cannot be stored records none of them, though the other was stored in full', async () => {
    const filesBefore = (await api.call('GET', '/api/v1/files')).body.length;
    const shardsBefore = await shardsStored();
    // Two of three SPs refuse the big file's shards (over 100 KiB each): its segments cannot be
    // stored; the small file's are, and it waits for its sibling before it is recorded.
    for (const id of ['sp2', 'sp3']) proxies.get(id)!.rule = (direction, h, payload) => (direction === 'request' && h.t === 'shard.put' && payload > 100 * KiB ? 'damage' : 'pass');
    const up = await api.upload([
      { name: 'small-sibling.bin', bytes: randomBytes(100 * KiB) },
      { name: 'big-sibling.bin', bytes: randomBytes(600 * KiB) },
    ]);
    everyLink(() => 'pass');
    assert.equal(up.status, 503, JSON.stringify(up.body));
    assert.match(up.body.error.message, /only 1 of 3 shards could be stored/);
    assert.equal((await api.call('GET', '/api/v1/files')).body.length, filesBefore, 'neither file is recorded');
    assert.equal(await shardsStored(), shardsBefore, "the small file's stored shards are deleted");
  });
});
