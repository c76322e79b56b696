/**
 * The delta calculator's PostgreSQL side: reading pages (log or resync), the record-states
 * projection (the fold of the log per record, which full resyncs, pulls by key and Merkle trees read),
 * compaction (retention), and group membership. Tables: migration 1767225600300-delta-calculator.
 */
import type { DataSource, EntityManager } from 'typeorm';
import { wireStateText } from '@fleet/contracts';
import { applyChange, decodeRecordState, emptyRecord, recordHash, soleWriter } from '@fleet/sync-core';
import type { LoggedChange, RecordRef, RecordState, StrategyConfig } from '@fleet/sync-core';
import { CHANGE_COLUMNS, rowToLoggedChange, toSafeNumber } from '@fleet/server-store/src/rows';
import type { ChangeLogRow } from '@fleet/server-store/src/rows';
import { recordId } from './fold';

export interface StateRow {
  readonly scope: string;
  readonly collection: string;
  readonly key: string;
  readonly state: RecordState;
}

/** The asking agent and its `ownFrom`: the host records it holds already (see `readSnapshot`). */
export interface OwnRecords {
  readonly agentId: string;
  readonly from: number;
}

/** A row of a snapshot page: the state's compact wire text (`wireStateText`) without its reference. */
export interface SnapshotRow {
  readonly scope: string;
  readonly collection: string;
  readonly key: string;
  readonly wire: string;
}

export type SnapshotRead =
  /** `at`: the log position the states cover (the projector's cursor when the snapshot began, or a restart's). */
  { readonly at: number; readonly rows: SnapshotRow[]; readonly exhausted: boolean; /** The log's highest seq in the same snapshot. */ readonly head: number };

export type PageRead =
  | { readonly kind: 'log'; readonly changes: LoggedChange[]; readonly hasMore: boolean; /** The log's highest seq in the page's snapshot. */ readonly head: number }
  | { readonly kind: 'resync'; readonly at: number; readonly states: StateRow[]; readonly exhausted: boolean; readonly head: number };

const PROJECTOR = 'record_states';

/** The `record_states` projector's cursor: every change with seq <= it is folded in (read in the caller's transaction). */
export async function readRecordStatesCursor(q: DataSource | EntityManager): Promise<number> {
  const [r] = (await q.query(`select cursor from delta_progress where name = $1`, [PROJECTOR])) as { cursor: string }[];
  return toSafeNumber(r?.cursor ?? '0', 'record_states cursor');
}

export class DeltaStore {
  constructor(
    private readonly ds: DataSource,
    private readonly config: StrategyConfig,
  ) {}

  /**
   * One page, read in ONE repeatable-read snapshot so that the horizon and the rows agree (a
   * compaction commits its deletes and the new horizon together). `cursor` is a log seq or a resync
   * position; a log cursor below the horizon starts a resync, as does a resync position from before a
   * later compaction (its log tail is gone).
   */
  async readPage(scopes: readonly string[], cursor: { kind: 'log'; seq: number } | { kind: 'resync'; at: number; after?: RecordRef }, limit: number, maxBytes = Number.MAX_SAFE_INTEGER): Promise<PageRead> {
    return this.ds.transaction('REPEATABLE READ', async (tx) => {
      await tx.query('set transaction read only');
      const [h] = (await tx.query(`select horizon, (select cursor from delta_progress where name = $1) as projected, (select coalesce(max(seq), 0) from change_log) as head from log_horizon`, [PROJECTOR])) as { horizon: string; projected: string; head: string }[];
      const horizon = Number(h?.horizon ?? 0);
      const projected = Number(h?.projected ?? 0);
      const head = Number(h?.head ?? 0);
      let c = cursor;
      if (c.kind === 'log' && c.seq < horizon) c = { kind: 'resync', at: projected };
      else if (c.kind === 'resync' && c.at < horizon) c = { kind: 'resync', at: projected };
      if (c.kind === 'log') {
        // The byte estimate is summed in SQL so that a page of large changes does not transfer `limit` rows to use a few.
        const rows = (await tx.query(
          `select ${CHANGE_COLUMNS}, n, total from (
             select ${CHANGE_COLUMNS}, row_number() over w as n, count(*) over () as total,
                    sum(octet_length(fields::text) + octet_length(key) * 3 + coalesce(octet_length(unset::text), 0) + 200) over w as cum
               from (select * from change_log where scope = any($1::text[]) and seq > $2 order by seq limit $3) l
             window w as (order by seq rows unbounded preceding)) t
           where n = 1 or cum <= $4 order by seq`,
          [scopes, c.seq, limit + 1, maxBytes],
        )) as (ChangeLogRow & { n: string; total: string })[];
        const total = Number(rows[0]?.total ?? 0);
        const kept = rows.slice(0, limit);
        return { kind: 'log', changes: kept.map(rowToLoggedChange), hasMore: total > kept.length, head };
      }
      const a = c.after;
      const rows = (await tx.query(
        a === undefined
          ? `select scope, collection, key, state from record_states where scope = any($1::text[]) order by scope, collection, key limit $2`
          : `select scope, collection, key, state from record_states where scope = any($1::text[]) and (scope, collection, key) > ($3, $4, $5) order by scope, collection, key limit $2`,
        a === undefined ? [scopes, limit + 1] : [scopes, limit + 1, a.scope, a.collection, a.key],
      )) as { scope: string; collection: string; key: string; state: unknown }[];
      const states = rows.slice(0, limit).map((r) => ({ scope: r.scope, collection: r.collection, key: r.key, state: decodeRecordState(r.state) }));
      return { kind: 'resync', at: c.at, states, exhausted: rows.length <= limit, head };
    });
  }

  /**
   * One snapshot page: the projected states of `scopes` after `after` in (scope, collection, key) order,
   * as their compact wire text (no JSON decoding: the page is concatenated). ONE repeatable-read
   * snapshot, as `readPage`. `at === undefined` starts a snapshot at the projector's cursor; a snapshot
   * whose `at` fell below the retention horizon (its log tail is gone) starts again at the projector's
   * cursor from the first key (a join makes the repeated part harmless). Rows projected before the
   * `wire` column existed are converted here. With `own`, the agent's host records that it made alone
   * from `own.from` on are left out: its store holds them (the same rule as log pages' `ownFrom`).
   */
  async readSnapshot(scopes: readonly string[], at: number | undefined, after: RecordRef | undefined, limit: number, own?: OwnRecords): Promise<SnapshotRead> {
    return this.ds.transaction('REPEATABLE READ', async (tx) => {
      await tx.query('set transaction read only');
      const [h] = (await tx.query(`select horizon, (select cursor from delta_progress where name = $1) as projected, (select coalesce(max(seq), 0) from change_log) as head from log_horizon`, [PROJECTOR])) as { horizon: string; projected: string; head: string }[];
      const horizon = Number(h?.horizon ?? 0);
      const projected = Number(h?.projected ?? 0);
      const head = Number(h?.head ?? 0);
      let from = after;
      let q = at;
      if (q === undefined || q < horizon) {
        q = projected;
        from = undefined;
      }
      // One scope at a time would let each use the primary key's order alone; `scope = any(...)` with the
      // row comparison on the key is the same index range scan in (scope, collection, key) order.
      // No echo: the agent's host records it holds already (one writer, itself, from `own.from` on).
      const notOwn = `and not coalesce(scope = $3 and sole_at = rev and sole_origin = $4 and sole_min >= $5, false)`;
      const params: unknown[] = [scopes, limit + 1, own === undefined ? null : `host.${own.agentId}`, own?.agentId ?? null, own?.from ?? null];
      const rows = (await tx.query(
        from === undefined
          ? `select scope, collection, key, wire, case when wire is null then state end as state from record_states where scope = any($1::text[]) ${notOwn} order by scope, collection, key limit $2`
          : `select scope, collection, key, wire, case when wire is null then state end as state from record_states where scope = any($1::text[]) and (scope, collection, key) > ($6, $7, $8) ${notOwn} order by scope, collection, key limit $2`,
        from === undefined ? params : [...params, from.scope, from.collection, from.key],
      )) as { scope: string; collection: string; key: string; wire: string | null; state: unknown }[];
      const out: SnapshotRow[] = [];
      for (const r of rows.slice(0, limit)) out.push({ scope: r.scope, collection: r.collection, key: r.key, wire: r.wire ?? wireStateText(decodeRecordState(r.state)) });
      return { at: q, rows: out, exhausted: rows.length <= limit, head };
    });
  }

  /** How far the record_states projection has folded the log (0: nothing yet, e.g. during its first pass). */
  async projectedSeq(): Promise<number> {
    const [r] = (await this.ds.query(`select cursor from delta_progress where name = $1`, [PROJECTOR])) as { cursor: string }[];
    return r === undefined ? 0 : toSafeNumber(r.cursor, 'cursor');
  }

  /** The highest origin sequence the change log holds of `origin` (its origins projection), or null. */
  async lastOriginSeq(origin: string): Promise<number | null> {
    const [r] = (await this.ds.query(`select last_origin_seq from origin_progress where origin = $1`, [origin])) as { last_origin_seq: string }[];
    return r === undefined ? null : toSafeNumber(r.last_origin_seq, 'last_origin_seq');
  }

  async statesOf(refs: readonly RecordRef[]): Promise<StateRow[]> {
    if (refs.length === 0) return [];
    const rows = (await this.ds.query(
      `select s.scope, s.collection, s.key, s.state from record_states s
        join unnest($1::text[], $2::text[], $3::text[]) with ordinality as r(scope, collection, key, n)
          on s.scope = r.scope and s.collection = r.collection and s.key = r.key
        order by r.n`,
      [refs.map((r) => r.scope), refs.map((r) => r.collection), refs.map((r) => r.key)],
    )) as { scope: string; collection: string; key: string; state: unknown }[];
    return rows.map((r) => ({ scope: r.scope, collection: r.collection, key: r.key, state: decodeRecordState(r.state) }));
  }

  /**
   * Folds the log after the projector's cursor into `record_states`, in pages: when it resolves, the
   * projection holds every change committed before the call. Returns the cursor reached.
   *
   * Pulls and Merkle answers call it before reading, so under load many callers arrive at once; they
   * share passes instead of queueing one by one on the cursor lock: one pass runs, and everyone who
   * arrives meanwhile waits for ONE pass queued behind it (it starts after they called, so it covers
   * them). A pass that finds the projection at the log's head ends after one read, with no lock.
   */
  project(pageSize = 2000): Promise<number> {
    if (this.projecting === undefined) {
      const run: Promise<number> = this.projectPass(pageSize).finally(() => {
        if (this.projecting === run) this.projecting = undefined;
      });
      this.projecting = run;
      return run;
    }
    this.projectQueued ??= this.projecting
      .catch(() => undefined)
      .then(() => {
        this.projectQueued = undefined;
        return this.project(pageSize);
      });
    return this.projectQueued;
  }

  /**
   * For a reader that only wants the projection "recent" (a snapshot: what is not projected yet reaches
   * the agent from the log after the snapshot's position): when a pass is running, returns at once;
   * otherwise runs one (cheap at the log's head). Under load (a reconnect storm) the background pass is
   * nearly always running, and a thousand first pulls no longer wait for it to catch up.
   */
  async projectUnlessBusy(): Promise<void> {
    if (this.projecting === undefined) await this.project();
  }

  private projecting: Promise<number> | undefined;
  private projectQueued: Promise<number> | undefined;
  private locked = 0;

  /** Passes that took the cursor lock so far (the caught-up ones do not). */
  get lockedPasses(): number {
    return this.locked;
  }

  /**
   * One pass. One projector at a time across replicas (the cursor row is locked FOR UPDATE), in seq
   * order, so each row's `rev` (the seq of the last change folded into it) is assigned in commit order:
   * a reader of `rev > r` never skips (the change log's own argument, docs/change-log.md). The change
   * log commits appends in seq order (under its append lock), so a cursor at max(seq) is caught up.
   */
  private async projectPass(pageSize: number): Promise<number> {
    const [head] = (await this.ds.query(
      `select (select cursor from delta_progress where name = $1) as cursor, (select coalesce(max(seq), 0) from change_log) as head`,
      [PROJECTOR],
    )) as { cursor: string | null; head: string }[];
    if (head !== undefined && head.cursor !== null && Number(head.cursor) >= Number(head.head)) return Number(head.cursor);
    this.locked += 1;
    for (;;) {
      const { cursor, done } = await this.ds.transaction('READ COMMITTED', async (tx) => {
        const [p] = (await tx.query(`select cursor from delta_progress where name = $1 for update`, [PROJECTOR])) as { cursor: string }[];
        const from = Number(p?.cursor ?? 0);
        const rows = (await tx.query(`select ${CHANGE_COLUMNS} from change_log where seq > $1 order by seq limit $2`, [from, pageSize])) as ChangeLogRow[];
        if (rows.length === 0) return { cursor: from, done: true };
        const changes = rows.map(rowToLoggedChange);
        await this.fold(tx, changes);
        const to = (changes[changes.length - 1] as LoggedChange).seq;
        await tx.query(`update delta_progress set cursor = $2 where name = $1`, [PROJECTOR, to]);
        return { cursor: to, done: rows.length < pageSize };
      });
      if (done) return cursor;
    }
  }

  private async fold(tx: EntityManager, changes: readonly LoggedChange[]): Promise<void> {
    const byRecord = new Map<string, { ref: RecordRef; changes: LoggedChange[] }>();
    for (const c of changes) {
      const id = recordId(c.scope, c.collection, c.key);
      const e = byRecord.get(id) ?? { ref: { scope: c.scope, collection: c.collection, key: c.key }, changes: [] };
      e.changes.push(c);
      byRecord.set(id, e);
    }
    const refs = [...byRecord.values()].map((e) => e.ref);
    const existing = new Map<string, RecordState>();
    for (const r of await this.statesOfTx(tx, refs)) existing.set(recordId(r.scope, r.collection, r.key), r.state);
    const out: { ref: RecordRef; state: RecordState; rev: number }[] = [];
    for (const [id, e] of byRecord) {
      let s = existing.get(id) ?? emptyRecord(e.ref);
      for (const c of e.changes) s = applyChange(s, c, this.config).state;
      out.push({ ref: e.ref, state: s, rev: (e.changes[e.changes.length - 1] as LoggedChange).seq });
    }
    // One JSON document rather than seven text arrays: pg escapes every element of an array literal in
    // JavaScript (most of a projection page's time), JSON.stringify is native and PostgreSQL parses it fast.
    await tx.query(
      `insert into record_states (scope, collection, key, state, record_hash, rev, wire, sole_origin, sole_min, sole_at)
       select r.s, r.c, r.k, r.state, r.h, r.rev, r.wire, r.so, r.sm, r.rev
         from jsonb_to_recordset($1::jsonb) as r(s text, c text, k text, state jsonb, h text, rev bigint, wire text, so text, sm bigint)
       on conflict (scope, collection, key) do update set state = excluded.state, record_hash = excluded.record_hash, rev = excluded.rev, wire = excluded.wire,
         sole_origin = excluded.sole_origin, sole_min = excluded.sole_min, sole_at = excluded.sole_at`,
      [
        JSON.stringify(
          out.map((o) => {
            const sole = soleWriter(o.state);
            return { s: o.ref.scope, c: o.ref.collection, k: o.ref.key, state: o.state, h: recordHash(o.state), rev: o.rev, wire: wireStateText(o.state), so: sole?.origin ?? null, sm: sole?.minCounter ?? null };
          }),
        ),
      ],
    );
  }

  private async statesOfTx(tx: EntityManager, refs: readonly RecordRef[]): Promise<StateRow[]> {
    const rows = (await tx.query(
      `select s.scope, s.collection, s.key, s.state from record_states s
        join unnest($1::text[], $2::text[], $3::text[]) as r(scope, collection, key)
          on s.scope = r.scope and s.collection = r.collection and s.key = r.key`,
      [refs.map((r) => r.scope), refs.map((r) => r.collection), refs.map((r) => r.key)],
    )) as { scope: string; collection: string; key: string; state: unknown }[];
    return rows.map((r) => ({ scope: r.scope, collection: r.collection, key: r.key, state: decodeRecordState(r.state) }));
  }

  /**
   * Retention: deletes log entries with seq <= `upTo` once the projection has folded them, and moves
   * the horizon there. Capped below the log's head (the change log numbers new appends from
   * max(seq)+1, so its last row must stay). Returns the horizon now in force.
   */
  async compact(upTo: number): Promise<number> {
    await this.project();
    return this.ds.transaction('READ COMMITTED', async (tx) => {
      await tx.query(`select horizon from log_horizon for update`);
      const [r] = (await tx.query(
        `select least($1::bigint, (select cursor from delta_progress where name = $2), coalesce((select max(seq) from change_log), 0) - 1) as p,
                (select horizon from log_horizon) as h`,
        [upTo, PROJECTOR],
      )) as { p: string; h: string }[];
      const p = Math.max(Number(r?.p ?? 0), Number(r?.h ?? 0));
      await tx.query(`delete from change_log where seq <= $1`, [p]);
      await tx.query(`update log_horizon set horizon = $1`, [p]);
      return p;
    });
  }

  async horizon(): Promise<number> {
    const [r] = (await this.ds.query(`select horizon from log_horizon`)) as { horizon: string }[];
    return Number(r?.horizon ?? 0);
  }

  /** Visible-record hashes of one (scope, collection) changed after `rev` (all when 0), for the Merkle trees. */
  async hashesSince(scope: string, collection: string, rev: number): Promise<{ key: string; hash: string; live: boolean; rev: number }[]> {
    const rows = (await this.ds.query(
      `select key, record_hash, state->'view'->>'status' = 'live' as live, rev from record_states where scope = $1 and collection = $2 and rev > $3 order by rev`,
      [scope, collection, rev],
    )) as { key: string; record_hash: string; live: boolean; rev: string }[];
    return rows.map((r) => ({ key: r.key, hash: r.record_hash, live: r.live, rev: Number(r.rev) }));
  }

  // --- groups ---

  async groupsOf(agentId: string): Promise<string[]> {
    const rows = (await this.ds.query(`select group_name from agent_groups where agent_id = $1 order by group_name`, [agentId])) as { group_name: string }[];
    return rows.map((r) => r.group_name);
  }

  /** The groups of each agent named (an agent without any gets an empty list): `fleetctl agents`. */
  async groupsOfMany(agentIds: readonly string[]): Promise<Record<string, string[]>> {
    const rows = (await this.ds.query(`select agent_id, group_name from agent_groups where agent_id = any($1::text[]) order by agent_id, group_name`, [agentIds])) as {
      agent_id: string;
      group_name: string;
    }[];
    const out: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
    for (const id of agentIds) out[id] = [];
    for (const r of rows) out[r.agent_id]?.push(r.group_name);
    return out;
  }

  async setGroups(agentId: string, groups: readonly string[]): Promise<void> {
    await this.ds.transaction(async (tx) => {
      await tx.query(`delete from agent_groups where agent_id = $1`, [agentId]);
      if (groups.length > 0) await tx.query(`insert into agent_groups (agent_id, group_name) select $1, unnest($2::text[]) on conflict do nothing`, [agentId, groups]);
    });
  }

  /** Agents subscribed to any of these scopes: host.X -> X; group.g -> its members; fleet -> every known agent. */
  async subscribers(scopes: readonly string[]): Promise<string[]> {
    const hosts = scopes.filter((s) => s.startsWith('host.')).map((s) => s.slice(5));
    const groups = scopes.filter((s) => s.startsWith('group.')).map((s) => s.slice(6));
    const fleet = scopes.includes('fleet');
    const out = new Set(hosts);
    if (groups.length > 0) {
      const rows = (await this.ds.query(`select distinct agent_id from agent_groups where group_name = any($1::text[])`, [groups])) as { agent_id: string }[];
      for (const r of rows) out.add(r.agent_id);
    }
    if (fleet) {
      // Every agent the server knows: those that wrote, those in a group, and those that pulled (a
      // new host that has written nothing yet holds the fleet scope too; its pull facts are written
      // within FLEET_DELTACALCULATOR_PULL_FACTS_EVERY of its first pull).
      const rows = (await this.ds.query(
        `select origin as agent_id from origin_progress where origin <> 'server' union select agent_id from agent_groups union select agent_id from agent_pulls`,
      )) as { agent_id: string }[];
      for (const r of rows) out.add(r.agent_id);
    }
    return [...out].sort();
  }
}
