/**
 * The agent's sync manager: runs sync-core's connection state machine (`connection.ts`) against a
 * real transport and the local store. The machine decides; this class only moves bytes, arms timers
 * and feeds outcomes back as events, one at a time, in arrival order.
 *
 * Operations (one in flight at a time, by the machine's construction):
 * - pull: one page from the durable cursor; un-gzip, decode, count conflicts (sync-core's join, the
 *   server's code), then `applyRemote(records, nextCursor)`: records and cursor in one transaction.
 * - push: one batch from the outbox; `Nats-Msg-Id` = batch id derived from its change ids; rows leave
 *   the outbox (`markSent`) only after the PubAck; a failure is recorded on the rows.
 * - verify: the Merkle exchange per (scope, collection), then the repairs.
 */
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import { FleetError, isFleetError } from '@fleet/errors';
import { decodeEncodingHeader, decodeNextCursorHeader, decodeOriginResponse, encodeJson, Headers, isServerScope, MAX_CHANGES_PER_PUSH, MAX_PULL_LIMIT, MAX_PULL_RESPONSE_BYTES, MAX_SNAPSHOT_RESPONSE_BYTES, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { PullCursor, PushHealth, Subjects } from '@fleet/contracts';
import {
  DEFAULT_CONNECTION_CONFIG,
  initialConnection,
  mergePulledRecords,
  MerkleTree,
  nextPass,
  planVerifyFetch,
  settleAfterFetch,
  startVerify,
  stepConnection,
  stepVerify,
} from '@fleet/sync-core';
import type {
  ConnectionConfig,
  ConnectionEffect,
  ConnectionEvent,
  ConnectionMachine,
  MerkleDiff,
  RecordRef,
  RecordState,
  RemoteRecord,
  StrategyConfig,
  SyncStatus,
} from '@fleet/sync-core';
import type { SyncStore } from './ports';
import { PullDecoder } from './pull-decoder';
import type { DecodedPull } from './pull-decoder';
import type { SyncTransport, TransportReply } from './transport';
import {
  buildMerkleRequest,
  buildPullKeysRequest,
  buildPullRequest,
  buildPushBatch,
  chunk,
  decodeMerkleReply,
  decodePullKeysPage,
  decodePullWirePage,
  liveMerkleEntries,
  pushHealthOf,
  remoteRecordsOf,
} from './protocol/wire';

const gunzip = promisify(gunzipCb);

export interface VerifyTarget {
  readonly scope: string;
  readonly collection: string;
}

export interface VerifyReport {
  readonly target: VerifyTarget;
  readonly missingHere: number;
  readonly missingThere: number;
  readonly differing: number;
  /** Records fetched from the server: joined here (the agent's own scope), or replacing the local ones (server-owned scopes). */
  readonly fetched: number;
  /** Records queued for push again. */
  readonly repushed: number;
  /** Server-owned scopes (fleet, group): local records the server's state replaced (rewritten, not joined). */
  readonly replaced: number;
  /** Server-owned scopes: local records removed because the server does not hold them. */
  readonly dropped: number;
  /** Keys that differ and could not be repaired from here (see docs/agent-sync.md). */
  readonly unrepaired: readonly string[];
  readonly roundTrips: number;
}

export interface SyncManagerOptions {
  readonly store: SyncStore;
  readonly transport: SyncTransport;
  /** Subject namespace (default `sync`). */
  readonly namespace?: string;
  /** Scopes to pull: default the host scope and `fleet`; add `group.<name>` for each group. */
  readonly scopes?: readonly string[];
  /** The same strategy configuration as the server (conflict counting uses it). */
  readonly strategy: StrategyConfig;
  /**
   * Collections to verify, per scope, or a function asked at each verification (collections appear
   * over time); default none (verification then checks nothing). `agent run` passes every collection
   * its store holds in each of its scopes, plus FLEET_AGENT_VERIFY_COLLECTIONS (apps/agent sync-runner.ts).
   */
  readonly verifyTargets?: readonly VerifyTarget[] | (() => readonly VerifyTarget[]);
  readonly connection?: Partial<ConnectionConfig>;
  readonly requestTimeoutMs?: number;
  readonly publishTimeoutMs?: number;
  /** Records per pull page asked for (the server caps it). */
  readonly pullLimit?: number;
  /** Gather local writes this long before the first push of a burst (writes made while a push is in flight go with the next one). Default 5 ms. */
  readonly pushLingerMs?: number;
  /** The push-side report pulls carry is read from the store at most this often. Default PUSH_HEALTH_SAMPLE_MS. */
  readonly pushHealthSampleMs?: number;
  readonly now?: () => number;
  readonly random?: () => number;
  readonly timers?: { set(fn: () => void, ms: number): unknown; clear(handle: unknown): void };
  /** Every report the machine makes (`synced`, `failed`, `verified`) and every transition, for logs and metrics. */
  readonly onReport?: (
    report:
      | ConnectionEffect
      | { type: 'transition'; from: string; to: string; event: string }
      | { type: 'verify-report'; report: VerifyReport }
      | { type: 'origin-settled'; lastLogged: number | null; shift: number; renumbered: number; ownFrom: number }
      /** One operation done: a push batch (publish to PubAck), a pull page (request to applied) or a verification. */
      | { type: 'operation'; op: 'push' | 'pull' | 'verify'; outcome: 'ok' | 'failed'; ms: number },
  ) => void;
}

const HEADER_ROOM = 8 * 1024;
/** The push-side report pulls carry is read from the store at most this often (it may scan the outbox). */
export const PUSH_HEALTH_SAMPLE_MS = 5000;
/** After a server refused a pull carrying the push-side report (an older replica), pulls go without it for this long. */
export const HEALTH_RETRY_MS = 10 * 60_000;

export class SyncManager {
  private readonly s: Subjects;
  private readonly agentId: string;
  private readonly scopes: readonly string[];
  private readonly config: ConnectionConfig;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly timers: NonNullable<SyncManagerOptions['timers']>;
  private machine: ConnectionMachine | undefined;
  private readonly queue: ConnectionEvent[] = [];
  private draining = false;
  private timer: unknown;
  private linger: unknown;
  private readonly unsubs: (() => void)[] = [];
  private stoppedResolve: (() => void) | undefined;
  private readonly stopped: Promise<void>;
  private readonly syncWaiters: ((s: SyncStatus) => void)[] = [];
  /** The batch published and not yet marked sent: a retry in this process re-sends exactly it. */
  private inflightBatch: readonly string[] | undefined;
  /** The push-side report pulls carry, as last read from the store (`PUSH_HEALTH_SAMPLE_MS`). */
  private health: { readonly at: number; readonly report: PushHealth } | undefined;
  /**
   * When a server refused a pull carrying `health` as a protocol it does not speak (an older replica):
   * pulls carry none for `HEALTH_RETRY_MS`, then try again (replicas are upgraded one by one).
   */
  private healthRefusedAt: number | undefined;
  lastSync: SyncStatus | undefined;
  lastVerify: VerifyReport[] = [];

  constructor(private readonly o: SyncManagerOptions) {
    this.agentId = o.store.agentId;
    this.s = subjects(o.namespace);
    this.scopes = o.scopes ?? [`host.${this.agentId}`, 'fleet'];
    this.config = { ...DEFAULT_CONNECTION_CONFIG, ...o.connection };
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.timers = o.timers ?? { set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(h as NodeJS.Timeout) };
    this.stopped = new Promise((r) => (this.stoppedResolve = r));
  }

  get state(): string {
    return this.machine?.state ?? 'new';
  }

  /** Starts the machine: connects (in the background: the agent works offline meanwhile), subscribes to nudges and to the outbox. */
  start(): void {
    if (this.machine !== undefined) return;
    this.adoptScopes();
    const init = initialConnection(this.env(), { verifyPending: this.o.store.syncState().needsVerification });
    this.machine = init.machine;
    this.unsubs.push(
      this.o.transport.onStatus((online) => {
        // A page read ahead before the link went down is dropped: used after the reconnect, its
        // `hasMore: false` could report "synced" while changes made during the outage wait.
        if (!online) this.pullAhead = undefined;
        this.dispatch({ type: online ? 'connected' : 'disconnected' });
      }),
    );
    this.unsubs.push(this.o.transport.subscribe(this.s.notify(this.agentId), () => this.dispatch({ type: 'nudge' })));
    this.unsubs.push(
      this.o.store.watch((e) => {
        // New rows in the outbox come from local and captured writes only (pulled records and renumbered rows add none).
        if ((e.source !== 'local' && e.source !== 'captured') || this.linger !== undefined) return;
        this.linger = this.timers.set(() => {
          this.linger = undefined;
          this.dispatch({ type: 'outbox-changed' });
        }, this.o.pushLingerMs ?? 5);
      }),
    );
    this.run(init.effects);
  }

  /**
   * The cursor covers the scopes it was pulled for. A scope added since (a group joined, the agent's
   * configuration changed) has records before the cursor that no later page would bring: then the
   * cursor starts over (the next pull is a snapshot of every scope; joins are idempotent, and the
   * agent's own records are left out of it). A store from before the record of scopes is taken to cover
   * the current ones. A scope removed needs nothing (its records stay, no longer updated).
   */
  private adoptScopes(): void {
    const st = this.o.store.syncState();
    const held = st.scopes;
    const added = held === undefined ? [] : this.scopes.filter((sc) => !held.includes(sc));
    if (held !== undefined && added.length === 0 && held.length === this.scopes.length) return;
    this.o.store.setSyncState(added.length > 0 && st.cursor !== null ? { cursor: null, scopes: this.scopes } : { scopes: this.scopes });
  }

  /** Stops after the operation in flight (a published batch is still marked sent); resolves when closed. */
  async stop(): Promise<void> {
    if (this.machine === undefined) return;
    this.dispatch({ type: 'stop' });
    await this.stopped;
  }

  /** Asks for a Merkle verification at the next opportunity. */
  requestVerification(): void {
    this.dispatch({ type: 'verify-needed' });
  }

  /**
   * As if this process had written: push what is queued (when allowed; a push backing off keeps its
   * deadline). For changes queued by another process on the same store (`agent put` beside `agent run`),
   * whose writes this process's `watch` does not see.
   */
  pushNow(): void {
    if (this.o.store.outboxSize() > 0) this.dispatch({ type: 'outbox-changed' });
  }

  /** As if the server nudged: pull now (when idle). */
  syncNow(): void {
    this.dispatch({ type: 'nudge' });
  }

  /** Resolves with the next completed sync cycle's status. */
  nextSync(): Promise<SyncStatus> {
    return new Promise((r) => this.syncWaiters.push(r));
  }

  /**
   * `onReport`, never letting it throw into the manager: it runs between a state change and the effects
   * that follow it (the next operation, the timer), and a reporter that fails (a status file on a full
   * disk) must not leave the machine waiting for an outcome that never comes.
   */
  private report(r: Parameters<NonNullable<SyncManagerOptions['onReport']>>[0]): void {
    try {
      this.o.onReport?.(r);
    } catch {
      // reporting is best effort; syncing goes on
    }
  }

  private env() {
    return { nowMs: this.now(), random: this.random, config: this.config };
  }

  private dispatch(event: ConnectionEvent): void {
    this.queue.push(event);
    if (this.draining) return;
    this.draining = true;
    try {
      for (let e = this.queue.shift(); e !== undefined; e = this.queue.shift()) {
        if (this.machine === undefined) continue;
        const from = this.machine.state;
        const step = stepConnection(this.machine, e, this.env());
        this.machine = step.machine;
        if (from !== step.machine.state) this.report({ type: 'transition', from, to: step.machine.state, event: e.type });
        this.run(step.effects);
      }
    } finally {
      this.draining = false;
    }
  }

  private run(effects: readonly ConnectionEffect[]): void {
    for (const eff of effects) {
      switch (eff.type) {
        case 'connect':
          // Resolves when connected; the status listener reports it. Never rejects for an unreachable server (it retries).
          void this.o.transport.connect().catch((e: unknown) => this.report({ type: 'failed', op: 'pull', error: describe(e), attempt: 0 }));
          break;
        case 'run': {
          const started = this.now();
          void this.operate(eff.op).then((ev) => {
            this.report({ type: 'operation', op: eff.op, outcome: ev.type.endsWith('-failed') ? 'failed' : 'ok', ms: Math.max(0, this.now() - started) });
            this.dispatch(ev);
          });
          break;
        }
        case 'set-timer':
          if (this.timer !== undefined) this.timers.clear(this.timer);
          this.timer = this.timers.set(() => {
            this.timer = undefined;
            this.dispatch({ type: 'timer', id: eff.id });
          }, eff.delayMs);
          break;
        case 'cancel-timer':
          if (this.timer !== undefined) this.timers.clear(this.timer);
          this.timer = undefined;
          break;
        case 'synced':
          this.lastSync = eff.status;
          try {
            this.o.store.setSyncState({ lastSyncAt: this.now() });
          } catch {
            // informational only (status); a store that cannot write fails the next operation, which retries
          }
          this.report(eff);
          for (const w of this.syncWaiters.splice(0)) w(eff.status);
          break;
        case 'failed':
        case 'verified':
          this.report(eff);
          break;
        case 'close':
          void this.close();
          break;
      }
    }
  }

  private async close(): Promise<void> {
    for (const u of this.unsubs.splice(0)) u();
    if (this.linger !== undefined) this.timers.clear(this.linger);
    if (this.timer !== undefined) this.timers.clear(this.timer);
    await this.o.transport.close().catch(() => undefined);
    this.stoppedResolve?.();
  }

  private async operate(op: 'pull' | 'push' | 'verify'): Promise<ConnectionEvent> {
    try {
      await this.settleOrigin();
      if (op === 'pull') return await this.pullPage();
      if (op === 'push') return await this.pushBatch();
      return await this.verify();
    } catch (e) {
      const error = describe(e);
      // A server of protocol 1 refuses a pull of protocol 2 (FLEET_DECODE_003): the retry goes without the report.
      if (op === 'pull' && this.health !== undefined && isFleetError(e, 'FLEET_DECODE_003') && e.details?.['remote'] === true) this.healthRefusedAt = this.now();
      if (op === 'pull') return { type: 'pull-failed', error };
      if (op === 'push') return { type: 'push-failed', error };
      return { type: 'verify-failed', error };
    }
  }

  /**
   * A new store's numbers come from its clock (agent-store `originSeqFloor`); on a host reinstalled with
   * its clock behind, an earlier store of the same agent id may have logged numbers above them. So before
   * the store's first push or pull, ask the server for the log's highest origin sequence of this agent
   * id and let the store renumber its queued changes above it. Failing here fails the operation (retried
   * with backoff): nothing is pushed or pulled under unsettled numbers.
   */
  private async settleOrigin(): Promise<void> {
    const store = this.o.store;
    if (store.settleOrigin === undefined || store.syncState().originSettled !== false) return;
    const reply = decodeOriginResponse(await this.request(this.s.origin(this.agentId), { protocol: PROTOCOL_VERSION, agentId: this.agentId }));
    if (reply.agentId !== this.agentId) throw new FleetError('FLEET_DECODE_002', `origin reply names agent ${JSON.stringify(reply.agentId)}, not ${JSON.stringify(this.agentId)}`);
    const r = store.settleOrigin(reply.lastOriginSeq);
    this.report({ type: 'origin-settled', lastLogged: reply.lastOriginSeq, ...r });
  }

  private async body(reply: TransportReply, maxBytes: number = MAX_PULL_RESPONSE_BYTES): Promise<Uint8Array> {
    const encoding = decodeEncodingHeader(reply.header(Headers.Encoding));
    if (encoding === 'identity') return reply.data;
    try {
      // Bounded: a reply may not inflate past the decode cap (one byte over is enough to be refused there).
      const out = await gunzip(reply.data, { maxOutputLength: maxBytes + 1 });
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (cause) {
      throw new FleetError('FLEET_DECODE_001', 'reply does not gunzip (or inflates past the pull response cap)', { cause });
    }
  }

  private async request(subject: string, payload: unknown): Promise<Uint8Array> {
    const reply = await this.o.transport.request(subject, encodeJson(payload), {
      timeoutMs: this.o.requestTimeoutMs ?? 10_000,
      headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) },
    });
    return this.body(reply);
  }

  /** Decodes snapshot pages, the large ones on a worker thread (see pullPage); made for the first snapshot page. */
  private pullDecoder: PullDecoder | undefined;

  /**
   * The decoder for the reply to a pull from `cursor` when that is a snapshot page (asked for from 0 or
   * an `s.` cursor) and the store takes prepared rows; else undefined (decoded on this thread).
   */
  private snapshotDecoder(cursor: PullCursor): PullDecoder | undefined {
    if (this.o.store.applyRemoteRows === undefined || !(cursor === 0 || (typeof cursor === 'string' && cursor.startsWith('s.')))) return undefined;
    this.pullDecoder ??= new PullDecoder();
    return this.pullDecoder;
  }

  private decodeOn(decoder: PullDecoder, reply: TransportReply): Promise<DecodedPull> {
    return decoder.decode(reply.data, decodeEncodingHeader(reply.header(Headers.Encoding)) === 'gzip', MAX_SNAPSHOT_RESPONSE_BYTES);
  }

  /**
   * The pull request sent ahead for `cursor` (see pullPage); `decoded`: its page, decoded (a large one on
   * the decoder's worker) from the moment the reply arrives (while this thread applies the page before).
   */
  private pullAhead: { readonly cursor: PullCursor; readonly reply: Promise<TransportReply>; readonly decoded?: Promise<DecodedPull> | undefined } | undefined;

  /**
   * The push side a pull reports (outbox, oldest unsent change's age, changes waiting for a retry, failed
   * pushes in a row), read from the store at most every `pushHealthSampleMs`; undefined when the store
   * cannot tell, when reading it fails (the pull goes without it), or for a while after a server refused it.
   */
  private pushHealth(): PushHealth | undefined {
    const store = this.o.store;
    const now = this.now();
    if (store.outboxStats === undefined) return undefined;
    if (this.healthRefusedAt !== undefined && now >= this.healthRefusedAt && now - this.healthRefusedAt < HEALTH_RETRY_MS) return undefined;
    if (this.health !== undefined && now >= this.health.at && now - this.health.at < (this.o.pushHealthSampleMs ?? PUSH_HEALTH_SAMPLE_MS)) return this.health.report;
    try {
      this.health = { at: now, report: pushHealthOf(store.outboxStats(), this.machine?.ctx.attempts.push ?? 0) };
      return this.health.report;
    } catch {
      return undefined;
    }
  }

  private pullRequest(cursor: PullCursor): Promise<TransportReply> {
    const req = buildPullRequest(this.agentId, this.scopes, cursor, this.o.pullLimit, this.o.store.syncState().ownFrom, this.pushHealth());
    return this.o.transport.request(this.s.pull(this.agentId), encodeJson(req), {
      timeoutMs: this.o.requestTimeoutMs ?? 10_000,
      headers: { [Headers.Protocol]: String(req.protocol) },
    });
  }

  /**
   * One page: fetch, count, apply with its cursor (one transaction). A snapshot page (the bulk first
   * pull) is decoded and prepared on the pull decoder's worker and inserted with the store's
   * `applyRemoteRows` when it has one, else it goes to `applyRemoteWire`: no second check of the records, no
   * per-record state lookup for conflict counting (the store counts the operator conflicts it raises;
   * a fresh record has no "before" to compare with).
   *
   * Pipelining: a reply with more to come names the next cursor in `Fleet-Next-Cursor`; the request
   * for that page is sent at once, before this one is decoded and applied, and the next pullPage uses
   * its reply if the store's cursor is then that cursor (else it is dropped). A page read ahead is as
   * valid later as now (the cursor rule: it is a prefix of what follows the cursor); a failed read-ahead
   * is asked again; a disconnect drops it.
   */
  private async pullPage(): Promise<ConnectionEvent> {
    const t0 = this.now();
    const cursor = this.o.store.syncState().cursor ?? 0;
    const ahead = this.pullAhead;
    this.pullAhead = undefined;
    // A snapshot page is un-gzipped, decoded, checked and prepared by the pull decoder when the store
    // takes prepared rows: on its worker thread when the page is large, so this thread only inserts (pull-decoder.ts).
    const decoder = this.snapshotDecoder(cursor);
    let reply: TransportReply;
    let decoded: Promise<DecodedPull> | undefined;
    if (ahead !== undefined && ahead.cursor === cursor) {
      try {
        reply = await ahead.reply;
        decoded = ahead.decoded;
      } catch {
        reply = await this.pullRequest(cursor);
      }
    } else {
      reply = await this.pullRequest(cursor);
    }
    const next = decodeNextCursorHeader(reply.header(Headers.NextCursor));
    if (next !== undefined) {
      const p = this.pullRequest(next);
      p.catch(() => undefined); // handled when used
      const nextDecoder = this.snapshotDecoder(next);
      const d = nextDecoder === undefined ? undefined : p.then((r) => this.decodeOn(nextDecoder, r));
      d?.catch(() => undefined); // handled when used
      this.pullAhead = { cursor: next, reply: p, decoded: d };
    }
    const page: DecodedPull = decoder !== undefined ? await (decoded ?? this.decodeOn(decoder, reply)) : decodePullWirePage(await this.body(reply, MAX_SNAPSHOT_RESPONSE_BYTES));
    const latencyMs = Math.max(0, this.now() - t0);
    let pulled: number;
    let conflictsDetected: number;
    let conflictsResolved: number;
    // A page with more to come must move the cursor: otherwise the next pull asks for the same page at
    // once, for ever (a server defect). A failure instead: the pull backs off and is reported.
    if (page.hasMore && JSON.stringify(page.nextCursor) === JSON.stringify(cursor)) {
      throw new FleetError('FLEET_MSG_004', `the server answered a pull from ${JSON.stringify(cursor)} with more to come and the same cursor`);
    }
    if (page.snapshot && page.prepared !== undefined && this.o.store.applyRemoteRows !== undefined) {
      const applied = this.o.store.applyRemoteRows(page.prepared, page.nextCursor);
      pulled = applied.changed;
      conflictsDetected = applied.conflicts;
      conflictsResolved = 0;
    } else if (page.snapshot && this.o.store.applyRemoteWire !== undefined) {
      const applied = this.o.store.applyRemoteWire(page.records, page.nextCursor);
      pulled = applied.changed;
      conflictsDetected = applied.conflicts;
      conflictsResolved = 0;
    } else {
      const records = remoteRecordsOf(page.records);
      const counted = mergePulledRecords(records, (ref) => this.o.store.getState(ref) ?? undefined, () => false, this.o.strategy);
      const applied = this.o.store.applyRemote(
        records.map((r) => ({ ref: { scope: r.scope, collection: r.collection, key: r.key }, state: r.state })),
        page.nextCursor,
      );
      pulled = applied.changed;
      conflictsDetected = counted.conflictsDetected;
      conflictsResolved = counted.conflictsResolved;
    }
    this.o.store.setSyncState({ lastPullAt: this.now() });
    return {
      type: 'pull-page',
      pulled,
      conflictsDetected,
      conflictsResolved,
      hasMore: page.hasMore,
      fullResync: page.fullResync,
      latencyMs,
    };
  }

  /** One batch: publish, and only after the PubAck, mark its rows sent. */
  private async pushBatch(): Promise<ConnectionEvent> {
    const t0 = this.now();
    const rows = this.o.store.peekOutbox(MAX_CHANGES_PER_PUSH);
    const pinned = this.inflightBatch;
    // A retry in this process re-sends exactly the batch whose PubAck it missed, so JetStream dedupes it.
    const pinnedRows = pinned === undefined ? undefined : rows.slice(0, pinned.length);
    const reuse = pinned !== undefined && pinnedRows !== undefined && pinnedRows.length === pinned.length && pinnedRows.every((c, i) => c.changeId === pinned[i]);
    const maxPayload = (this.o.transport.maxPayload() ?? Number.POSITIVE_INFINITY) - HEADER_ROOM;
    const batch = buildPushBatch(this.agentId, reuse ? (pinnedRows as typeof rows) : rows, this.now(), maxPayload);
    if (batch === undefined) {
      this.inflightBatch = undefined;
      return { type: 'push-acked', pushed: 0, more: false, latencyMs: 0 };
    }
    this.inflightBatch = batch.changeIds;
    try {
      await this.o.transport.publish(this.s.push(this.agentId), batch.payload, {
        msgId: batch.batchId,
        headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) },
        timeoutMs: this.o.publishTimeoutMs ?? 10_000,
      });
    } catch (e) {
      this.o.store.recordFailure(batch.changeIds, describe(e));
      throw e;
    }
    this.o.store.markSent(batch.changeIds);
    this.inflightBatch = undefined;
    return { type: 'push-acked', pushed: batch.changeIds.length, more: this.o.store.outboxSize() > 0, latencyMs: Math.max(0, this.now() - t0) };
  }

  private targets(): readonly VerifyTarget[] {
    const t = this.o.verifyTargets;
    return typeof t === 'function' ? t() : (t ?? []);
  }

  /** The Merkle pass over every target, then the repairs; clears `needsVerification` when all went through. */
  private async verify(): Promise<ConnectionEvent> {
    const reports: VerifyReport[] = [];
    for (const target of this.targets()) reports.push(await this.verifyOne(target));
    this.lastVerify = reports;
    for (const report of reports) this.report({ type: 'verify-report', report });
    if (this.o.store.syncState().needsVerification) this.o.store.setSyncState({ needsVerification: false });
    return {
      type: 'verify-done',
      violations: reports.reduce((n, r) => n + r.missingHere + r.missingThere + r.differing, 0),
      repaired: reports.reduce((n, r) => n + r.repushed, 0),
    };
  }

  /**
   * One (scope, collection): exchanges with the server and repairs what they found. An exchange whose
   * messages had to be cut (thousands of differing buckets: a store that lost many records) ends with
   * the first bucket it did not compare; the next one starts there, until one is not cut. The tree is
   * built once: each pass compares buckets the earlier passes' repairs did not touch.
   */
  private async verifyOne(target: VerifyTarget): Promise<VerifyReport> {
    const { scope, collection } = target;
    const tree = MerkleTree.build(liveMerkleEntries(this.o.store.merkleEntries(scope, collection)));
    const counts = ['missingHere', 'missingThere', 'differing', 'fetched', 'repushed', 'replaced', 'dropped', 'roundTrips'] as const;
    const total: Record<(typeof counts)[number], number> = { missingHere: 0, missingThere: 0, differing: 0, fetched: 0, repushed: 0, replaced: 0, dropped: 0, roundTrips: 0 };
    const unrepaired: string[] = [];
    let from: number | undefined = 0;
    while (from !== undefined) {
      const start = startVerify(tree, { from });
      let state = start.state;
      let request = start.request;
      let step;
      for (;;) {
        const response = decodeMerkleReply(await this.request(this.s.merkle(this.agentId), buildMerkleRequest(this.agentId, scope, collection, request)));
        step = stepVerify(state, response);
        if (step.done) break;
        state = step.state;
        request = step.request;
      }
      const pass = { ...(await this.repair(scope, collection, step.result)), roundTrips: step.roundTrips };
      for (const k of counts) total[k] += pass[k];
      unrepaired.push(...pass.unrepaired);
      from = nextPass(from, step.next);
    }
    return { target, ...total, unrepaired: unrepaired.sort() };
  }

  /** Repairs what one exchange found (fetch, join or replace, re-push); its part of the report. */
  private async repair(scope: string, collection: string, diff: MerkleDiff): Promise<Omit<VerifyReport, 'target' | 'roundTrips'>> {
    const writable = scope === `host.${this.agentId}`;
    const plan = planVerifyFetch(diff, writable, isServerScope(scope));
    const ref = (key: string): RecordRef => ({ scope, collection, key });
    const fetched = new Map<string, RecordState>();
    let replaced = 0;
    let dropped = 0;
    for (const keys of chunk(plan.fetch, MAX_PULL_LIMIT)) {
      let rest = keys;
      while (rest.length > 0) {
        const page = decodePullKeysPage(await this.request(this.s.pullKeys(this.agentId), buildPullKeysRequest(this.agentId, rest.map(ref))));
        if (page.answered < 1) throw new FleetError('FLEET_MSG_004', 'pull keys answered nothing');
        const records: RemoteRecord[] = page.records.filter((r) => r.scope === scope && r.collection === collection);
        const answered = rest.slice(0, page.answered);
        if (plan.replace) {
          // The server is authoritative here: its states replace the local records, and the keys it
          // answered without a record are dropped. The cursor and outbox are left alone.
          const got = new Set(records.map((r) => r.key));
          const drop = answered.filter((k) => !got.has(k)).map(ref);
          if (records.length + drop.length > 0) {
            const r = this.o.store.replaceFromServer(records.map((rec) => ({ ref: ref(rec.key), state: rec.state })), drop);
            replaced += r.replaced;
            dropped += r.dropped;
          }
        } else if (records.length > 0) {
          // Joined with the cursor unchanged: a repair is not a position in the log.
          this.o.store.applyRemote(records.map((r) => ({ ref: ref(r.key), state: r.state })), this.o.store.syncState().cursor);
        }
        for (const r of records) fetched.set(r.key, r.state);
        rest = rest.slice(page.answered);
      }
    }
    // In the agent's own scope, after the join: re-push what holds writes the server has not seen (or
    // that it has no state for), report what a join could not make equal (sync-core `settleAfterFetch`).
    const local = (k: string): RecordState | undefined => this.o.store.getState(ref(k)) ?? undefined;
    const settled = writable ? settleAfterFetch(plan.fetch, local, (k) => fetched.get(k), this.o.strategy) : { repush: [], unrepaired: [] };
    const unrepaired = [...plan.unrepairable, ...settled.unrepaired];
    const repushed = settled.repush.length > 0 ? this.o.store.requeueForPush(settled.repush.map(ref)) : 0;
    return {
      missingHere: diff.missingHere.length,
      missingThere: diff.missingThere.length,
      differing: diff.differing.length,
      fetched: fetched.size,
      repushed,
      replaced,
      dropped,
      unrepaired,
    };
  }
}

function describe(e: unknown): string {
  if (isFleetError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}
