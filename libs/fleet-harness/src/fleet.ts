/**
 * One deployment and its fleet: NATS (the shared server, or a private one that can be restarted),
 * a fresh PostgreSQL database, the four services as child processes, N in-process agent stacks,
 * and what a scenario needs around them (operator API calls, server-side writes, waiting for
 * convergence, queue sampling, the convergence check).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeCriticalTxReply, encodeJson, Headers, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { CriticalOperation, CriticalTxView, Subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { parseStrategyConfig } from '@fleet/config';
import type { StrategyConfigJson } from '@fleet/config';
import type { LocalEdit, LoggedChange, RecordRef, StrategyConfig } from '@fleet/sync-core';
import { FleetAgent, newWireCounters } from './agent';
import type { WireCounters } from './agent';
import { checkConvergence } from './checker';
import type { ConvergenceResult } from './checker';
import { createDatabase, HARNESS_OPERATOR_TOKEN, ServerStack, withClient } from './services';
import type { Database, ServiceName } from './services';
import { eventually, PrivateNatsServer, sleep } from './util';

/** An operator edit of a host record: a plain write, or a counter increment made by the server. */
export type HostEdit = LocalEdit | { readonly op: 'increment'; readonly field: string; readonly by: number };

function recordUrl(base: string, ref: RecordRef): string {
  return `${base}/records/${encodeURIComponent(ref.scope)}/${encodeURIComponent(ref.collection)}/${encodeURIComponent(ref.key)}`;
}

export interface FleetOptions {
  readonly agents: number;
  readonly strategies: StrategyConfigJson;
  /** Collections agents verify and the checker lists. */
  readonly collections: readonly string[];
  /** Groups of agent i. */
  readonly groupsOf?: (i: number) => readonly string[];
  /** Run a private nats-server (needed to restart NATS, and for its byte counters). Default true. */
  readonly privateNats?: boolean;
  readonly natsUrl?: string;
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** Seeded random source for the agents' jitter. */
  readonly random?: () => number;
  readonly agentIdPrefix?: string;
  readonly serviceEnv?: Partial<Record<ServiceName, Readonly<Record<string, string>>>>;
  /**
   * Capture SQL writes to `server_records` (conflict-resolver's FLEET_CONFLICTRESOLVER_CAPTURE_SLOT, a slot
   * of this run's own, dropped by `close`) when PostgreSQL's wal_level is logical. Default true.
   */
  readonly capture?: boolean;
  /** Agents are opened and brought online this many at a time. */
  readonly startConcurrency?: number;
  readonly onRemote?: (agent: FleetAgent, ref: RecordRef, atMs: number) => void;
}

export interface QueuePeaks {
  /** Most changes waiting in all agents' outboxes at once. */
  outboxTotal: number;
  /** Most changes waiting in one agent's outbox. */
  outboxOneAgent: number;
  /** Most push messages not yet acked by the change-log (JetStream consumer pending + ack pending). */
  pushPending: number;
  /** Most appended events the version-vector had not acked yet. */
  logPending: number;
  /** Most conflicts open or waiting for an operator. */
  conflictsWaiting: number;
}

export interface ConflictRow {
  readonly collection: string;
  readonly strategy: string;
  readonly status: string;
  readonly resolvedBy: string | null;
  readonly n: number;
}

export class Fleet {
  readonly s: Subjects;
  readonly config: StrategyConfig;
  readonly wire: WireCounters = newWireCounters();
  readonly agents: FleetAgent[] = [];
  readonly peaks: QueuePeaks = { outboxTotal: 0, outboxOneAgent: 0, pushPending: 0, logPending: 0, conflictsWaiting: 0 };
  private sampler: NodeJS.Timeout | undefined;
  private sampling: Promise<void> | undefined;
  failures: string[] = [];
  /** Operator writes answered 503 (nothing committed; retried). */
  serverWriteRetries: string[] = [];
  /** Operator writes answered 202: committed, announcement pending (projected by the log sweep). */
  serverWritesUnannounced: string[] = [];

  private constructor(
    readonly o: FleetOptions,
    readonly dir: string,
    readonly nats: PrivateNatsServer | undefined,
    readonly natsUrl: string,
    readonly db: Database,
    readonly stack: ServerStack,
    readonly bus: Messaging,
  ) {
    this.s = subjects(stack.get('change-log').spec.namespace);
    this.config = parseStrategyConfig(o.strategies);
  }

  static async start(o: FleetOptions): Promise<Fleet> {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-'));
    const nats = o.privateNats === false ? undefined : await PrivateNatsServer.start();
    const natsUrl = nats?.url ?? o.natsUrl ?? process.env['FLEET_NATS_URL'] ?? 'nats://127.0.0.1:4222';
    const db = await createDatabase('fleet_run');
    const namespace = `f${randomBytes(4).toString('hex')}`;
    const captureSlot = o.capture !== false && (await walLevel(db.url)) === 'logical' ? db.name : undefined;
    const serviceEnv = { ...o.serviceEnv };
    if (captureSlot !== undefined) serviceEnv['conflict-resolver'] = { FLEET_CONFLICTRESOLVER_CAPTURE_SLOT: captureSlot, ...serviceEnv['conflict-resolver'] };
    const stack = await ServerStack.create({ databaseUrl: db.url, natsUrl, namespace, strategies: o.strategies, logDir: dir }, serviceEnv);
    try {
      await stack.start();
    } catch (e) {
      await stack.kill();
      if (captureSlot !== undefined) await dropSlot(db.url, captureSlot).catch(() => undefined);
      await db.drop().catch(() => undefined);
      await nats?.stop();
      throw e;
    }
    const bus = await Messaging.connect({ servers: [natsUrl], name: 'fleet-harness' }, subjects(namespace));
    const f = new Fleet(o, dir, nats, natsUrl, db, stack, bus);
    f.captureSlot = captureSlot;
    const prefix = o.agentIdPrefix ?? 'host';
    const width = String(o.agents).length;
    for (let i = 0; i < o.agents; i++) {
      const id = `${prefix}-${String(i + 1).padStart(width, '0')}`;
      f.agents.push(
        new FleetAgent({
          id,
          dataDir: join(dir, 'agents', id),
          natsUrl,
          namespace,
          strategies: f.config,
          groups: o.groupsOf?.(i) ?? [],
          collections: o.collections,
          wire: f.wire,
          ...(o.synchronous === undefined ? {} : { synchronous: o.synchronous }),
          ...(o.random === undefined ? {} : { random: o.random }),
          ...(o.onRemote === undefined ? {} : { onRemote: o.onRemote }),
          onFailure: (a, e) => void (f.failures.length < 200 ? f.failures.push(`${a.id} ${e}`) : undefined),
        }),
      );
    }
    return f;
  }

  /** Group memberships on the delta calculator (authorises group pulls, routes nudges). */
  async registerGroups(concurrency = 8): Promise<void> {
    const todo = this.agents.map((a, i) => ({ a, groups: this.o.groupsOf?.(i) ?? [] })).filter((x) => x.groups.length > 0);
    await pool(todo, concurrency, async ({ a, groups }) => {
      await httpJson('PUT', `${this.stack.deltaUrl}/agents/${a.id}/groups`, { groups });
    });
  }

  /**
   * Operator write of desired state (`fleet`, `group.<g>`): `PUT /records/:scope/:collection/:key` on
   * the conflict-resolver.
   */
  async serverPut(ref: RecordRef, fields: Record<string, unknown>, unset?: readonly string[]): Promise<LoggedChange> {
    return this.operatorWrite('PUT', recordUrl(this.stack.operatorUrl, ref), { fields, ...(unset === undefined ? {} : { unset }) });
  }

  async serverDelete(ref: RecordRef): Promise<LoggedChange> {
    return this.operatorWrite('DELETE', recordUrl(this.stack.operatorUrl, ref));
  }

  /**
   * An operator's edit of a HOST-scoped record (the server editing an agent's local settings: with the
   * agent's own edits, this is where agent/server conflicts come from), through the operator API like
   * any operator write: `PUT`/`DELETE /records/host.<id>/...`, or `POST .../increment` for a counter
   * (the read-modify-write is made by the server on the record's state at the log's head, under its
   * lock). `edit` may look at the record's current visible fields as the records projection shows them
   * (it may lag: only to choose what to do, e.g. delete only what exists).
   */
  async serverEditHost(ref: RecordRef, edit: HostEdit | ((current: Record<string, unknown> | null) => HostEdit)): Promise<LoggedChange> {
    let e: HostEdit;
    if (typeof edit === 'function') {
      const [row] = await this.sql<{ fields: Record<string, unknown> | null }>(`select fields from records where scope = $1 and collection = $2 and key = $3`, [ref.scope, ref.collection, ref.key]);
      e = edit(row?.fields ?? null);
    } else e = edit;
    const url = recordUrl(this.stack.operatorUrl, ref);
    if (e.op === 'increment') return this.operatorWrite('POST', `${url}/increment`, { field: e.field, by: e.by });
    if (e.op === 'delete') return this.operatorWrite('DELETE', url);
    return this.operatorWrite('PUT', url, { fields: e.fields, ...(e.unset === undefined ? {} : { unset: e.unset }) });
  }

  /**
   * One operator write. The conflict-resolver retries the change's announcement itself and answers 202
   * (`announced: false`, counted in `serverWritesUnannounced`) when it is committed but still
   * unannounced: never retried (that would write twice), the log sweep projects it. A 503 (nothing
   * committed: the database or the resolver is away) is retried as an operator would.
   */
  private async operatorWrite(method: string, url: string, body?: unknown): Promise<LoggedChange> {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = (await httpJson(method, url, body)) as { change: LoggedChange; announced?: boolean; note?: string };
        if (r.announced === false) this.serverWritesUnannounced.push(`${method} ${url}: seq ${r.change.seq}: ${r.note ?? ''}`);
        return r.change;
      } catch (e) {
        if (attempt >= 60 || !(e instanceof Error) || !/HTTP 503/.test(e.message)) throw e;
        this.serverWriteRetries.push(e.message.slice(0, 300));
        await sleep(500);
      }
    }
  }

  /** Pending manual conflicts (operator API). */
  async pendingConflicts(): Promise<{ id: number; ref: RecordRef; conflict: { fields: { field: string; sides: { origin: string }[] }[] } }[]> {
    const out: { id: number; ref: RecordRef; conflict: { fields: { field: string; sides: { origin: string }[] }[] } }[] = [];
    for (let after = 0; ; ) {
      const page = (await httpJson('GET', `${this.stack.operatorUrl}/conflicts?status=pending&limit=200&after=${after}`)) as { items: typeof out; nextCursor: number; hasMore: boolean };
      out.push(...page.items);
      if (!page.hasMore) return out;
      after = page.nextCursor;
    }
  }

  /** An operator's decision (`POST /conflicts/:id/resolve`). */
  async resolveConflict(id: number, choice: { take: string } | { fields: Record<string, unknown> } | { deleted: true }): Promise<{ ok: boolean; status: number; body: unknown }> {
    const r = await fetch(`${this.stack.operatorUrl}/conflicts/${id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${HARNESS_OPERATOR_TOKEN}` }, body: JSON.stringify(choice), signal: AbortSignal.timeout(30_000) });
    return { ok: r.ok, status: r.status, body: await r.json().catch(() => null) };
  }

  /** A critical operation (two-phase commit) through the change-log's operator API on NATS; resolves once decided. */
  async beginCritical(operation: CriticalOperation, agents: readonly string[], voteTimeoutMs?: number): Promise<CriticalTxView> {
    const body = { protocol: PROTOCOL_VERSION, operation, agents, ...(voteTimeoutMs === undefined ? {} : { voteTimeoutMs }) };
    const reply = decodeCriticalTxReply((await this.bus.request(this.s.criticalApi('begin'), encodeJson(body), { timeoutMs: 60_000, headers: { [Headers.Authorization]: `Bearer ${HARNESS_OPERATOR_TOKEN}` } })).data);
    if (!reply.ok) throw new Error(`critical operation ${operation.kind} ${operation.name}: ${reply.error.code} ${reply.error.message}`);
    return reply.value.transaction;
  }

  /** The replication slot conflict-resolver captures `server_records` from; undefined when capture is off (wal_level, `capture: false`). */
  captureSlot: string | undefined;

  sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(this.db.url, async (c) => (await c.query(text, params)).rows as T[]);
  }

  async conflictStats(): Promise<ConflictRow[]> {
    const rows = await this.sql<{ collection: string; strategy: string; status: string; resolved_by: string | null; n: number }>(
      `select collection, strategy, status, resolved_by, count(*)::int as n from conflicts group by 1, 2, 3, 4 order by 1, 2, 3, 4`,
    );
    return rows.map((r) => ({ collection: r.collection, strategy: r.strategy, status: r.status, resolvedBy: r.resolved_by, n: r.n }));
  }

  /**
   * The server is quiet: no push waiting in JetStream or delivered and not yet acked (a delivery in
   * flight when NATS dies comes back after the consumer's ack wait, not before), no conflict open, the
   * records projection at the log's head, the delta projection too.
   */
  async serverQuiet(): Promise<boolean> {
    const push = await this.bus
      .jsm()
      .then((jsm) => jsm.consumers.info(this.s.streams.push, `${this.s.ns}-change-log`))
      .catch(() => undefined);
    if (push === undefined || push.num_pending + push.num_ack_pending > 0) return false;
    const [r] = await this.sql<{ open: number; lag: number; dlag: number }>(
      `select (select count(*)::int from conflicts where status = 'open') as open,
              (select count(*)::int from (select scope, collection, key, max(seq) as m from change_log group by 1, 2, 3) l
                 left join records r using (scope, collection, key) where r.last_seq is distinct from l.m) as lag,
              (select count(*)::int from change_log where seq > (select cursor from delta_progress where name = 'record_states')) as dlag`,
    );
    return r !== undefined && r.open === 0 && r.lag === 0 && r.dlag === 0;
  }

  /**
   * Every online agent holds every change of its scopes: its outbox is empty and its cursor is at
   * or past the last logged change of each of its scopes; and the server is quiet. Checks only
   * positions; `check()` compares the data.
   */
  async converged(agents: readonly FleetAgent[] = this.agents): Promise<boolean> {
    if (agents.some((a) => a.outboxSize() > 0)) return false;
    if (!(await this.serverQuiet())) return false;
    const rows = await this.sql<{ scope: string; m: string }>(`select scope, max(seq) as m from change_log group by scope`);
    const max = new Map(rows.map((r) => [r.scope, Number(r.m)]));
    for (const a of agents) {
      const c = a.cursor();
      for (const s of a.scopes) if ((max.get(s) ?? 0) > c) return false;
    }
    return (await this.serverQuiet()) && agents.every((a) => a.outboxSize() === 0);
  }

  /** Until `converged()` for the online agents (all agents when every one is online). */
  async waitConverged(timeoutMs: number, onTick?: () => void): Promise<number> {
    const t0 = performance.now();
    await eventually(
      async () => {
        onTick?.();
        return this.converged(this.agents.filter((a) => a.online));
      },
      timeoutMs,
      'every agent to hold every change of its scopes',
      100,
    );
    return performance.now() - t0;
  }

  /** Samples queue depths every `everyMs` into `peaks`. */
  startSampling(everyMs = 250): void {
    if (this.sampler !== undefined) return;
    this.sampler = setInterval(() => {
      this.sampling ??= this.sample().finally(() => (this.sampling = undefined));
    }, everyMs);
  }

  async sample(): Promise<void> {
    let total = 0;
    for (const a of this.agents) {
      const n = a.outboxSize();
      total += n;
      if (n > this.peaks.outboxOneAgent) this.peaks.outboxOneAgent = n;
    }
    if (total > this.peaks.outboxTotal) this.peaks.outboxTotal = total;
    try {
      const jsm = await this.bus.jsm();
      const push = await jsm.consumers.info(this.s.streams.push, `${this.s.ns}-change-log`);
      this.peaks.pushPending = Math.max(this.peaks.pushPending, push.num_pending + push.num_ack_pending);
      const log = await jsm.consumers.info(this.s.streams.log, `${this.s.ns}-version-vector`).catch(() => undefined);
      if (log !== undefined) this.peaks.logPending = Math.max(this.peaks.logPending, log.num_pending + log.num_ack_pending);
      const [c] = await this.sql<{ n: number }>(`select count(*)::int as n from conflicts where status in ('open', 'pending')`);
      this.peaks.conflictsWaiting = Math.max(this.peaks.conflictsWaiting, c?.n ?? 0);
    } catch {
      // NATS restarting, or a service down: the next sample catches up.
    }
  }

  async stopSampling(): Promise<void> {
    if (this.sampler !== undefined) clearInterval(this.sampler);
    this.sampler = undefined;
    await this.sampling;
  }

  /** Merkle verification of every agent (each: all its scopes × collections). */
  async verifyAll(concurrency = 10): Promise<{ agents: number; violations: number; targets: number; roundTrips: number; failed: string[] }> {
    let violations = 0;
    let targets = 0;
    let roundTrips = 0;
    const failed: string[] = [];
    await pool(this.agents, concurrency, async (a) => {
      let timer: NodeJS.Timeout | undefined;
      const v = await Promise.race([a.verify(), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 60_000)))]);
      clearTimeout(timer);
      if (v === undefined) {
        failed.push(`${a.id}: verification did not finish in 60 s`);
        return;
      }
      violations += v.violations;
      targets += v.reports.length;
      for (const r of v.reports) {
        roundTrips += r.roundTrips;
        if (r.missingHere + r.missingThere + r.differing > 0) failed.push(`${a.id} ${r.target.scope}/${r.target.collection}: missingHere ${r.missingHere}, missingThere ${r.missingThere}, differing ${r.differing}`);
      }
    });
    return { agents: this.agents.length, violations, targets, roundTrips, failed };
  }

  check(): Promise<ConvergenceResult> {
    return checkConvergence({ databaseUrl: this.db.url, agents: this.agents, config: this.config, collections: this.o.collections });
  }

  async bringOnline(agents: readonly FleetAgent[] = this.agents): Promise<void> {
    for (const a of agents) a.goOnline();
  }

  async takeOffline(agents: readonly FleetAgent[]): Promise<void> {
    await Promise.all(agents.map((a) => a.goOffline()));
  }

  /** Stops everything and removes the database, streams and files (unless `keep`). Returns the services' exit codes. */
  async close(opts: { keep?: boolean } = {}): Promise<Record<ServiceName, number | null> | undefined> {
    await this.stopSampling();
    for (const a of this.agents) await a.close().catch(() => undefined);
    let codes: Record<ServiceName, number | null> | undefined;
    try {
      codes = await this.stack.stop();
    } catch {
      await this.stack.kill();
    }
    if (this.nats === undefined) {
      const jsm = await this.bus.jsm().catch(() => undefined);
      if (jsm !== undefined) {
        const prefix = `${this.s.ns.toUpperCase()}_`;
        for await (const name of jsm.streams.names()) if (name.startsWith(prefix)) await jsm.streams.delete(name).catch(() => undefined);
      }
    }
    await this.bus.drain().catch(() => undefined);
    await this.nats?.stop();
    if (!opts.keep) {
      // A database with a replication slot cannot be dropped, and a slot left behind holds the server's WAL.
      if (this.captureSlot !== undefined) await dropSlot(this.db.url, this.captureSlot).catch(() => undefined);
      await this.db.drop().catch(() => undefined);
      rmSync(this.dir, { recursive: true, force: true });
    }
    return codes;
  }
}

function walLevel(url: string): Promise<string | undefined> {
  return withClient(url, async (c) => ((await c.query('show wal_level')).rows[0] as { wal_level?: string } | undefined)?.wal_level);
}

/** Drops a logical replication slot once no process streams from it (a killed service's walsender takes a moment to go). */
function dropSlot(url: string, slot: string): Promise<void> {
  return withClient(url, async (c) => {
    for (let i = 0; i < 100; i++) {
      const rows = (await c.query('select active from pg_replication_slots where slot_name = $1', [slot])).rows as Array<{ active: boolean }>;
      if (rows[0] === undefined) return;
      if (!rows[0].active) {
        await c.query('select pg_drop_replication_slot($1)', [slot]);
        return;
      }
      await sleep(100);
    }
  });
}

/** An operator's HTTP request: JSON in and out, with the harness's operator token (every operator request needs it, reads too). */
export async function httpJson(method: string, url: string, body?: unknown): Promise<unknown> {
  const r = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${HARNESS_OPERATOR_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${url}: HTTP ${r.status} ${text.slice(0, 500)}`);
  return text === '' ? null : (JSON.parse(text) as unknown);
}

export async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (i < items.length) {
      const item = items[i++] as T;
      await fn(item);
    }
  });
  await Promise.all(workers);
}
