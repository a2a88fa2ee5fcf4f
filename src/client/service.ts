/**
 * What a web client can do, independent of HTTP: the JSON API and the HTML pages both call
 * these, so forms and scripts share one set of rules.
 */
import { CairnError, isCairnError } from '../errors.js';
import { SharedRun } from '../shared-run.js';
import type { StoredFile } from '../chain/state.js';
import { signTx, type Tx } from '../chain/tx.js';
import { sealTo } from '../crypto/keys.js';
import type { MailboxServerStats } from '../mailbox/server.js';
import type { ChainStatus, VerifyReport } from '../mailbox/messages.js';
import type { ScrubStats } from '../provider/scrubber.js';
import type { ClusterLink } from './cluster-link.js';
import { findUser } from './accounts.js';
import type { CodecPool } from './codec-pool.js';
import { downloadBody } from './download.js';
import { authorize, fileKey, fileMeta, health, keyContext, requireOwner, summarize, type FileSummary } from './file-access.js';
import { SegmentSlots } from './segment-slots.js';
import type { Session } from './sessions.js';
import { FileUpload, type UploadSettings } from './upload.js';
import { hashAlgOf } from '../crypto/shard-hash.js';

type ChainVerdict = { ok: boolean; replicas: (VerifyReport | { provider: string; ok: false; height: null; problems: { height: null; problem: string }[] })[] };

export class ClientService {
  /**
   * Two pipelines' worth each: enough to keep the workers and SPs busy, whatever the number of
   * uploads or downloads (config makes the worker queue hold both budgets).
   */
  readonly #uploadSlots: SegmentSlots;
  readonly #downloadSlots: SegmentSlots;
  readonly #readAhead: SegmentSlots;
  readonly #downloadCounters = { hedges: 0 };

  constructor(
    readonly link: ClusterLink,
    readonly pool: CodecPool,
    readonly settings: UploadSettings,
  ) {
    this.#uploadSlots = new SegmentSlots(2 * settings.window);
    this.#downloadSlots = new SegmentSlots(2 * settings.window);
    this.#readAhead = new SegmentSlots(2 * settings.window);
  }

  readonly isUp = (sp: string): boolean => this.link.get(sp).up;

  async #file(session: Session, id: string): Promise<StoredFile> {
    if (!/^[0-9a-f]{32}$/.test(id)) throw new CairnError('NOT_FOUND', `no file ${id} that you can access`);
    const { file } = await this.link.chain('state.file', { id, minHeight: 0 });
    return authorize(file, session, id);
  }

  async listFiles(session: Session): Promise<FileSummary[]> {
    const { files } = await this.link.chain('state.files', { username: session.username, minHeight: 0 });
    // A record this account cannot open (a share sealed wrongly, which only a hand-made
    // transaction can do) is left out of the list rather than allowed to break it.
    const readable = files.flatMap((f) => {
      try {
        return [summarize(f, session, this.isUp)];
      } catch (err) {
        if (isCairnError(err, 'INTEGRITY')) return [];
        throw err;
      }
    });
    return readable.sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
  }

  async fileDetails(session: Session, id: string) {
    const file = await this.#file(session, id);
    const meta = fileMeta(file, fileKey(file, session));
    const r = file.record;
    return {
      id: r.id,
      name: meta.name,
      type: meta.type,
      size: r.size,
      createdAt: new Date(r.createdAt).toISOString(),
      owner: r.owner,
      sharedWith: r.owner === session.username ? Object.keys(file.shares) : [],
      k: r.k,
      m: r.m,
      segmentSize: r.segmentSize,
      firstSegmentSize: r.firstSegmentSize ?? r.segmentSize,
      root: r.root,
      inline: r.inline !== undefined,
      /** The hash of every shard below; null for an inline file, which has none. */
      hashAlg: r.inline !== undefined ? null : hashAlgOf(r.hashAlg),
      block: file.height,
      health: health(file, this.isUp),
      segments: r.segments.map((s, index) => ({
        index,
        sealedLength: s.sealedLength,
        shards: s.shards.map((sh, shard) => ({ shard, hash: sh.hash, sp: sh.sp, up: sh.sp !== null && this.isUp(sh.sp) })),
      })),
    };
  }

  startUpload(session: Session, name: string, type: string, mayRecord?: Promise<void>): FileUpload {
    return new FileUpload({ link: this.link, pool: this.pool, settings: this.settings, slots: this.#uploadSlots }, session, name, type, mayRecord);
  }

  async openDownload(session: Session, id: string) {
    const file = await this.#file(session, id);
    const key = fileKey(file, session);
    const meta = fileMeta(file, key);
    return { meta, size: file.record.size, body: () => downloadBody({ link: this.link, pool: this.pool, window: this.settings.window, slots: this.#downloadSlots, readAhead: this.#readAhead, counters: this.#downloadCounters }, file, key) };
  }

  async deleteFile(session: Session, id: string): Promise<void> {
    const file = await this.#file(session, id);
    requireOwner(file, session);
    // Deleted meanwhile (another tab, another web client): refused by the chain, and told as the
    // file being gone (404), as a delete after it would be, by reading it again.
    await this.#submit(signTx({ type: 'file.delete', fileId: id }, session.username, session.keys.signing, this.link.chainHash), () => this.#file(session, id));
  }

  async shareFile(session: Session, id: string, username: string): Promise<void> {
    const file = await this.#file(session, id);
    requireOwner(file, session);
    if (username === session.username) throw new CairnError('BAD_REQUEST', 'you already own this file');
    const user = await findUser(this.link, username);
    if (!user) throw new CairnError('NOT_FOUND', `no user ${username}`);
    const key = sealTo(user.boxKey, fileKey(file, session), keyContext(id));
    await this.#submit(signTx({ type: 'file.share', fileId: id, to: username, key }, session.username, session.keys.signing, this.link.chainHash));
  }

  /** Submits `tx`; if the chain refuses it, `recheck` (when given) may throw a better error first. */
  async #submit(tx: Tx, recheck?: () => Promise<unknown>): Promise<void> {
    const result = await this.link.chain('chain.submit', { tx });
    if (result.ok) return;
    await recheck?.();
    throw new CairnError('BAD_REQUEST', `the chain refused it: ${result.error ?? 'unknown reason'}`);
  }

  /** Each SP's view of the chain; an SP that does not answer is reported down. */
  async replicas(): Promise<{ provider: string; address: string; up: boolean; status: ChainStatus | null; shards: number | null; bytes: number | null; quarantined: number | null; scrub: ScrubStats | null; mailbox: MailboxServerStats | null }[]> {
    return Promise.all(
      this.link.providers.map(async (p) => {
        try {
          const { body } = await this.link.to(p.id, 'sp.stats', {}, { timeoutMs: 2_000 });
          return { provider: p.id, address: p.address, up: true, status: body.chain, shards: body.shards, bytes: body.bytes, quarantined: body.quarantined, scrub: body.scrub, mailbox: body.mailbox };
        } catch {
          // Unknown, not zero: an SP that does not answer has not lost what it holds.
          return { provider: p.id, address: p.address, up: false, status: null, shards: null, bytes: null, quarantined: null, scrub: null, mailbox: null };
        }
      }),
    );
  }

  async chainInfo() {
    const replicas = await this.replicas();
    const live = replicas.filter((r) => r.status !== null);
    const best = live.reduce<(typeof live)[number] | undefined>((a, r) => (!a || r.status!.applied > a.status!.applied ? r : a), undefined);
    const leader = live.find((r) => r.status!.role === 'leader' && r.status!.hasQuorum)?.provider ?? null;
    return {
      height: best?.status!.applied ?? 0,
      head: best?.status!.head ?? null,
      leader,
      replicas: replicas.map((r) => ({ provider: r.provider, height: r.status?.applied ?? null, head: r.status?.head ?? null, up: r.up })),
    };
  }

  async blocks(from: number, limit: number) {
    return (await this.link.chain('chain.blocks', { from, limit })).blocks;
  }

  /**
   * Every replica verified on its own, and all holding the same block at the height the leader had
   * applied when we asked (waited for up to 2 s): one a block or two behind is catching up, not broken.
   * A run walks each whole chain, so callers while one runs share it.
   */
  verify(): Promise<ChainVerdict> {
    return this.#verify.get();
  }

  readonly #verify = new SharedRun(() => this.#verifyNow());

  async #verifyNow(): Promise<ChainVerdict> {
    const atHeight = await this.link.headHeight().catch(() => 0);
    const replicas = await Promise.all(
      this.link.providers.map(async (p) => {
        const unreachable = (problem: string) => ({ provider: p.id, ok: false as const, height: null, problems: [{ height: null, problem }] });
        // A walk of a long chain may take a minute; an SP the probes find down meanwhile is not
        // waited for (one stalled SP held the chain page for that whole minute).
        let watching: NodeJS.Timeout | undefined;
        const down = new Promise<ReturnType<typeof unreachable>>((resolve) => {
          const check = () => (p.up ? undefined : resolve(unreachable(`not answering: ${p.lastError ?? 'down'}`)));
          check();
          watching = setInterval(check, 500);
        });
        try {
          return await Promise.race([this.link.to(p.id, 'chain.verify', atHeight > 0 ? { atHeight } : {}, { timeoutMs: 60_000 }).then((r) => r.body), down]);
        } catch (err) {
          return unreachable(`unreachable: ${(err as Error).message}`);
        } finally {
          clearInterval(watching);
        }
      }),
    );
    const heads = new Set(replicas.filter((r) => r.ok).map((r) => ('at' in r && r.at ? r.at.hash : `height ${r.height}`)));
    return { ok: replicas.every((r) => r.ok) && heads.size <= 1, replicas };
  }

  /** Starts a full repair pass on the chain leader (the only SP that repairs). */
  async repair(): Promise<void> {
    await this.link.chain('repair.start', {});
  }

  async cluster() {
    const replicas = await this.replicas();
    // A leader without a majority leads nothing (as chainInfo says).
    const leader = replicas.find((r) => r.status?.role === 'leader' && r.status.hasQuorum);
    const repair = leader ? await this.link.to(leader.provider, 'repair.status', {}, { timeoutMs: 2_000 }).then((r) => r.body, () => null) : null;
    return {
      repair,
      leader: leader?.provider ?? null,
      providers: replicas.map((r) => ({
        id: r.provider,
        address: r.address,
        up: r.up,
        role: r.status?.role ?? null,
        height: r.status?.applied ?? null,
        shards: r.shards,
        bytes: r.bytes,
        quarantined: r.quarantined,
        scrub: r.scrub,
        mailbox: r.mailbox,
      })),
      pool: { ...this.pool.stats(), uploadSlots: this.#uploadSlots.stats(), downloadSlots: this.#downloadSlots.stats(), readAheadSlots: this.#readAhead.stats() },
      coding: { k: this.settings.k, m: this.settings.m, segmentSize: this.settings.segmentSize },
      hedges: { shardReads: this.#downloadCounters.hedges, chainReads: this.link.readHedges },
    };
  }

  /** Healthy when a majority of SPs answers and one of them leads with a quorum. */
  async healthy(): Promise<boolean> {
    const replicas = await this.replicas();
    const up = replicas.filter((r) => r.status !== null);
    return up.length > replicas.length / 2 && up.some((r) => r.status!.role === 'leader' && r.status!.hasQuorum);
  }
}
