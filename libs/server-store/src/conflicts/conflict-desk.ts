import type { DataSource, EntityManager } from 'typeorm';
import {
  conflictOf,
  resolveManual,
  type Change,
  type ConflictRecord,
  type LoggedChange,
  type ManualChoice,
  type RecordRef,
  type RecordState,
  type Resolution,
} from '@fleet/sync-core';
import { FleetError } from '@fleet/errors';
import { CHANGE_COLUMNS, rowToLoggedChange, toSafeNumber, type ChangeLogRow } from '../rows';
import { refKey } from '../records/records.projection';
import type { ServerWriter } from '../records/server-writer';
import { strategyNameOf } from '@fleet/config';

export type ConflictStatus = 'open' | 'pending' | 'auto-resolved' | 'resolved' | 'superseded';
export type StrategyName = 'lww' | 'merge' | 'manual' | 'custom';

export type ConflictOutcome =
  | { readonly kind: 'resolution'; readonly deleted: true }
  | { readonly kind: 'resolution'; readonly fields: Readonly<Record<string, unknown>>; readonly unset: readonly string[] }
  | { readonly kind: 'queued'; readonly provisional: { readonly deleted: true } | { readonly fields: Readonly<Record<string, unknown>> } }
  | { readonly kind: 'superseded'; readonly reason: string };

/** One row of the conflict log (see the `conflicts` table in docs/conflicts.md). */
export interface ConflictEntry {
  readonly id: number;
  readonly ref: RecordRef;
  readonly seq: number;
  readonly strategy: StrategyName;
  readonly status: ConflictStatus;
  readonly conflict: ConflictRecord;
  readonly outcome: ConflictOutcome | null;
  readonly resolvedBy: 'auto' | 'operator' | null;
  readonly resolutionChangeId: string | null;
  readonly detectedAt: Date;
  readonly resolvedAt: Date | null;
}

/** What one resolver pass decided for one record. */
export interface ConflictDecision {
  readonly ref: RecordRef;
  readonly strategy: StrategyName;
  readonly status: 'pending' | 'auto-resolved' | 'resolved' | 'superseded';
  readonly conflictIds: readonly number[];
  readonly detectedAt: readonly Date[];
  readonly change?: Change;
}

interface Row {
  id: string;
  conflict_key: string;
  scope: string;
  collection: string;
  key: string;
  seq: string;
  strategy: string;
  sides: ConflictRecord;
  outcome: ConflictOutcome | null;
  status: ConflictStatus;
  resolved_by: 'auto' | 'operator' | null;
  resolution_change_id: string | null;
  detected_at: Date;
  resolved_at: Date | null;
}

const COLUMNS = 'id, conflict_key, scope, collection, key, seq, strategy, sides, outcome, status, resolved_by, resolution_change_id, detected_at, resolved_at';

function toEntry(r: Row): ConflictEntry {
  return {
    id: toSafeNumber(r.id, 'conflict id'),
    ref: { scope: r.scope, collection: r.collection, key: r.key },
    seq: toSafeNumber(r.seq, 'seq'),
    strategy: r.strategy as StrategyName,
    status: r.status,
    conflict: r.sides,
    outcome: r.outcome,
    resolvedBy: r.resolved_by,
    resolutionChangeId: r.resolution_change_id,
    detectedAt: r.detected_at,
    resolvedAt: r.resolved_at,
  };
}

function resolutionOutcome(res: Resolution): ConflictOutcome {
  return res.deleted === true ? { kind: 'resolution', deleted: true } : { kind: 'resolution', fields: res.fields, unset: [...res.unset] };
}

function resolutionOfChange(c: Change): ConflictOutcome {
  return c.op === 'delete' ? { kind: 'resolution', deleted: true } : { kind: 'resolution', fields: c.fields, unset: [...(c.unset ?? [])] };
}

function provisional(state: RecordState): ConflictOutcome {
  return { kind: 'queued', provisional: state.view.status === 'live' ? { fields: state.view.fields } : { deleted: true } };
}

interface Update {
  id: number;
  status: ConflictStatus;
  outcome: ConflictOutcome;
  by: 'auto' | 'operator' | null;
  changeId: string | null;
  resolved: boolean;
}

async function applyUpdates(tx: EntityManager, updates: readonly Update[]): Promise<void> {
  if (updates.length === 0) return;
  await tx.query(
    `update conflicts c set status = u->>'status', outcome = u->'outcome', resolved_by = u->>'by', resolution_change_id = (u->>'change_id')::uuid,
            resolved_at = case when (u->>'resolved')::bool then now() else c.resolved_at end
       from jsonb_array_elements($1::jsonb) as u
      where c.id = (u->>'id')::bigint`,
    [JSON.stringify(updates.map((u) => ({ id: u.id, status: u.status, outcome: u.outcome, by: u.by, change_id: u.changeId, resolved: u.resolved })))],
  );
}

/**
 * The conflict log and manual queue: what the conflict-resolver decides for detected conflicts, and
 * the operator's list / show / resolve. Every decision is made under the `ServerWriter`'s record
 * lock, on the record's state at the log's head, with the conflict rows locked `FOR UPDATE`, and
 * only rows still `open` (auto) or `open`/`pending` (operator) are decided: that is what makes each
 * conflict resolved at most once, whichever replica or operator gets there first.
 */
export class ConflictDesk {
  constructor(
    private readonly ds: DataSource,
    private readonly writer: ServerWriter,
  ) {}

  /**
   * The resolver's pass over detected conflicts. For every record among `ids` that still has `open`
   * rows, all its open (and pending) rows are decided at once against the current state:
   * - no conflict left (a later change settled it): `superseded`;
   * - the record's conflict needs an operator (`manual`): the row of that conflict becomes `pending`
   *   (the queue keeps the latest conflict per record), older rows `superseded`;
   * - otherwise: one resolution change (sync-core `makeResolutionChange`, the strategy's automatic
   *   values), appended and applied like any change; the rows become `auto-resolved`.
   * Also returns, for ids already decided with a resolution change, that change id (`decidedBefore`),
   * so a redelivered event can re-publish it if the first publish was lost.
   */
  async resolveOpen(ids: readonly number[]): Promise<{ decisions: ConflictDecision[]; appended: readonly LoggedChange[]; decidedBefore: string[] }> {
    const rows = (await this.ds.query(`select id, scope, collection, key, status, resolution_change_id from conflicts where id = any($1::bigint[])`, [ids])) as {
      id: string;
      scope: string;
      collection: string;
      key: string;
      status: ConflictStatus;
      resolution_change_id: string | null;
    }[];
    const decidedBefore = rows.filter((r) => r.status !== 'open' && r.resolution_change_id !== null).map((r) => r.resolution_change_id as string);
    const refs = new Map<string, RecordRef>();
    for (const r of rows) if (r.status === 'open') refs.set(refKey(r), { scope: r.scope, collection: r.collection, key: r.key });
    if (refs.size === 0) return { decisions: [], appended: [], decidedBefore };
    const config = this.writer.config;
    // The conflict rows are locked before the append lock (record locks -> conflict rows -> append lock).
    // What the decision reads of a row: not its sides or outcome (jsonb documents, the largest part of
    // reading a row, and the decision is made on the record's state at the log's head anyway).
    let locked: Pick<Row, 'id' | 'conflict_key' | 'scope' | 'collection' | 'key' | 'status' | 'detected_at'>[] = [];
    const lockRows = async (tx: EntityManager): Promise<void> => {
      locked = (await tx.query(
        `select id, conflict_key, scope, collection, key, status, detected_at from conflicts
          where (scope, collection, key) in (select * from unnest($1::text[], $2::text[], $3::text[])) and status in ('open', 'pending')
          order by id for update`,
        [[...refs.values()].map((r) => r.scope), [...refs.values()].map((r) => r.collection), [...refs.values()].map((r) => r.key)],
      )) as typeof locked;
    };
    // Decided before the append lock (`optimistic`), again under it if the records moved meanwhile: the
    // callback reads only `locked` (fetched once) and its own fresh lists, and overwrites the same rows.
    const { result, appended } = await this.writer.write([...refs.values()], async (ctx) => {
      const byRecord = new Map<string, (typeof locked)[number][]>();
      for (const r of locked) {
        const list = byRecord.get(refKey(r)) ?? [];
        list.push(r);
        byRecord.set(refKey(r), list);
      }
      const updates: Update[] = [];
      const decisions: ConflictDecision[] = [];
      for (const [k, group] of byRecord) {
        const open = group.filter((r) => r.status === 'open');
        if (open.length === 0) continue; // only pending rows: they wait for an operator
        const ref = refs.get(k) as RecordRef;
        const state = ctx.state(ref);
        const cur = conflictOf(state, config);
        const strategy = strategyNameOf(config, ref.collection);
        const detectedAt = open.map((r) => r.detected_at);
        if (cur === undefined) {
          for (const r of group) updates.push({ id: Number(r.id), status: 'superseded', outcome: { kind: 'superseded', reason: 'a later change settled the record' }, by: null, changeId: null, resolved: true });
          decisions.push({ ref, strategy, status: 'superseded', conflictIds: group.map((r) => Number(r.id)), detectedAt });
        } else if (cur.needsOperator) {
          const current = group.find((r) => r.conflict_key === cur.id);
          const older = group.filter((r) => r !== current);
          for (const r of older) {
            updates.push({ id: Number(r.id), status: 'superseded', outcome: { kind: 'superseded', reason: `newer conflict of the record: ${cur.id}` }, by: null, changeId: null, resolved: true });
          }
          if (older.length > 0) decisions.push({ ref, strategy, status: 'superseded', conflictIds: older.map((r) => Number(r.id)), detectedAt: older.map((r) => r.detected_at) });
          if (current !== undefined && current.status === 'open') {
            updates.push({ id: Number(current.id), status: 'pending', outcome: provisional(state), by: null, changeId: null, resolved: false });
            decisions.push({ ref, strategy, status: 'pending', conflictIds: [Number(current.id)], detectedAt: [current.detected_at] });
          }
        } else {
          const change = ctx.resolve(ref);
          for (const r of group) updates.push({ id: Number(r.id), status: 'auto-resolved', outcome: resolutionOfChange(change), by: 'auto', changeId: change.changeId, resolved: true });
          decisions.push({ ref, strategy, status: 'auto-resolved', conflictIds: group.map((r) => Number(r.id)), detectedAt: group.map((r) => r.detected_at), change });
        }
      }
      await applyUpdates(ctx.tx, updates);
      return decisions;
    }, { prepare: lockRows, optimistic: true });
    return { decisions: result, appended, decidedBefore };
  }

  /**
   * An operator's decision on a queued conflict. FLEET_CONFLICT_001 unknown id; FLEET_CONFLICT_002
   * already resolved (auto or by an operator); FLEET_CONFLICT_003 superseded (the record's vector
   * moved past the conflict, or a newer conflict exists: the row is marked so); FLEET_RESOLVE_001 a
   * choice that does not fit the conflict (an origin that is not a side, bad fields).
   */
  async resolveByOperator(id: number, choice: ManualChoice): Promise<{ entry: ConflictEntry; change: LoggedChange; detectedAt: Date }> {
    const head = await this.find(id);
    const ref = head.ref;
    const config = this.writer.config;
    const { result, appended } = await this.writer.write([ref], async (ctx) => {
      const [row] = (await ctx.tx.query(`select ${COLUMNS} from conflicts where id = $1 for update`, [id])) as Row[];
      if (row === undefined) throw notFound(id);
      if (row.status === 'auto-resolved' || row.status === 'resolved') {
        throw new FleetError('FLEET_CONFLICT_002', `conflict ${id} was already resolved (${row.status}${row.resolution_change_id ? ` by change ${row.resolution_change_id}` : ''})`, {
          details: { id, status: row.status, resolutionChangeId: row.resolution_change_id },
        });
      }
      if (row.status === 'superseded') throw superseded(id, row.outcome);
      const state = ctx.state(ref);
      const cur = conflictOf(state, config);
      if (cur === undefined || cur.id !== row.conflict_key) {
        const reason = cur === undefined ? 'a later change settled the record' : `newer conflict of the record: ${cur.id}`;
        await applyUpdates(ctx.tx, [{ id, status: 'superseded', outcome: { kind: 'superseded', reason }, by: null, changeId: null, resolved: true }]);
        return { superseded: reason } as const;
      }
      const resolution = resolveManual(state, choice, config);
      const change = ctx.resolve(ref, resolution);
      // Older rows of the record still open or queued are covered by this resolution too.
      await ctx.tx.query(
        `update conflicts set status = 'superseded', outcome = $5::jsonb, resolved_at = now()
          where scope = $1 and collection = $2 and key = $3 and id <> $4 and status in ('open', 'pending')`,
        [ref.scope, ref.collection, ref.key, id, JSON.stringify({ kind: 'superseded', reason: `resolved by an operator in conflict ${id}` })],
      );
      await applyUpdates(ctx.tx, [{ id, status: 'resolved', outcome: resolutionOutcome(resolution), by: 'operator', changeId: change.changeId, resolved: true }]);
      return { detectedAt: row.detected_at } as const;
    });
    if ('superseded' in result) throw superseded(id, { kind: 'superseded', reason: result.superseded });
    const change = appended[0] as LoggedChange;
    return { entry: await this.find(id), change, detectedAt: result.detectedAt };
  }

  async find(id: number): Promise<ConflictEntry> {
    const [row] = (await this.ds.query(`select ${COLUMNS} from conflicts where id = $1`, [id])) as Row[];
    if (row === undefined) throw notFound(id);
    return toEntry(row);
  }

  async list(q: { status?: ConflictStatus; after?: number; limit?: number } = {}): Promise<{ items: ConflictEntry[]; nextCursor: number; hasMore: boolean }> {
    const limit = q.limit ?? 50;
    const after = q.after ?? 0;
    const rows = (await (q.status === undefined
      ? this.ds.query(`select ${COLUMNS} from conflicts where id > $1 order by id limit $2`, [after, limit + 1])
      : this.ds.query(`select ${COLUMNS} from conflicts where status = $3 and id > $1 order by id limit $2`, [after, limit + 1, q.status]))) as Row[];
    const items = rows.slice(0, limit).map(toEntry);
    return { items, nextCursor: items[items.length - 1]?.id ?? after, hasMore: rows.length > limit };
  }

  /** Logged changes by id, in seq order (to re-publish a resolution whose first publish was lost). */
  async changesById(changeIds: readonly string[]): Promise<LoggedChange[]> {
    if (changeIds.length === 0) return [];
    const rows = (await this.ds.query(`select ${CHANGE_COLUMNS} from change_log where change_id = any($1::uuid[]) order by seq`, [changeIds])) as ChangeLogRow[];
    return rows.map(rowToLoggedChange);
  }

  /** The manual queue's length (for the gauge). */
  async pendingCount(): Promise<number> {
    const [r] = (await this.ds.query(`select count(*)::int as n from conflicts where status = 'pending'`)) as { n: number }[];
    return r?.n ?? 0;
  }

  /** Open rows older than `olderThanMs` (their event was lost, or its handler failed for good): the resolver's sweep. */
  async staleOpenIds(olderThanMs: number, limit = 500): Promise<number[]> {
    const rows = (await this.ds.query(
      `select id from conflicts where status = 'open' and detected_at < now() - make_interval(secs => $1::float8 / 1000) order by id limit $2`,
      [olderThanMs, limit],
    )) as { id: string }[];
    return rows.map((r) => Number(r.id));
  }
}

function notFound(id: number): FleetError {
  return new FleetError('FLEET_CONFLICT_001', `conflict ${id}`, { details: { id } });
}

function superseded(id: number, outcome: ConflictOutcome | null): FleetError {
  const reason = outcome !== null && outcome.kind === 'superseded' ? outcome.reason : 'superseded';
  return new FleetError('FLEET_CONFLICT_003', `conflict ${id}: ${reason}`, { details: { id, reason } });
}
