/**
 * Repair choosing where rebuilt shards go, on a real cluster of three SP processes with 1+2
 * coding (every segment has a shard on every SP): one SP down and another missing its own
 * shard. The shard whose SP is up goes back home; the one whose SP is down has no SP to go to
 * and stays missing; no spare may take the place another shard belongs on.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Api } from './support/http.js';
import { ManualCluster } from './support/manual-cluster.js';
import { repairAndWait } from './support/repair.js';
import { readClusterKey } from '../src/config/cluster-file.js';
import { lmdbDir, openProviderDbs } from '../src/provider/store.js';
import { MailboxClient } from '../src/mailbox/client.js';
import { call } from '../src/mailbox/rpc.js';
import { tlsPskTransport } from '../src/mailbox/transport.js';

const MAX_UPLOADS = 20;

describe('repair placement', () => {
  let cluster: ManualCluster;
  let api: Api;

  before(async () => {
    cluster = await ManualCluster.create({ args: ['--k', '1', '--m', '2'] });
    api = new Api(cluster.clients[0]!.url);
    assert.equal((await api.register('mender', 'repair test password')).status, 201);
    assert.equal((await api.signIn('mender', 'repair test password')).status, 200);
  });
  after(async () => {
    await cluster?.stop();
  });

  it("puts a shard back on its own SP and never hands that place to another shard", async () => {
    // A file whose segment has its sp3 shard before its sp2 shard: the order in which a careless
    // repair would give sp2 (free once its own shard is gone) to the sp3 shard first.
    let file: { id: string; bytes: Buffer; onSp2: number; onSp3: number } | undefined;
    for (let i = 0; i < MAX_UPLOADS && !file; i++) {
      const bytes = randomBytes(20_000);
      const up = await api.upload([{ name: `f${i}.bin`, bytes }]);
      assert.equal(up.status, 201);
      const sps = (await api.call('GET', `/api/v1/files/${up.body[0].id}`)).body.segments[0].shards.map((sh: { sp: string }) => sh.sp) as string[];
      if (sps.indexOf('sp3') < sps.indexOf('sp2')) file = { id: up.body[0].id, bytes, onSp2: sps.indexOf('sp2'), onSp3: sps.indexOf('sp3') };
    }
    assert.ok(file, `one of ${MAX_UPLOADS} files has its sp3 shard first`);

    const transport = tlsPskTransport(readClusterKey(join(cluster.dataDir, 'cluster.json')));
    const sp2 = new MailboxClient({ id: 'test', address: cluster.providers.get('sp2')!.address, transport, requestTimeoutMs: 10_000 });
    try {
      const key = `${file.id}/0/${file.onSp2}`;
      // Lost from sp2's disk (no peer may delete a recorded shard): removed with sp2 stopped.
      await cluster.stopProvider('sp2');
      const dbs = openProviderDbs(lmdbDir(cluster.dataDir, 'sp2'));
      assert.equal(await dbs.shards.remove(key), true);
      assert.equal(await dbs.shardMeta.remove(key), true);
      await dbs.root.close();
      await cluster.startProvider('sp2');
      await cluster.stopProvider('sp3');
      const run = await repairAndWait(api, 120_000);
      assert.equal(run.failures, 0, JSON.stringify(run));
      assert.equal(run.placementsRecorded, 0, 'the shard went home: nothing to re-place');
      assert.ok(run.stillDegraded >= 1, 'the sp3 shard had nowhere to go');
      assert.deepEqual((await call(sp2, 'shard.list', { after: `${file.id}/`, limit: 10 })).body.keys.filter((k: string) => k === key), [key], 'sp2 holds its shard again');
      const record = (await api.call('GET', `/api/v1/files/${file.id}`)).body;
      assert.equal(record.segments[0].shards[file.onSp2].sp, 'sp2');
      assert.equal(record.segments[0].shards[file.onSp3].sp, 'sp3');
      assert.ok((await api.download(file.id)).bytes.equals(file.bytes));
    } finally {
      await sp2.close();
    }
  });
});
