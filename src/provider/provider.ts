/**
 * A storage-provider actor: its LMDB (shards, chain, state), its chain node, and a mailbox that
 * serves shards, chain submissions and state queries to web clients and other SPs.
 */
import { join } from 'node:path';
import { CairnError, invariant } from '../errors.js';
import { sealedLength } from '../codec/segment-seal.js';
import { shardSize } from '../codec/shards.js';
import type { Block } from '../chain/block.js';
import { ChainNode } from '../chain/chain-node.js';
import { ChainStore } from '../chain/chain-store.js';
import { endorseBodyP, raftBodyP } from '../chain/raft-wire.js';
import { keys, type StoredFile, type UserRecord } from '../chain/state.js';
import { verifyReplica } from '../chain/verify.js';
import { hashAlgOf } from '../crypto/shard-hash.js';
import { readClusterFile, readClusterKey, readNodeKey } from '../config/cluster-file.js';
import { MailboxClient } from '../mailbox/client.js';
import { LANE_TYPES, bodies, type MessageType, type Replies } from '../mailbox/messages.js';
import { call } from '../mailbox/rpc.js';
import { DEFAULT_MAX_REPLY_BYTES, MailboxServer, type HandlerContext, type HandlerResult } from '../mailbox/server.js';
import { deriveLinkKey, tlsPskTransport, type SpLinks } from '../mailbox/transport.js';
import { takeLock } from '../dir-lock.js';
import { SharedRun } from '../shared-run.js';
import * as v from '../validate.js';
import type { RunningRole } from '../supervisor/actor.js';
import { Repairer, type ShardAccess } from './repairer.js';
import { Scrubber } from './scrubber.js';
import { ShardStore } from './shard-store.js';
import { lmdbDir, openProviderDbs } from './store.js';

export interface ProviderOptions {
  id: string;
  port: number;
  /** Where shard payloads come beside TLS (src/mailbox/lane.ts): 0 (the default) for any free port. */
  lanePort?: number;
  host: string;
  dataDir: string;
  clusterFile: string;
  /** Shards no final record names are deleted by repair once older than this. */
  orphanGraceMs: number;
  /** Free disk space new shards must leave (the chain's room to write). */
  diskReserveBytes: number;
  log?: (line: string) => void;
}

const TICK_MS = 50;
const SCRUB_BYTES_PER_SECOND = 32 * 1024 * 1024;
const SCRUB_INTERVAL_MS = 10 * 60_000;
const REPAIR_INTERVAL_MS = 5 * 60_000;
const MAX_SHARD_BYTES = 64 * 1024 * 1024;
/** Frames between SPs, either way: a shard with its header, or a Raft append (MAX_APPEND_BYTES, or one block bigger). */
const MAX_FRAME_BYTES = MAX_SHARD_BYTES + 64 * 1024;
const MAX_LISTED_FILES = 10_000;
const SP_ONLY = { spOnly: true } as const;

export async function startProvider(opts: ProviderOptions): Promise<RunningRole> {
  const log = opts.log ?? ((line: string) => console.error(`[${opts.id}] ${line}`));
  const cluster = readClusterFile(opts.clusterFile);
  // No shard of this cluster is bigger than a full segment's share: a bigger one is no upload's,
  // and every byte an SP holds may be asked back whole, into memory (shard.get).
  const maxShardBytes = shardSize(sealedLength(cluster.segmentSize), cluster.k);
  invariant(maxShardBytes <= MAX_SHARD_BYTES, 'a segment share fits the frame limit');
  if (!cluster.genesis.validators.some((val) => val.id === opts.id)) {
    throw new CairnError('BAD_CONFIG', `${opts.id} is not a provider of this cluster (${cluster.genesis.validators.map((val) => val.id).join(', ')})`);
  }
  const signer = readNodeKey(opts.dataDir, opts.id);
  if (cluster.genesis.validators.find((val) => val.id === opts.id)?.signKey !== signer.publicKey) {
    throw new CairnError('BAD_CONFIG', `the node key of ${opts.id} is not the one the cluster file's genesis names: check --cluster and --data-dir (node keys are never replaced)`);
  }
  const clusterKey = readClusterKey(opts.clusterFile);
  const signKeys = new Map(cluster.genesis.validators.map((val) => [val.id, val.signKey]));
  const linkKeys = new Map<string, Buffer>();
  const links: SpLinks = {
    self: opts.id,
    keyWith: (id) => {
      const peerKey = id === opts.id ? undefined : signKeys.get(id);
      if (peerKey === undefined) return null;
      let key = linkKeys.get(id);
      if (!key) linkKeys.set(id, (key = deriveLinkKey(clusterKey, signer.agree(peerKey), opts.id, id)));
      return key;
    },
  };
  const transport = tlsPskTransport(clusterKey, { sp: links });
  const unlock = takeLock(join(opts.dataDir, opts.id, 'provider.lock'), `storage provider ${opts.id}`);
  // What fails from here on (a data dir of another cluster, a port taken) leaves nothing behind:
  // no lock, no open LMDB, no timer.
  let dbs: ReturnType<typeof openProviderDbs> | undefined;
  let chainStore: ChainStore;
  try {
    dbs = openProviderDbs(lmdbDir(opts.dataDir, opts.id));
    chainStore = new ChainStore(dbs, cluster.genesis);
  } catch (err) {
    await dbs?.root.close();
    unlock();
    throw err;
  }
  const db = dbs;
  /** The shard a final record names at `key` (`<file id>/<segment>/<shard>`), if any. */
  const recordedShard = (key: string): { hash: string; sp: string | null } | undefined => {
    const [fileId, segment, shard] = key.split('/');
    return (chainStore.get(keys.file(fileId!)) as StoredFile | undefined)?.record.segments[Number(segment)]?.shards[Number(shard)];
  };
  const shards = new ShardStore(db, { dir: lmdbDir(opts.dataDir, opts.id), reserveBytes: opts.diskReserveBytes, recordedHash: (key) => recordedShard(key)?.hash });

  const peers = new Map<string, MailboxClient>();
  const peer = (sp: string): MailboxClient => {
    const p = peers.get(sp);
    if (!p) throw new CairnError('NOT_FOUND', `unknown storage provider ${sp}`);
    return p;
  };
  for (const p of cluster.providers) {
    if (p.id === opts.id) continue;
    peers.set(p.id, new MailboxClient({ id: opts.id, address: p.address, transport: tlsPskTransport(clusterKey, { sp: links, to: p.id }), requestTimeoutMs: 20_000, maxInFlight: 64, maxQueued: 1024, maxFrameBytes: MAX_FRAME_BYTES, laneTypes: LANE_TYPES }));
  }
  const node = new ChainNode({
    id: opts.id,
    store: chainStore,
    signer,
    tickMs: TICK_MS,
    log,
    peers: {
      send: (to, type, body) => {
        // Appends are cut to fit a frame, so this is a bug of ours; a Raft message lost costs a
        // resend, but a throw here would skip the rest of the step (its writes) or end the SP.
        try {
          peers.get(to)?.send(type, body);
        } catch (err) {
          log(`dropped a ${type} message to ${to}: ${(err as Error).message}`);
        }
      },
      flush: () => {
        for (const p of peers.values()) p.flush();
      },
      submit: async (to, tx, timeoutMs) => {
        const peer = peers.get(to);
        if (!peer) throw new CairnError('NO_MAJORITY', `leader ${to} is unknown`);
        return (await call(peer, 'chain.submit', { tx }, { timeoutMs })).body;
      },
    },
  });
  // Shards of a deleted file are garbage once the deletion is final.
  node.on('applied', (block: Block) => {
    for (const tx of block.txs) {
      if (tx.body.type !== 'file.delete') continue;
      if (chainStore.get(keys.file(tx.body.fileId)) !== undefined) continue;
      for (const key of shards.keysOf(tx.body.fileId)) void shards.delete(key).catch((err: Error) => log(`delete ${key}: ${err.message}`));
    }
  });

  // Repair judged these unrecorded; a record this SP has applied since keeps its shard.
  const sweep = (list: string[]) => shards.deleteStoredBy(list.filter((key) => recordedShard(key)?.sp !== opts.id), Date.now() - opts.orphanGraceMs);
  const scrubber = new Scrubber(shards, { bytesPerSecond: SCRUB_BYTES_PER_SECOND, intervalMs: SCRUB_INTERVAL_MS, log });
  const shardAccess: ShardAccess = {
    providers: cluster.providers.map((p) => p.id),
    scrub: async (sp) => (sp === opts.id ? scrubber.runPass() : (await call(peer(sp), 'scrub.run', {}, { timeoutMs: 600_000 })).body),
    list: async (sp, after, limit) =>
      sp === opts.id ? shards.keysAfter(after, limit) : (await call(peer(sp), 'shard.list', after === undefined ? { limit } : { after, limit })).body.keys,
    get: async (sp, key) => {
      if (sp === opts.id) return shards.read(key).bytes;
      const reply = await call(peer(sp), 'shard.get', { key });
      if (!reply.payload) throw new CairnError('SHARD_MISSING', `${sp} sent no bytes for ${key}`);
      return Buffer.from(reply.payload); // the frame is reused; keep our own copy
    },
    put: async (sp, key, hash, alg, bytes) => {
      if (sp === opts.id) await shards.put(key, bytes, hash, alg);
      else await call(peer(sp), 'shard.put', { key, hash, hashAlg: alg }, { payload: bytes });
    },
    sweep: async (sp, keys) => (sp === opts.id ? sweep(keys) : (await call(peer(sp), 'shard.sweep', { keys })).body.deleted),
  };
  const repairer = new Repairer({ id: opts.id, signer, chain: chainStore, submit: (tx) => node.submit(tx), leaderRead: () => node.leaderRead(), shards: shardAccess, log });
  const repairTimer = setInterval(() => {
    if (node.status().role === 'leader') void repairer.run({ scrub: false }); // the background scrubber keeps shards checked
  }, REPAIR_INTERVAL_MS);
  repairTimer.unref();

  // Shard replies share a budget (src/mailbox/reply-budget.ts) that lets a connection hold a
  // quarter of it: with large segments (64 MiB: 32 MiB shards) the default 256 MiB let a web
  // client's connection hold one shard at a time, and busy downloads failed. Four shards a
  // connection, at least.
  const maxReplyBytes = Math.max(DEFAULT_MAX_REPLY_BYTES, 16 * maxShardBytes);
  const server = new MailboxServer({ id: opts.id, transport, lanePort: opts.lanePort ?? 0, maxConnections: 256, maxInFlightPerConnection: 32, maxFrameBytes: MAX_FRAME_BYTES, maxReplyBytes });
  const on = <T extends MessageType>(
    type: T,
    handler: (body: v.Parsed<(typeof bodies)[T]>, ctx: HandlerContext) => Promise<{ body: Replies[T]; payload?: Uint8Array }>,
    access: { spOnly?: boolean; replyBytes?: (body: v.Parsed<(typeof bodies)[T]>) => number } = {},
  ) => server.handle(type, (b) => bodies[type](b) as v.Parsed<(typeof bodies)[T]>, handler as (b: unknown, ctx: HandlerContext) => Promise<HandlerResult>, { ...access, lane: LANE_TYPES.has(type) });

  on('shard.put', async (b, ctx) => {
    if (!ctx.payload) throw new CairnError('BAD_MESSAGE', 'shard.put carries the shard bytes as its payload');
    if (ctx.payload.byteLength > maxShardBytes) {
      throw new CairnError('TOO_LARGE', `a shard of this cluster is at most ${maxShardBytes} bytes (segment size ${cluster.segmentSize}, k ${cluster.k}); got ${ctx.payload.byteLength}`);
    }
    if (b.recordWithinMs !== undefined && b.recordWithinMs >= opts.orphanGraceMs) {
      throw new CairnError(
        'BAD_CONFIG',
        `${opts.id} deletes shards no record names after ${opts.orphanGraceMs} ms (orphan-grace-ms), but the sender may take ${b.recordWithinMs} ms to record one (max-upload-ms): set orphan-grace-ms on the SPs above every web client's max-upload-ms`,
      );
    }
    await shards.put(b.key, ctx.payload, b.hash, hashAlgOf(b.hashAlg));
    return { body: { stored: true } };
  });
  // Each reply is a shard in memory until its peer takes it: they share the mailbox's reply budget,
  // each reserving the size its shard was stored at (none: it will be refused, SHARD_MISSING).
  on(
    'shard.get',
    async (b) => {
      const { bytes, hash } = shards.read(b.key);
      return { body: { hash }, payload: bytes };
    },
    { replyBytes: (b) => shards.sizeOf(b.key) ?? 0 },
  );
  on('shard.check', async (b) => ({ body: { state: await shards.check(b.key) } }));
  on('shard.delete', async (b) => {
    // A failed upload deletes what it stored; a recorded shard goes only with its file (file.delete).
    if (recordedShard(b.key)?.sp === opts.id) throw new CairnError('CONFLICT', `shard ${b.key} is recorded on ${opts.id}; delete its file instead`);
    return { body: { deleted: await shards.delete(b.key) } };
  });
  on('shard.list', async (b) => ({ body: { keys: shards.keysAfter(b.after, b.limit) } }));
  on('shard.sweep', async (b) => ({ body: { deleted: await sweep(b.keys) } }), SP_ONLY);
  on('sp.stats', async () => ({ body: { id: opts.id, ...shards.stats(), chain: node.status(), scrub: scrubber.stats(), mailbox: server.stats } }));
  on('scrub.run', async () => ({ body: await scrubber.runPass() }));
  on('repair.start', async (b) => {
    if (node.status().role !== 'leader') throw new CairnError('NOT_LEADER', 'repair runs on the chain leader; ask another provider');
    const run = repairer.run({ scrub: true });
    return { body: b.wait ? { started: true as const, run: await run } : { started: true as const } };
  });
  on('repair.status', async () => ({ body: repairer.status() }));
  on('chain.submit', async (b) => ({ body: await node.submit(b.tx) }));
  on('chain.status', async () => ({ body: node.status() }));
  on('chain.blocks', async (b) => {
    const blocks = [];
    const last = Math.min(chainStore.applied(), b.from + b.limit - 1);
    for (let h = b.from; h <= last; h++) blocks.push(chainStore.blockOnDisk(h)!);
    return { body: { blocks } };
  });
  // A walk of the whole chain (in slices, between consensus work): one at a time, shared by whoever asks meanwhile.
  const verification = new SharedRun(() => verifyReplica(opts.id, chainStore));
  on('chain.verify', async (b) => {
    // Replicas are compared at one height: a follower a block behind the leader is not a fault.
    if (b.atHeight !== undefined) await node.waitApplied(b.atHeight).catch(() => undefined);
    const report = await verification.get();
    const at = b.atHeight !== undefined && chainStore.applied() >= b.atHeight ? chainStore.block(b.atHeight) : undefined;
    return { body: at ? { ...report, at: { height: b.atHeight!, hash: at.hash } } : report };
  });
  on('state.user', async (b) => {
    await node.waitApplied(b.minHeight);
    return { body: { user: (chainStore.get(keys.user(b.username)) as UserRecord | undefined) ?? null, height: chainStore.applied() } };
  });
  on('state.file', async (b) => {
    await node.waitApplied(b.minHeight);
    return { body: { file: (chainStore.get(keys.file(b.id)) as StoredFile | undefined) ?? null, height: chainStore.applied() } };
  });
  on('state.files', async (b) => {
    await node.waitApplied(b.minHeight);
    const files: StoredFile[] = [];
    for (const prefix of [`o/${b.username}/`, `s/${b.username}/`]) {
      for (const [key] of chainStore.range(prefix)) {
        const f = chainStore.get(keys.file(key.slice(prefix.length))) as StoredFile | undefined;
        // A listing needs no file's bytes: inline ones stay behind (state.file has them).
        if (f && files.length < MAX_LISTED_FILES) files.push(withoutInline(f));
      }
    }
    return { body: { files, height: chainStore.applied() } };
  });
  // Consensus is between SPs, each under the name its link key proves: a web client (it holds the
  // cluster key too) or an SP posing as another could otherwise vote, append or endorse.
  server.handle('raft', (b) => raftBodyP(b), async (b, ctx) => node.onRaft(ctx.from, b.msg), SP_ONLY);
  server.handle('chain.endorse', (b) => endorseBodyP(b), async (b, ctx) => node.onEndorse(ctx.from, b.endorsements), SP_ONLY);

  /** What stop() and a failed start both let go of, last: peers, the store's pending writes, LMDB, the lock. */
  const release = async () => {
    clearInterval(repairTimer);
    await Promise.all([...peers.values()].map((p) => p.close()));
    await chainStore.settled();
    await db.root.close();
    unlock();
  };
  let port: number;
  try {
    ({ port } = await server.listen(opts.port, opts.host));
  } catch (err) {
    await release();
    throw err;
  }
  node.start();
  scrubber.start();
  log(`listening on ${opts.host}:${port}`);
  return {
    url: `${opts.host}:${port}`,
    async stop() {
      clearInterval(repairTimer); // first, as before: no pass starts while the rest stops
      scrubber.stop();
      node.stop();
      await server.close();
      await release();
    },
  };
}

function withoutInline(f: StoredFile): StoredFile {
  if (f.record.inline === undefined) return f;
  const { inline: _bytes, ...record } = f.record;
  return { ...f, record };
}
