/**
 * Read-only queries for the operator APIs (`fleetctl status`, `agents`, `verify`): the log's head, the
 * agents the log knows (`origin_progress`), a projection's progress against the log, and the checks
 * of `verify`. Nothing here writes; every multi-statement read runs in one REPEATABLE READ, READ ONLY
 * transaction, so the figures of one answer come from one snapshot.
 */
import type { DataSource, EntityManager } from 'typeorm';
import { wireStateText } from '@fleet/contracts';
import type { AgentProgress, ProjectionProgress, VerifyCheck, VerifyDiff } from '@fleet/contracts';
import { applyChanges, decodeRecordState, encodeRecordState, recordHash, SERVER_ORIGIN, vvCompare } from '@fleet/sync-core';
import type { LoggedChange, RecordRef, RecordState, StrategyConfig } from '@fleet/sync-core';
import { asInfraError } from './postgres-change-log';
import { CHANGE_COLUMNS, rowToLoggedChange, toSafeNumber } from './rows';
import type { ChangeLogRow } from './rows';

type Q = DataSource | EntityManager;

/** One REPEATABLE READ, READ ONLY transaction; database errors become FLEET_INFRA_001. */
export async function readSnapshot<T>(ds: DataSource, fn: (tx: EntityManager) => Promise<T>): Promise<T> {
  try {
    return await ds.transaction('REPEATABLE READ', async (tx) => {
      await tx.query('set transaction read only');
      return fn(tx);
    });
  } catch (e) {
    throw asInfraError(e);
  }
}

export async function logHeadSeq(q: Q): Promise<number> {
  const [r] = (await q.query(`select coalesce(max(seq), 0) as head from change_log`)) as { head: string }[];
  return toSafeNumber(r?.head ?? '0', 'head seq');
}

/** Changes at or below it were deleted from the log by retention (delta-calculator's `compact`); 0 when none. */
export async function logHorizon(q: Q): Promise<number> {
  const [r] = (await q.query(`select horizon from log_horizon`)) as { horizon: string }[];
  return toSafeNumber(r?.horizon ?? '0', 'log horizon');
}

/** A projection whose `cursor` promises every change up to it applied, against the log's head, in one snapshot. */
export async function projectionProgress(ds: DataSource, name: string, readCursor: (tx: EntityManager) => Promise<number>): Promise<ProjectionProgress> {
  return readSnapshot(ds, async (tx) => {
    const cursor = await readCursor(tx);
    const headSeq = await logHeadSeq(tx);
    const [r] = (await tx.query(
      // The first change after the cursor: how long the projection has owed it (PostgreSQL's clock, both sides).
      `select extract(epoch from (now() - appended_at)) as age from change_log where seq > $1 order by seq limit 1`,
      [cursor],
    )) as { age: string | number }[];
    const age = r === undefined ? null : Math.max(0, Math.round(Number(r.age) * 1000) / 1000);
    return { name, cursor, headSeq, lag: Math.max(0, headSeq - cursor), oldestPendingSeconds: age };
  });
}

interface OriginRow {
  origin: string;
  last_origin_seq: string;
  last_hlc: string;
  changes_count: string;
  last_seq: string;
  last_appended_at: string;
}

const ORIGIN_COLUMNS = `origin, last_origin_seq, last_hlc, changes_count, last_seq,
  to_char(last_appended_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as last_appended_at`;

function toAgent(r: OriginRow): AgentProgress {
  return {
    agentId: r.origin,
    lastOriginSeq: toSafeNumber(r.last_origin_seq, 'last_origin_seq'),
    changes: toSafeNumber(r.changes_count, 'changes_count'),
    lastSeq: toSafeNumber(r.last_seq, 'last_seq'),
    lastAppendedAt: r.last_appended_at,
    lastHlc: r.last_hlc,
  };
}

/** Agents with changes in the log, by id (`COLLATE "C"`: byte order, the same on every server), after `after`. */
export async function listAgents(ds: DataSource, q: { after?: string; limit: number }): Promise<{ agents: AgentProgress[]; hasMore: boolean }> {
  try {
    const rows = (await ds.query(
      `select ${ORIGIN_COLUMNS} from origin_progress
        where origin <> $1 and ($2::text is null or origin collate "C" > $2::text collate "C")
        order by origin collate "C" limit $3`,
      [SERVER_ORIGIN, q.after ?? null, q.limit + 1],
    )) as OriginRow[];
    return { agents: rows.slice(0, q.limit).map(toAgent), hasMore: rows.length > q.limit };
  } catch (e) {
    throw asInfraError(e);
  }
}

export async function agentProgress(ds: DataSource, agentId: string): Promise<AgentProgress | null> {
  try {
    const [r] = (await ds.query(`select ${ORIGIN_COLUMNS} from origin_progress where origin = $1 and origin <> $2`, [agentId, SERVER_ORIGIN])) as OriginRow[];
    return r === undefined ? null : toAgent(r);
  } catch (e) {
    throw asInfraError(e);
  }
}

/** change-log's figures for `fleetctl status`. */
export async function changeLogFigures(ds: DataSource): Promise<{ headSeq: number; agents: number; openCriticalOperations: number }> {
  return readSnapshot(ds, async (tx) => {
    const headSeq = await logHeadSeq(tx);
    const [a] = (await tx.query(`select count(*) as n from origin_progress where origin <> $1`, [SERVER_ORIGIN])) as { n: string }[];
    const [c] = (await tx.query(`select count(*) as n from critical_transactions where state in ('preparing', 'committing', 'aborting')`)) as { n: string }[];
    return { headSeq, agents: toSafeNumber(a?.n ?? '0', 'agents'), openCriticalOperations: toSafeNumber(c?.n ?? '0', 'open critical operations') };
  });
}

// --- verify ------------------------------------------------------------------------------------------

const clip = (s: string, n = 600): string => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

class Diffs {
  readonly list: VerifyDiff[] = [];
  count = 0;
  constructor(private readonly max: number) {}
  add(d: VerifyDiff): void {
    this.count++;
    if (this.list.length < this.max) this.list.push({ ...d, why: clip(d.why, 2000) });
  }
}

/**
 * `origin_progress` against the log it is folded from: the same aggregate computed afresh over
 * `change_log` (one scan). The projection is maintained in the append transaction, so in one snapshot
 * the two must be equal, column for column.
 */
export async function verifyOrigins(ds: DataSource, maxDiffs: number): Promise<VerifyCheck> {
  return readSnapshot(ds, async (tx) => {
    const headSeq = await logHeadSeq(tx);
    const horizon = await logHorizon(tx);
    const base = { name: 'origins', headSeq, cursor: headSeq };
    if (horizon > 0) return { ...base, checked: 0, changesRead: 0, differences: 0, diffs: [], skipped: `the log was compacted up to seq ${horizon}: the origins' counts cannot be recomputed from it` };
    const rows = (await tx.query(
      `with l as (
         select origin, max(origin_seq) as last_origin_seq, (array_agg(hlc order by origin_seq desc))[1] as last_hlc,
                count(*) as changes_count, max(seq) as last_seq, max(appended_at) as last_appended_at
           from change_log group by origin)
       select coalesce(p.origin, l.origin) as origin,
              p.origin is not null as in_projection, l.origin is not null as in_log,
              p.last_origin_seq as p_los, l.last_origin_seq as l_los, p.last_hlc as p_hlc, l.last_hlc as l_hlc,
              p.changes_count as p_n, l.changes_count as l_n, p.last_seq as p_seq, l.last_seq as l_seq,
              p.last_appended_at::text as p_at, l.last_appended_at::text as l_at
         from origin_progress p full join l on l.origin = p.origin
        where p.origin is null or l.origin is null
           or p.last_origin_seq <> l.last_origin_seq or p.last_hlc <> l.last_hlc or p.changes_count <> l.changes_count
           or p.last_seq <> l.last_seq or p.last_appended_at <> l.last_appended_at
        order by coalesce(p.origin, l.origin) collate "C"`,
    )) as Record<string, string | boolean | null>[];
    const [counts] = (await tx.query(`select (select count(*) from origin_progress) as origins, (select count(*) from change_log) as changes`)) as { origins: string; changes: string }[];
    const diffs = new Diffs(maxDiffs);
    for (const r of rows) {
      const origin = String(r['origin']);
      if (r['in_log'] !== true) diffs.add({ origin, why: 'in origin_progress, but the log holds no change of it' });
      else if (r['in_projection'] !== true) diffs.add({ origin, why: `missing from origin_progress (the log holds ${String(r['l_n'])} of its changes)` });
      else {
        const parts: string[] = [];
        for (const [col, p, l] of [
          ['last_origin_seq', 'p_los', 'l_los'],
          ['last_hlc', 'p_hlc', 'l_hlc'],
          ['changes_count', 'p_n', 'l_n'],
          ['last_seq', 'p_seq', 'l_seq'],
          ['last_appended_at', 'p_at', 'l_at'],
        ] as const) {
          if (String(r[p]) !== String(r[l])) parts.push(`${col} ${String(r[p])}, the log says ${String(r[l])}`);
        }
        diffs.add({ origin, why: parts.join('; ') });
      }
    }
    return { ...base, checked: toSafeNumber(counts?.origins ?? '0', 'origins'), changesRead: toSafeNumber(counts?.changes ?? '0', 'changes'), differences: diffs.count, diffs: diffs.list };
  });
}

export interface StateTableSpec {
  /** `records` (version-vector) or `record_states` (delta-calculator). */
  readonly table: 'records' | 'record_states';
  /** The column holding the seq of the record's last change applied. */
  readonly appliedColumn: 'last_seq' | 'rev';
  /** The projection's cursor, read in the snapshot: every change up to it is applied. */
  readonly readCursor: (tx: EntityManager) => Promise<number>;
  /**
   * Whether a row may be applied past the cursor. version-vector applies records as events arrive
   * and its sweep moves the cursor later (yes); delta-calculator folds a page and moves its cursor
   * in one transaction (no).
   */
  readonly aheadOfCursor: boolean;
  readonly config: StrategyConfig;
  readonly maxDiffs: number;
  /** Records per page (default 500). */
  readonly pageSize?: number;
}

interface StateRow {
  scope: string;
  collection: string;
  key: string;
  state: unknown;
  applied: string;
  hash: string;
  status: string | null;
  wire: string | null;
}

const refKey = (r: RecordRef): string => `${r.scope}\u0000${r.collection}\u0000${r.key}`;

function describeState(s: RecordState): string {
  return `${s.view.status}${s.view.fields === null ? '' : ` ${JSON.stringify(s.view.fields)}`}`;
}

/**
 * A records table against sync-core's fold of the log, record by record, in one snapshot:
 * - each row equals the fold of its record's logged changes up to the row's applied seq (the whole
 *   state, canonically: visible fields, every register, the vector), and its derived columns (hash,
 *   status, wire text) agree with that state;
 * - no row is behind the cursor (a change of its record at or below the cursor not applied), nor ahead
 *   of it when the projection never runs ahead; no row without logged changes;
 * - every record with a change at or below the cursor has a row.
 * Changes after the cursor are the projection's lag (`fleetctl status`), not differences.
 */
export async function verifyStateTable(ds: DataSource, o: StateTableSpec): Promise<VerifyCheck> {
  const pageSize = o.pageSize ?? 500;
  const derived = o.table === 'records' ? `hash, status, null::text as wire` : `record_hash as hash, null::text as status, wire`;
  return readSnapshot(ds, async (tx) => {
    const headSeq = await logHeadSeq(tx);
    const horizon = await logHorizon(tx);
    const cursor = await o.readCursor(tx);
    const base = { name: o.table, headSeq, cursor };
    if (horizon > 0) {
      return { ...base, checked: 0, changesRead: 0, differences: 0, diffs: [], skipped: `the log was compacted up to seq ${horizon}: the states cannot be folded again from it` };
    }
    const diffs = new Diffs(o.maxDiffs);
    let checked = 0;
    let changesRead = 0;
    let after: RecordRef | undefined;
    for (;;) {
      const rows = (await tx.query(
        `select scope, collection, key, state, ${o.appliedColumn} as applied, ${derived} from ${o.table}
          where ($1::text is null or (scope, collection, key) > ($1::text, $2::text, $3::text))
          order by scope, collection, key limit $4`,
        [after?.scope ?? null, after?.collection ?? null, after?.key ?? null, pageSize],
      )) as StateRow[];
      if (rows.length === 0) break;
      const logged = (await tx.query(
        `select ${CHANGE_COLUMNS.split(', ').map((c) => `c.${c}`).join(', ')}
           from change_log c join unnest($1::text[], $2::text[], $3::text[]) as u(s, col, k) on c.scope = u.s and c.collection = u.col and c.key = u.k
          order by c.seq`,
        [rows.map((r) => r.scope), rows.map((r) => r.collection), rows.map((r) => r.key)],
      )) as ChangeLogRow[];
      changesRead += logged.length;
      const byRef = new Map<string, LoggedChange[]>();
      for (const row of logged) {
        const c = rowToLoggedChange(row);
        const l = byRef.get(refKey(c));
        if (l === undefined) byRef.set(refKey(c), [c]);
        else l.push(c);
      }
      for (const r of rows) {
        checked++;
        const ref = { scope: r.scope, collection: r.collection, key: r.key };
        const applied = toSafeNumber(r.applied, o.appliedColumn);
        const all = byRef.get(refKey(ref)) ?? [];
        const upTo = all.filter((c) => c.seq <= applied);
        const owed = all.filter((c) => c.seq <= cursor && c.seq > applied);
        if (upTo.length === 0) {
          diffs.add({ ref, why: `row without any logged change at or below its ${o.appliedColumn} ${applied}` });
          continue;
        }
        const last = upTo[upTo.length - 1] as LoggedChange;
        if (last.seq !== applied) diffs.add({ ref, why: `${o.appliedColumn} ${applied} is not a seq of this record's changes (its last one below is ${last.seq})` });
        if (owed.length > 0) diffs.add({ ref, why: `behind the cursor ${cursor}: applied up to seq ${applied}, its change(s) at seq ${owed.map((c) => c.seq).join(', ')} are not` });
        if (!o.aheadOfCursor && applied > cursor) diffs.add({ ref, why: `applied up to seq ${applied}, past the projection's cursor ${cursor}` });
        let got: RecordState;
        try {
          got = decodeRecordState(r.state);
        } catch (e) {
          diffs.add({ ref, why: `stored state does not decode: ${e instanceof Error ? e.message : String(e)}` });
          continue;
        }
        const want = applyChanges(upTo, o.config);
        const wantHash = recordHash(want);
        if (recordHash(got) !== wantHash) diffs.add({ ref, why: `state ${clip(describeState(got))}, the log's fold up to seq ${applied} is ${clip(describeState(want))}` });
        else if (vvCompare(got.vv, want.vv) !== 'equal') diffs.add({ ref, why: `vector ${JSON.stringify(got.vv)}, the log's fold says ${JSON.stringify(want.vv)}` });
        else if (encodeRecordState(got) !== encodeRecordState(want)) diffs.add({ ref, why: 'visible fields and vector agree, but the stored registers differ from the log\'s fold (concurrent values or tombstones)' });
        if (r.hash !== recordHash(got)) diffs.add({ ref, why: `hash column ${r.hash} does not match its own state (${recordHash(got)})` });
        if (r.status !== null && r.status !== got.view.status) diffs.add({ ref, why: `status column ${r.status} does not match its own state (${got.view.status})` });
        if (r.wire !== null && r.wire !== wireStateText(got)) diffs.add({ ref, why: 'wire text does not match its own state' });
      }
      const lastRow = rows[rows.length - 1] as StateRow;
      after = { scope: lastRow.scope, collection: lastRow.collection, key: lastRow.key };
      if (rows.length < pageSize) break;
    }
    // Records the log has up to the cursor and the table lacks.
    const missing = (await tx.query(
      `select scope, collection, key, count(*) over () as n from (
         select distinct c.scope, c.collection, c.key from change_log c
          where c.seq <= $1 and not exists (select 1 from ${o.table} t where t.scope = c.scope and t.collection = c.collection and t.key = c.key)) m
        order by scope, collection, key limit $2`,
      [cursor, o.maxDiffs],
    )) as { scope: string; collection: string; key: string; n: string }[];
    for (const m of missing) diffs.add({ ref: { scope: m.scope, collection: m.collection, key: m.key }, why: `missing: the log has changes of it at or below the cursor ${cursor}` });
    const missingTotal = toSafeNumber(missing[0]?.n ?? '0', 'missing');
    diffs.count += Math.max(0, missingTotal - missing.length);
    return { ...base, checked, changesRead, differences: diffs.count, diffs: diffs.list };
  });
}
