/**
 * A real agent stack hosted in this process: its own `SqliteLocalStore` file and its own
 * `SyncManager` over its own NATS connection (`NatsSyncTransport`), wired as
 * `apps/agent/src/sync-runner.ts` wires them (minus the per-process signal handlers, which a fleet
 * of agents in one process cannot each install). Offline = the manager stopped and its connection
 * closed; online = a new manager and connection over the same store (the durable outbox and
 * cursor carry over, as across an agent restart).
 */
import { agentConnectOptions, CriticalParticipant, MeteredTransport, NatsSyncTransport, SyncManager } from '@fleet/agent-sync';
import { HARNESS_COORDINATOR_KEYS } from './services';
import type { SyncManagerOptions, SyncStore, VerifyReport, VerifyTarget, WireMeter } from '@fleet/agent-sync';
import { SqliteLocalStore } from '@fleet/agent-store';
import { canonicalJson } from '@fleet/sync-core';
import type { Change, Fields, RecordRef, StrategyConfig } from '@fleet/sync-core';

/** Bytes the agents put on and took off the wire (payloads of publishes, requests and replies). */
export interface WireCounters {
  bytesOut: number;
  bytesIn: number;
  publishes: number;
  requests: number;
  nudges: number;
}

export function newWireCounters(): WireCounters {
  return { bytesOut: 0, bytesIn: 0, publishes: 0, requests: 0, nudges: 0 };
}

/** The harness's byte counts, from the transport's meter (the agent's `fleet_sync.wire.bytes` comes from the same one). */
function countInto(c: WireCounters): WireMeter {
  return (direction, _message, bytes, kind) => {
    if (direction === 'out') c.bytesOut += bytes;
    else c.bytesIn += bytes;
    if (kind === 'publish') c.publishes++;
    else if (kind === 'request' && direction === 'out') c.requests++;
    else if (kind === 'nudge') c.nudges++;
  };
}

export interface FleetAgentOptions {
  readonly id: string;
  readonly dataDir: string;
  readonly natsUrl: string;
  readonly namespace: string;
  readonly strategies: StrategyConfig;
  readonly groups?: readonly string[];
  /** Collections verified by Merkle exchange in every scope the agent holds. */
  readonly collections: readonly string[];
  readonly wire: WireCounters;
  /** SQLite `synchronous` (FULL by default, as deployed; the 1,000-agent bench uses NORMAL). */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** The injected random source of the sync manager (jitter): seeded for replay. */
  readonly random?: () => number;
  readonly onRemote?: (agent: FleetAgent, ref: RecordRef, atMs: number) => void;
  readonly onFailure?: (agent: FleetAgent, error: string) => void;
  /** The store's wall clock (epoch ms): a skewed or simulated clock. Default `Date.now`. */
  readonly now?: () => number;
  /** Sync manager settings: its connection (e.g. a short push backoff), how often pulls re-read the push-side report. */
  readonly sync?: Pick<SyncManagerOptions, 'connection' | 'pushHealthSampleMs'>;
}

export class FleetAgent {
  /** The open store; replaced by `reopen()` (an agent restart over the same data dir). */
  store: SqliteLocalStore;
  /** Change ids the agent got a PubAck for (markSent is called only after one). */
  readonly acked = new Set<string>();
  /** Every change the agent made locally, in order. */
  readonly made: Change[] = [];
  manager: SyncManager | undefined;
  /** The critical-operation participant (two-phase commit), while online. */
  critical: CriticalParticipant | undefined;
  lastVerify: { violations: number; reports: VerifyReport[] } | undefined;
  private verifyWaiters: ((v: { violations: number; reports: VerifyReport[] }) => void)[] = [];
  private pendingReports: VerifyReport[] = [];
  failures = 0;
  readonly port: SyncStore;

  constructor(readonly o: FleetAgentOptions) {
    this.store = this.openStore();
    const acked = this.acked;
    // Every call goes to the store open now, so the port survives `reopen()`.
    this.port = {
      agentId: o.id,
      getState: (r) => this.store.getState(r),
      peekOutbox: (n) => this.store.peekOutbox(n),
      markSent: (ids) => {
        const n = this.store.markSent(ids);
        for (const id of ids) acked.add(id);
        return n;
      },
      recordFailure: (ids, e) => this.store.recordFailure(ids, e),
      outboxSize: () => this.store.outboxSize(),
      outboxStats: () => this.store.outboxStats(),
      applyRemote: (items, cursor) => this.store.applyRemote(items, cursor),
      applyRemoteWire: (records, cursor) => this.store.applyRemoteWire(records, cursor),
      syncState: () => this.store.syncState(),
      setSyncState: (p) => this.store.setSyncState(p),
      merkleEntries: (scope, c) => this.store.merkleEntries(scope, c),
      // A verification's re-push: new changes (not in `made`); once acked, the checker finds them logged like any.
      requeueForPush: (refs) => this.store.requeueForPush(refs),
      // A verification's repair in a server-owned scope: the server's states replace the agent's, keys it lacks are dropped.
      replaceFromServer: (items, drop) => this.store.replaceFromServer(items, drop),
      watch: (l) => this.store.watch(l),
      settleOrigin: (last) => {
        // Renumbering may change only the numbers: the checker then looks for the changes made under
        // their new numbers, computed here from the originals, not read back from the store. The queue
        // is read only after a renumbering (reading it freezes its rows, and a whole read before every
        // first sync was an eighth of the 1,000-agent bench's agent CPU): settleOrigin keeps every
        // queued row and its change id, so the renumbered rows are the queued ones, and every queued
        // change was made here (the harness queues changes exactly as made; nothing is sent before
        // the first settle).
        const r = this.store.settleOrigin(last);
        if (r.shift === 0) return r;
        const shifted = (c: Change): Change => ({ ...c, originSeq: c.originSeq + r.shift, vv: { ...c.vv, [o.id]: (c.vv[o.id] ?? 0) + r.shift } });
        const after = new Map(this.store.peekOutbox(100_000).map((c) => [c.changeId, c]));
        this.made.forEach((c, i) => {
          const renumbered = after.get(c.changeId);
          if (renumbered === undefined) return;
          if (canonicalJson(renumbered) !== canonicalJson(shifted(c))) throw new Error(`settleOrigin changed more than the numbers of ${c.changeId}`);
          this.made[i] = shifted(c);
        });
        return r;
      },
    };
  }

  private openStore(): SqliteLocalStore {
    const o = this.o;
    // coalesceAbove = outboxMax: changes are queued exactly as made, so every one can be checked in the log.
    const s = SqliteLocalStore.open({
      dataDir: o.dataDir,
      agentId: o.id,
      strategies: o.strategies,
      synchronous: o.synchronous ?? 'FULL',
      outboxMax: 100_000,
      coalesceAbove: 100_000,
      ...(o.now === undefined ? {} : { now: o.now }),
    });
    if (o.onRemote !== undefined) {
      const cb = o.onRemote;
      s.watch((e) => {
        if (e.source === 'remote') cb(this, e.ref, Date.now());
      });
    }
    return s;
  }

  /**
   * An agent restart: goes offline, closes the store, runs `between` (the store is closed: e.g. a
   * restore from backup, or damage to the file), and opens the store again from the same data dir.
   * What the agent made and got acked stays recorded here (the checker's input). Comes back offline.
   */
  async reopen(between?: () => void | Promise<void>): Promise<void> {
    await this.goOffline();
    this.store.close();
    await between?.();
    this.store = this.openStore();
  }

  get id(): string {
    return this.o.id;
  }

  get scopes(): string[] {
    return [`host.${this.id}`, 'fleet', ...(this.o.groups ?? []).map((g) => `group.${g}`)];
  }

  get online(): boolean {
    return this.manager !== undefined;
  }

  verifyTargets(): VerifyTarget[] {
    return this.scopes.flatMap((scope) => this.o.collections.map((collection) => ({ scope, collection })));
  }

  /** Starts a sync manager over a new NATS connection (the reconnect protocol runs on connect). */
  goOnline(): void {
    if (this.manager !== undefined) return;
    const transport = new MeteredTransport(new NatsSyncTransport(agentConnectOptions({ servers: this.o.natsUrl, agentId: this.id }), this.o.namespace), countInto(this.o.wire), this.o.namespace);
    const m = new SyncManager({
      store: this.port,
      transport,
      namespace: this.o.namespace,
      scopes: this.scopes,
      strategy: this.o.strategies,
      verifyTargets: () => this.verifyTargets(),
      requestTimeoutMs: 15_000,
      publishTimeoutMs: 15_000,
      ...(this.o.random === undefined ? {} : { random: this.o.random }),
      ...this.o.sync,
      onReport: (r) => {
        if (r.type === 'verify-report') this.pendingReports.push(r.report);
        else if (r.type === 'verified') {
          const v = { violations: r.violations, reports: this.pendingReports.splice(0) };
          this.lastVerify = v;
          for (const w of this.verifyWaiters.splice(0)) w(v);
        } else if (r.type === 'failed') {
          this.failures++;
          this.o.onFailure?.(this, `${r.op}: ${r.error}`);
        }
      },
    });
    this.manager = m;
    m.start();
    this.critical = new CriticalParticipant({ store: this.store, transport, namespace: this.o.namespace, coordinatorKey: HARNESS_COORDINATOR_KEYS.publicKey });
    this.critical.start();
  }

  /** Stops the manager (the operation in flight finishes) and closes its connection. */
  async goOffline(): Promise<void> {
    const m = this.manager;
    this.manager = undefined;
    this.critical?.stop();
    this.critical = undefined;
    if (m !== undefined) await m.stop();
  }

  /** A Merkle verification of every (scope, collection) the agent holds; resolves with its result. */
  verify(): Promise<{ violations: number; reports: VerifyReport[] }> {
    const m = this.manager;
    if (m === undefined) return Promise.reject(new Error(`agent ${this.id} is offline`));
    const p = new Promise<{ violations: number; reports: VerifyReport[] }>((r) => this.verifyWaiters.push(r));
    m.requestVerification();
    return p;
  }

  private host(collection: string, key: string): RecordRef {
    return { scope: `host.${this.id}`, collection, key };
  }

  put(collection: string, key: string, fields: Fields): Change | null {
    const c = this.store.put(this.host(collection, key), fields);
    if (c !== null) this.made.push(c);
    return c;
  }

  patch(collection: string, key: string, fields: Fields, unset: readonly string[] = []): Change | null {
    const c = this.store.patch(this.host(collection, key), fields, unset);
    if (c !== null) this.made.push(c);
    return c;
  }

  delete(collection: string, key: string): Change | null {
    const c = this.store.delete(this.host(collection, key));
    if (c !== null) this.made.push(c);
    return c;
  }

  /** Several writes in one SQLite transaction (one fsync). */
  batch<T>(fn: () => T): T {
    return this.store.transaction(fn);
  }

  outboxSize(): number {
    return this.store.outboxSize();
  }

  cursor(): number {
    const c = this.store.syncState().cursor;
    return typeof c === 'number' ? c : c === null ? 0 : Number.NaN;
  }

  async close(): Promise<void> {
    await this.goOffline();
    this.store.close();
  }
}
