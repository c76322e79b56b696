import type { DataSource, EntityManager } from 'typeorm';
import {
  applyChange,
  conflictOf,
  decodeRecordState,
  emptyRecord,
  recordHash,
  type ApplyOutcome,
  type ConflictRecord,
  type LoggedChange,
  type RecordRef,
  type RecordState,
  type StrategyConfig,
  type VersionVector,
} from '@fleet/sync-core';
import { asInfraError } from '../postgres-change-log';
import type { Projection } from '../projections/projection';
import { CHANGE_COLUMNS, rowToLoggedChange, toSafeNumber, type ChangeLogRow } from '../rows';
import { strategyNameOf } from '@fleet/config';

/**
 * The lock that serialises `rev` assignment, taken LAST in a projection transaction (after the row
 * locks), so it is held only for the final update and the commit. Same argument as the change log's
 * seq (docs/change-log.md, "Cursor rule"): the next holder waits until this transaction's commit is
 * visible, so commit order == rev order and a reader polling `rev > cursor` never skips a row.
 */
export const REV_LOCK_SQL = `select pg_advisory_xact_lock(hashtextextended('fleet.records.rev', 0))`;

/**
 * At most one log sweep at a time across replicas (transaction-scoped try-lock: a replica that does not
 * get it skips this round). An optimisation: two sweeps at once would still serialise on the cursor row.
 */
export const SWEEP_TRY_LOCK_SQL = `select pg_try_advisory_xact_lock(hashtextextended('fleet.records.sweep', 0)) as locked`;

/** The records projection's row in `projection_cursors`. */
const CURSOR_NAME = 'records';

/** One sweep transaction: the cursor moved from `from` to `to` over `scanned` logged changes. */
export interface SweepResult {
  readonly from: number;
  readonly to: number;
  /** More logged changes after `to`. */
  readonly hasMore: boolean;
  readonly scanned: number;
  readonly result: ProjectionBatchResult;
}

/** The records projection's sweep cursor H (every change with seq <= H is applied). */
export async function readProjectionCursor(q: DataSource | EntityManager): Promise<number> {
  const [r] = (await q.query(`select seq from projection_cursors where name = $1`, [CURSOR_NAME])) as { seq: string }[];
  return toSafeNumber(r?.seq ?? '0', 'projection cursor');
}

export type Strategy = 'lww' | 'merge' | 'manual' | 'custom';

/** One change as the projection classified it, in seq order. */
export interface ClassifiedChange {
  readonly change: LoggedChange;
  /**
   * `concurrent` with a conflict left in the record is reported in `conflicts` too; `rejected` (a reused
   * dot, see sync-core `applyChange`) changed nothing, and `rejection` says why.
   */
  readonly outcome: ApplyOutcome;
  readonly changed: boolean;
  readonly rejection?: string;
}

/** A record after the transaction (one per record touched). */
export interface AppliedRecord {
  readonly ref: RecordRef;
  readonly seq: number;
  readonly rev: number;
  readonly hash: string;
  readonly status: 'absent' | 'live' | 'deleted';
  readonly conflicted: boolean;
  readonly vv: VersionVector;
  readonly state: RecordState;
}

/** A conflict recorded in the conflict log (status `open`) by this transaction. */
export interface DetectedConflict {
  readonly id: number;
  readonly seq: number;
  readonly ref: RecordRef;
  readonly strategy: Strategy;
  readonly conflict: ConflictRecord;
}

export interface ProjectionBatchResult {
  readonly classified: readonly ClassifiedChange[];
  readonly records: readonly AppliedRecord[];
  readonly conflicts: readonly DetectedConflict[];
}

interface Row {
  scope: string;
  collection: string;
  key: string;
  last_seq: string;
}

export function refKey(r: RecordRef): string {
  return `${r.scope}\u0000${r.collection}\u0000${r.key}`;
}

/** Code-unit order, the same as `COLLATE "C"` for the ASCII-only scopes and collections (keys: see lockRows). */
function compareRefs(a: RecordRef, b: RecordRef): number {
  const x = refKey(a);
  const y = refKey(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The records projection: each record's sync-core state, its visible fields, hash, vector, status,
 * `conflicted` flag, how far in the log it is applied (`last_seq`) and its projection cursor (`rev`).
 *
 * Per-record serialisation across replicas, and why it is also the single-threaded model:
 * a transaction (1) inserts the missing rows (ON CONFLICT DO NOTHING) and locks every affected row
 * `FOR UPDATE`, both in one sorted order (deadlock-free; different records proceed in parallel in
 * other transactions); (2) reads from the LOG every change of those records with seq > last_seq
 * (not just the changes of the event that triggered it) and applies them in seq order; (3) records
 * the conflicts; (4) takes the rev lock, writes the rows with fresh revs, commits. Whatever replica
 * gets whichever event, each record's changes are applied exactly once, in log order, so the
 * classification (fast-forward / stale / duplicate / concurrent) is the one a single thread reading
 * the log would make, and `last_seq` means "every change of this record up to here is applied",
 * which is what the ServerWriter's fold relies on. An event whose changes another replica already
 * applied finds nothing to do.
 */
export class RecordsProjection implements Projection {
  readonly name = 'records';

  /**
   * States this projection committed, by record, with the `last_seq` they are at (live path only).
   * A row whose `last_seq` equals the cached one holds that very state: a record's state is a
   * function of its log prefix (the CRDT fold, byte-identical whoever applied it, a rebuild too),
   * so its state is not read, parsed and re-validated again. Filled after the commit only; LRU.
   */
  private readonly cache = new Map<string, { readonly lastSeq: number; readonly state: RecordState }>();
  private readonly cacheSize: number;

  constructor(
    private readonly config: StrategyConfig,
    options: { readonly stateCacheSize?: number } = {},
  ) {
    this.cacheSize = options.stateCacheSize ?? 20_000;
  }

  /**
   * The live path (version-vector): one transaction for the records of `changes` (any order, any
   * duplicates: only which records matters; their changes are read from the log).
   */
  async applyLogged(ds: DataSource, changes: readonly RecordRef[]): Promise<ProjectionBatchResult> {
    if (changes.length === 0) return { classified: [], records: [], conflicts: [] };
    let result: ProjectionBatchResult;
    try {
      result = await ds.transaction('READ COMMITTED', (tx) => this.run(tx, changes, true));
    } catch (e) {
      throw asInfraError(e);
    }
    this.remember(result);
    return result;
  }

  /**
   * The log sweep (version-vector's correctness path; events are only wake-ups): ONE transaction that
   * (1) takes the sweep's try-lock (`SWEEP_TRY_LOCK_SQL`; another replica sweeping: returns `undefined`,
   * nothing done; an optimisation only, correctness does not depend on it: `tryLock: false` skips it), (2) locks the cursor row
   * `projection_cursors('records')` FOR UPDATE and reads H (every change with seq <= H is applied),
   * (3) reads up to `limit` changes with seq > H in ONE statement (the change log's cursor rule: a
   * snapshot holds a gapless prefix, so nothing is skipped), (4) for the records of those changes whose
   * `last_seq` is below their newest change read, runs the same per-record path as the events
   * (`run`: row locks in sorted order, apply every logged change newer than `last_seq`, conflict rows,
   * revs; idempotent), (5) advances H to the last seq read, commits. Lock order: cursor row, record
   * rows, rev lock (the rebuild: append lock, cursor row, then the records table).
   */
  async sweep(ds: DataSource, options: { readonly limit?: number; readonly tryLock?: boolean } = {}): Promise<SweepResult | undefined> {
    const limit = options.limit ?? 1000;
    let out: SweepResult | undefined;
    try {
      out = await ds.transaction('READ COMMITTED', async (tx): Promise<SweepResult | undefined> => {
        if (options.tryLock !== false) {
          const [got] = (await tx.query(SWEEP_TRY_LOCK_SQL)) as { locked: boolean }[];
          if (got?.locked !== true) return undefined;
        }
        const [cur] = (await tx.query(`select seq from projection_cursors where name = $1 for update`, [CURSOR_NAME])) as { seq: string }[];
        if (cur === undefined) await tx.query(`insert into projection_cursors (name, seq) values ($1, 0) on conflict do nothing`, [CURSOR_NAME]);
        const from = toSafeNumber(cur?.seq ?? '0', 'projection cursor');
        const logged = (await tx.query(`select seq, scope, collection, key from change_log where seq > $1 order by seq limit $2`, [from, limit + 1])) as {
          seq: string;
          scope: string;
          collection: string;
          key: string;
        }[];
        const hasMore = logged.length > limit;
        const page = logged.slice(0, limit);
        const last = page[page.length - 1];
        if (last === undefined) return { from, to: from, hasMore: false, scanned: 0, result: { classified: [], records: [], conflicts: [] } };
        const to = toSafeNumber(last.seq, 'seq');
        const newest = new Map<string, { ref: RecordRef; seq: number }>();
        for (const c of page) newest.set(refKey(c), { ref: { scope: c.scope, collection: c.collection, key: c.key }, seq: toSafeNumber(c.seq, 'seq') });
        const todo = [...newest.values()];
        // Only the records not yet applied that far (a plain read: last_seq only grows, and a rebuild
        // waits for the cursor row we hold), so a caught-up sweep locks nothing.
        const behind = (await tx.query(
          `select t.scope, t.collection, t.key
             from unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) as t(scope, collection, key, seq)
             left join records r on r.scope = t.scope and r.collection = t.collection and r.key = t.key
            where r.last_seq is null or r.last_seq < t.seq`,
          [todo.map((t) => t.ref.scope), todo.map((t) => t.ref.collection), todo.map((t) => t.ref.key), todo.map((t) => t.seq)],
        )) as RecordRef[];
        const result = behind.length === 0 ? { classified: [], records: [], conflicts: [] } : await this.run(tx, behind, true);
        await tx.query(`update projection_cursors set seq = greatest(seq, $2), updated_at = now() where name = $1`, [CURSOR_NAME, to]);
        return { from, to, hasMore, scanned: page.length, result };
      });
    } catch (e) {
      throw asInfraError(e);
    }
    if (out !== undefined) this.remember(out.result);
    return out;
  }

  /** States committed by the live path, kept for the next transaction (see `cache`). */
  private remember(result: ProjectionBatchResult): void {
    if (this.cacheSize > 0) {
      for (const r of result.records) {
        const k = refKey(r.ref);
        this.cache.delete(k);
        this.cache.set(k, { lastSeq: r.seq, state: r.state });
      }
      for (const k of this.cache.keys()) {
        if (this.cache.size <= this.cacheSize) break;
        this.cache.delete(k);
      }
    }
  }

  /** `Projection`: the rebuild path (`rebuildProjections`, under the append lock): same fold, no conflict rows. */
  async apply(tx: EntityManager, changes: readonly LoggedChange[]): Promise<void> {
    await this.run(tx, changes, false);
    // The rebuild replays the whole log in seq order under the append lock: everything up to here is applied.
    const last = changes[changes.length - 1];
    if (last !== undefined) await tx.query(`update projection_cursors set seq = $2, updated_at = now() where name = $1`, [CURSOR_NAME, last.seq]);
  }

  /** Empties the projection and resets the sweep cursor H to 0 (cursor row first: the sweep's lock order). */
  async reset(tx: EntityManager): Promise<void> {
    this.cache.clear();
    await tx.query(`insert into projection_cursors (name, seq) values ($1, 0) on conflict (name) do update set seq = 0, updated_at = now()`, [CURSOR_NAME]);
    await tx.query('truncate records, rejected_changes');
  }

  private async run(tx: EntityManager, changes: readonly RecordRef[], live: boolean): Promise<ProjectionBatchResult> {
    const byKey = new Map<string, RecordRef>();
    for (const c of changes) byKey.set(refKey(c), { scope: c.scope, collection: c.collection, key: c.key });
    const refs = [...byKey.values()].sort(compareRefs);
    const rows = await this.lockRows(tx, refs);

    const after = refs.map((r) => toSafeNumber(rows.get(refKey(r))?.last_seq ?? '0', 'last_seq'));
    const pending: ChangeLogRow[] = await tx.query(
      `select ${CHANGE_COLUMNS.split(', ').map((c) => `c.${c}`).join(', ')}
         from unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) as r(scope, collection, key, after)
         join change_log c on c.scope = r.scope and c.collection = r.collection and c.key = r.key and c.seq > r.after
        order by c.seq`,
      [refs.map((r) => r.scope), refs.map((r) => r.collection), refs.map((r) => r.key), after],
    );

    const states = new Map<string, { state: RecordState; lastSeq: number; touched: boolean }>();
    const misses: RecordRef[] = [];
    for (const r of refs) {
      const lastSeq = toSafeNumber(rows.get(refKey(r))?.last_seq ?? '0', 'last_seq');
      const cached = live ? this.cache.get(refKey(r)) : undefined;
      if (lastSeq === 0) states.set(refKey(r), { state: emptyRecord(r), lastSeq, touched: false });
      else if (cached !== undefined && cached.lastSeq === lastSeq) states.set(refKey(r), { state: cached.state, lastSeq, touched: false });
      else misses.push(r);
    }
    if (misses.length > 0) {
      const stored = (await tx.query(
        `select r.scope, r.collection, r.key, r.state, r.last_seq
           from records r join unnest($1::text[], $2::text[], $3::text[]) as t(scope, collection, key)
             on r.scope = t.scope and r.collection = t.collection and r.key = t.key`,
        [misses.map((r) => r.scope), misses.map((r) => r.collection), misses.map((r) => r.key)],
      )) as { scope: string; collection: string; key: string; state: unknown; last_seq: string }[];
      for (const row of stored) {
        states.set(refKey(row), { state: row.state === null ? emptyRecord(row) : decodeRecordState(row.state), lastSeq: toSafeNumber(row.last_seq, 'last_seq'), touched: false });
      }
      for (const r of misses) if (!states.has(refKey(r))) states.set(refKey(r), { state: emptyRecord(r), lastSeq: 0, touched: false });
    }
    const classified: ClassifiedChange[] = [];
    const found: { seq: number; ref: RecordRef; conflict: ConflictRecord }[] = [];
    for (const row of pending) {
      const change = rowToLoggedChange(row);
      const s = states.get(refKey(change)) as { state: RecordState; lastSeq: number; touched: boolean };
      const r = applyChange(s.state, change, this.config);
      s.state = r.state;
      s.lastSeq = change.seq;
      s.touched = true;
      classified.push({ change, outcome: r.outcome, changed: r.changed, ...(r.rejection === undefined ? {} : { rejection: r.rejection.message }) });
      // sync-core reports the conflict of a `concurrent` change. A change delivered after a later one of
      // its own origin is `stale` by vector yet may still add a write nothing dominates (another field):
      // that is a conflict too, and must be recorded and resolved like any other.
      const conflict = r.conflict ?? (r.changed && r.outcome !== 'fast-forward' ? conflictOf(r.state, this.config) : undefined);
      if (conflict !== undefined) found.push({ seq: change.seq, ref: s.state.ref, conflict });
    }

    const rejected = classified.filter((c) => c.rejection !== undefined);
    if (rejected.length > 0) {
      // Durable with the records (the dead letter published after the commit is at most once); derived from the log like them.
      await tx.query(
        `insert into rejected_changes (seq, origin, origin_seq, change_id, scope, collection, key, code, reason)
         select (e->>'q')::bigint, e->>'o', (e->>'os')::bigint, e->>'id', e->>'s', e->>'c', e->>'k', 'FLEET_CHANGE_002', e->>'r'
           from jsonb_array_elements($1::jsonb) as e
         on conflict (seq) do nothing`,
        [JSON.stringify(rejected.map(({ change: c, rejection }) => ({ q: c.seq, o: c.origin, os: c.originSeq, id: c.changeId, s: c.scope, c: c.collection, k: c.key, r: rejection })))],
      );
    }

    const touched = refs.filter((r) => states.get(refKey(r))?.touched === true);
    if (touched.length === 0) return { classified, records: [], conflicts: [] };

    const conflicts: DetectedConflict[] = [];
    if (live && found.length > 0) {
      const inserted = (await tx.query(
        `insert into conflicts (conflict_key, scope, collection, key, seq, strategy, sides, status, detected_at)
         select e->>'k', e->>'s', e->>'c', e->>'kk', (e->>'q')::bigint, e->>'st', e->'sd', 'open', now()
           from jsonb_array_elements($1::jsonb) as e
         on conflict (conflict_key) do nothing
         returning id, conflict_key`,
        [JSON.stringify(found.map((f) => ({ k: f.conflict.id, s: f.ref.scope, c: f.ref.collection, kk: f.ref.key, q: f.seq, st: strategyNameOf(this.config, f.ref.collection), sd: f.conflict })))],
      )) as { id: string; conflict_key: string }[];
      const ids = new Map(inserted.map((r) => [r.conflict_key, toSafeNumber(r.id, 'conflict id')]));
      for (const f of found) {
        const id = ids.get(f.conflict.id);
        if (id !== undefined) conflicts.push({ id, seq: f.seq, ref: f.ref, strategy: strategyNameOf(this.config, f.ref.collection), conflict: f.conflict });
      }
    }

    // Last: the rev lock, held for one statement and the commit.
    await tx.query(REV_LOCK_SQL);
    const [head] = (await tx.query('select coalesce(max(rev), 0) as head from records')) as { head: string }[];
    const base = toSafeNumber(head?.head ?? '0', 'rev head');
    const out: AppliedRecord[] = touched.map((ref, i) => {
      const s = states.get(refKey(ref)) as { state: RecordState; lastSeq: number };
      return {
        ref,
        seq: s.lastSeq,
        rev: base + i + 1,
        hash: recordHash(s.state),
        status: s.state.view.status,
        conflicted: s.state.view.conflicted,
        vv: s.state.vv,
        state: s.state,
      };
    });
    // One jsonb document, not 11 parallel arrays: node-postgres escapes every element of a text array
    // (large JSON texts). Read with jsonb_array_elements and `->`: jsonb_to_recordset would turn every
    // jsonb column back into text and parse it again (measured 2.5x slower). The state object goes in
    // as is: jsonb normalises key order, so canonical text (`encodeRecordState`, for text columns)
    // buys nothing here. `fields` (sync-core `visibleFields`) and `vv` are taken from the state in SQL:
    // sent apart, they were parsed twice (parsing the document is most of this statement's cost).
    await tx.query(
      `update records r set state = e->'state', fields = case when e->>'status' = 'live' then e->'state'->'view'->'fields' end, hash = e->>'hash', vv = e->'state'->'vv',
              status = e->>'status', conflicted = (e->>'conflicted')::bool, last_seq = (e->>'last_seq')::bigint,
              rev = (e->>'rev')::bigint, updated_at = now()
         from jsonb_array_elements($1::jsonb) as e
        where r.scope = e->>'scope' and r.collection = e->>'collection' and r.key = e->>'key'`,
      [
        JSON.stringify(
          out.map((o) => ({
            scope: o.ref.scope,
            collection: o.ref.collection,
            key: o.ref.key,
            state: o.state,
            hash: o.hash,
            status: o.status,
            conflicted: o.conflicted,
            last_seq: o.seq,
            rev: o.rev,
          })),
        ),
      ],
    );
    return { classified, records: out, conflicts };
  }

  /**
   * Inserts the missing rows, then locks all of them, in one order (`COLLATE "C"`, i.e. byte order,
   * equal to `compareRefs` for valid UTF-8). Every transaction locks in that order, so two
   * transactions sharing records wait for each other instead of deadlocking.
   */
  private async lockRows(tx: EntityManager, refs: readonly RecordRef[]): Promise<Map<string, Row>> {
    const params = [refs.map((r) => r.scope), refs.map((r) => r.collection), refs.map((r) => r.key)];
    await tx.query(
      `insert into records (scope, collection, key, state, fields, hash, vv, status, conflicted, last_seq, rev)
       select t.scope, t.collection, t.key, 'null'::jsonb, null, '', '{}'::jsonb, 'absent', false, 0, 0
         from unnest($1::text[], $2::text[], $3::text[]) as t(scope, collection, key)
        order by t.scope collate "C", t.collection collate "C", t.key collate "C"
       on conflict do nothing`,
      params,
    );
    const rows = (await tx.query(
      `select r.scope, r.collection, r.key, r.last_seq
         from records r join unnest($1::text[], $2::text[], $3::text[]) as t(scope, collection, key)
           on r.scope = t.scope and r.collection = t.collection and r.key = t.key
        order by r.scope collate "C", r.collection collate "C", r.key collate "C"
        for update of r`,
      params,
    )) as Row[];
    return new Map(rows.map((r) => [refKey(r), r]));
  }
}

/** Reads one record's state from the projection (undefined when it has no row or was never applied). */
export async function readRecordState(q: DataSource | EntityManager, ref: RecordRef): Promise<{ state: RecordState; lastSeq: number; rev: number } | undefined> {
  const rows = (await q.query('select state, last_seq, rev from records where scope = $1 and collection = $2 and key = $3', [ref.scope, ref.collection, ref.key])) as {
    state: unknown;
    last_seq: string;
    rev: string;
  }[];
  const r = rows[0];
  if (r === undefined || r.state === null) return undefined;
  return { state: decodeRecordState(r.state), lastSeq: toSafeNumber(r.last_seq, 'last_seq'), rev: toSafeNumber(r.rev, 'rev') };
}
