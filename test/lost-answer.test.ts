/**
 * The answer to a file's record lost on its way back to the web client, on purpose and every
 * time: a proxy between the client and each SP (real processes, real TLS-PSK links) drops or cuts
 * exactly the `chain.submit` answers. The record may be final although the client heard nothing,
 * so the client must neither record the file twice nor delete the shards a final record names.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Api } from './support/http.js';
import { ManualCluster } from './support/manual-cluster.js';
import { MailboxProxy, type ProxyRule } from './support/mailbox-proxy.js';
import { readClusterKey } from '../src/config/cluster-file.js';
import { tlsPskTransport } from '../src/mailbox/transport.js';

const KiB = 1024;
const password = 'lost answer password';

describe('a file record whose answer is lost', () => {
  let cluster: ManualCluster;
  let api: Api;
  const proxies: MailboxProxy[] = [];
  const everyLink = (rule: ProxyRule) => proxies.forEach((p) => (p.rule = rule));
  const shardsStored = async (): Promise<number> => {
    const c = await api.call('GET', '/api/v1/cluster');
    return c.body.providers.reduce((n: number, p: { shards: number }) => n + p.shards, 0);
  };
  const listed = async (name: string): Promise<{ id: string }[]> => (await api.call('GET', '/api/v1/files')).body.filter((f: { name: string }) => f.name === name);

  before(async () => {
    let transport: ReturnType<typeof tlsPskTransport> | undefined;
    cluster = await ManualCluster.create({
      via: async (_id, address, clusterFile) => {
        transport ??= tlsPskTransport(readClusterKey(clusterFile));
        const proxy = await MailboxProxy.start(transport, address);
        proxies.push(proxy);
        return proxy.address;
      },
    });
    api = new Api(cluster.clients[0]!.url);
    assert.equal((await api.register('lost', password)).status, 201);
    assert.equal((await api.signIn('lost', password)).status, 200);
  });

  after(async () => {
    await cluster?.stop();
    await Promise.all(proxies.map((p) => p.close()));
  });

  it('is asked again, and the one record it made is the answer: no second file', async () => {
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

  it('fails the upload saying the file may be stored, and keeps every shard its final record names', async () => {
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
});
