/**
 * One deployment and its fleet: NATS (the shared server, or a private one that can be restarted),
 * a fresh PostgreSQL database, the four services as child processes, N in-process agent stacks,
 * and what a scenario needs around them (operator API calls, server-side writes, waiting for
 * convergence, queue sampling, the convergence check).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import { encodeJson, Headers, MAX_CHANGES_PER_APPENDED_EVENT, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { openServerDataSource, PostgresChangeLog, ServerWriter } from '@fleet/server-store';
import { parseStrategyConfig } from '@fleet/config';
import type { StrategyConfigJson } from '@fleet/config';
import type { LocalEdit, LoggedChange, RecordRef, StrategyConfig } from '@fleet/sync-core';
import { FleetAgent, newWireCounters } from './agent';
import type { WireCounters } from './agent';
import { checkConvergence } from './checker';
import type { ConvergenceResult } from './checker';
import { createDatabase, ServerStack } from './services';
import type { Database, ServiceName } from './services';
import { eventually, PrivateNats, sleep } from './util';

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
  private writer: ServerWriter | undefined;
  private writerDs: DataSource | undefined;
  failures: string[] = [];
  /** PUT /records attempts answered 503 (retried). */
  serverWriteRetries: string[] = [];

  private constructor(
    readonly o: FleetOptions,
    readonly dir: string,
    readonly nats: PrivateNats | undefined,
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
    const nats = o.privateNats === false ? undefined : await PrivateNats.start();
    const natsUrl = nats?.url ?? o.natsUrl ?? process.env['FLEET_NATS_URL'] ?? 'nats://127.0.0.1:4222';
    const db = await createDatabase('fleet_run');
    const namespace = `f${randomBytes(4).toString('hex')}`;
    const stack = await ServerStack.create({ databaseUrl: db.url, natsUrl, namespace, strategies: o.strategies, logDir: dir }, o.serviceEnv ?? {});
    try {
      await stack.start();
    } catch (e) {
      await stack.kill();
      await db.drop().catch(() => undefined);
      await nats?.stop();
      throw e;
    }
    const bus = await Messaging.connect({ servers: [natsUrl], name: 'fleet-harness' }, subjects(namespace));
    const f = new Fleet(o, dir, nats, natsUrl, db, stack, bus);
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
   * the conflict-resolver. A retryable failure (503) is retried as an operator would; note that the
   * first attempt may already be committed (see `serverWriteRetries` and the report).
   */
  async serverPut(ref: RecordRef, fields: Record<string, unknown>, unset?: readonly string[]): Promise<LoggedChange> {
    const url = `${this.stack.operatorUrl}/records/${encodeURIComponent(ref.scope)}/${encodeURIComponent(ref.collection)}/${encodeURIComponent(ref.key)}`;
    for (let attempt = 1; ; attempt++) {
      try {
        const r = (await httpJson('PUT', url, { fields, ...(unset === undefined ? {} : { unset }) })) as { change: LoggedChange };
        return r.change;
      } catch (e) {
        if (attempt >= 60 || !(e instanceof Error) || !/HTTP 503/.test(e.message)) throw e;
        this.serverWriteRetries.push(e.message.slice(0, 300));
        await sleep(500);
      }
    }
  }

  async serverDelete(ref: RecordRef): Promise<LoggedChange> {
    const r = (await httpJson('DELETE', `${this.stack.operatorUrl}/records/${encodeURIComponent(ref.scope)}/${encodeURIComponent(ref.collection)}/${encodeURIComponent(ref.key)}`)) as { change: LoggedChange };
    return r.change;
  }

  /**
   * A server-side write of a HOST-scoped record (the server editing an agent's record, e.g. a
   * desired value the agent also reports). `PUT /records` refuses host scopes (FLEET_AUTH_003) and an
   * agent may write only its own host scope, so with the current authority model this is the only
   * way two origins ever write one record. Made with `ServerWriter` (libs/server-store: the code
   * behind `PUT /records` and every resolution: record lock, state at the log's head, server
   * origin seq, append) against the deployment's database, then announced on `log.appended` as
   * the conflict-resolver announces its writes.
   */
  async serverEditHost(ref: RecordRef, edit: (current: Record<string, unknown> | null) => LocalEdit): Promise<LoggedChange | undefined> {
    if (this.writer === undefined) {
      this.writerDs = await openServerDataSource({ url: this.db.url, poolSize: 4, applicationName: 'fleet-harness' });
      this.writer = new ServerWriter(this.writerDs, {
        changeLog: new PostgresChangeLog(this.writerDs),
        config: this.config,
        node: 'server-harness',
        // The change is committed before this runs: its announcement is retried until NATS takes it
        // (same msg id: a repeat dedupes). Without it, a publish lost to a NATS restart leaves the
        // change un-announced (records projection, conflict detection and nudges wait for the
        // record's next change): see the report on PUT /records, which has no such retry.
        publishAppended: async (changes) => {
          for (let attempt = 1; ; attempt++) {
            try {
              return await publishAppended(this.bus, this.s, changes);
            } catch (e) {
              if (attempt >= 120) throw e;
              await sleep(250);
            }
          }
        },
      });
    }
    const { appended } = await this.writer.write([ref], (ctx) => {
      const st = ctx.state(ref);
      const e = edit(st.view.status === 'live' ? (st.view.fields as Record<string, unknown>) : null);
      void ctx.edit(ref, e);
    });
    return appended[0];
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
    const r = await fetch(`${this.stack.operatorUrl}/conflicts/${id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(choice), signal: AbortSignal.timeout(30_000) });
    return { ok: r.ok, status: r.status, body: await r.json().catch(() => null) };
  }

  async sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    const c = new Client({ connectionString: this.db.url });
    await c.connect();
    try {
      return (await c.query(text, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  async conflictStats(): Promise<ConflictRow[]> {
    const rows = await this.sql<{ collection: string; strategy: string; status: string; resolved_by: string | null; n: number }>(
      `select collection, strategy, status, resolved_by, count(*)::int as n from conflicts group by 1, 2, 3, 4 order by 1, 2, 3, 4`,
    );
    return rows.map((r) => ({ collection: r.collection, strategy: r.strategy, status: r.status, resolvedBy: r.resolved_by, n: r.n }));
  }

  /** The server is quiet: no conflict open, the records projection at the log's head, the delta projection too. */
  async serverQuiet(): Promise<boolean> {
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
    await this.writerDs?.destroy().catch(() => undefined);
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
      await this.db.drop().catch(() => undefined);
      rmSync(this.dir, { recursive: true, force: true });
    }
    return codes;
  }
}

/** The AppendedEvent announcement, with the change-log's msg-id scheme (a re-publish dedupes). */
async function publishAppended(bus: Messaging, s: Subjects, changes: readonly LoggedChange[]): Promise<void> {
  const sorted = [...changes].sort((a, b) => a.seq - b.seq);
  for (let i = 0; i < sorted.length; i += MAX_CHANGES_PER_APPENDED_EVENT) {
    const chunk = sorted.slice(i, i + MAX_CHANGES_PER_APPENDED_EVENT);
    const digest = createHash('sha256').update(chunk.map((c) => c.seq).join(',')).digest('hex').slice(0, 16);
    await bus.publish(s.appended, encodeJson({ protocol: PROTOCOL_VERSION, changes: chunk }), {
      msgId: `appended-${chunk[0]?.seq ?? 0}-${chunk[chunk.length - 1]?.seq ?? 0}-${digest}`,
      headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) },
    });
  }
}

export async function httpJson(method: string, url: string, body?: unknown): Promise<unknown> {
  const r = await fetch(url, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
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
