import type { DataSource, EntityManager } from 'typeorm';
import { randomFillSync } from 'node:crypto';
import {
  applyChange,
  decodeRecordState,
  uuidV7Generator,
  emptyRecord,
  encodeHlc,
  hlcInit,
  hlcNow,
  hlcReceive,
  makeLocalChange,
  makeResolutionChange,
  SERVER_ORIGIN,
  type Change,
  type HlcState,
  type LocalEdit,
  type LoggedChange,
  type RecordRef,
  type RecordState,
  type Resolution,
  type StrategyConfig,
} from '@fleet/sync-core';
import { stateGrowthPastCap, wireStateText } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { APPEND_LOCK_SQL, asInfraError, type PostgresChangeLog } from '../postgres-change-log';
import { CHANGE_COLUMNS, rowToLoggedChange, toSafeNumber, type ChangeLogRow } from '../rows';
import { refKey } from './records.projection';

export const PROTOCOL_V1 = 1;

export interface ServerWriterOptions {
  readonly changeLog: PostgresChangeLog;
  readonly config: StrategyConfig;
  /** This replica's HLC node id (`server-<pod>`): two replicas never issue equal timestamps. */
  readonly node: string;
  /** Called after the commit with the appended changes (in seq order): publish the AppendedEvent(s) there. */
  readonly publishAppended?: (changes: readonly LoggedChange[]) => Promise<void>;
  readonly now?: () => number;
  readonly lockTimeoutMs?: number;
  readonly protocol?: number;
}

/** What a write callback sees: each locked record's current state, and makers of server changes. */
export interface ServerWriteContext {
  readonly tx: EntityManager;
  /** The record's state: the projection row plus every logged change it has not applied yet (so, the log's head). */
  state(ref: RecordRef): RecordState;
  /** A resolution change (sync-core `makeResolutionChange`): without `resolution`, the strategy's automatic one. */
  resolve(ref: RecordRef, resolution?: Resolution): Change;
  /** A server edit of a record, of any scope (sync-core `makeLocalChange`): operator writes. */
  edit(ref: RecordRef, edit: LocalEdit): Change;
}

export interface ServerWriteOptions {
  /** Runs after the states are loaded, before the append lock (the desk locks conflict rows here). */
  readonly prepare?: (tx: EntityManager) => Promise<void>;
  /** Run the callback before the append lock, and again under it if the records moved meanwhile (see `write`). */
  readonly optimistic?: boolean;
}

export interface ServerWriteResult<T> {
  readonly result: T;
  /** The changes appended (seq order), already published when `publishAppended` is set. */
  readonly appended: readonly LoggedChange[];
}

/**
 * Writes changes with origin `server` (resolutions, operator writes of desired state).
 *
 * sync-core assumes ONE writer per record for a given origin: the server's dot on a record is
 * `vv.server + 1`, and two replicas ticking the same vector would reuse a dot (FLEET_CHANGE_002,
 * a silent divergence otherwise). So, in one READ COMMITTED transaction:
 * 1. a transaction-scoped advisory lock per record (sorted, so two writers never deadlock);
 * 2. the change log's append lock, so nothing is appended between what we read and what we write;
 * 3. the state: the projection row, plus every logged change of the record with seq > last_seq
 *    (version-vector may not have applied them yet; its rows are a gapless prefix per record);
 * 4. the callback makes changes from that state (vector = state's vector + a server tick, HLC past
 *    every write it has seen); `originSeq` comes from the PostgreSQL sequence `server_origin_seq`,
 *    unique across replicas for ever;
 * 5. the changes are appended through `PostgresChangeLog` in the same transaction; commit;
 * 6. the AppendedEvent is published after the commit (version-vector applies them like any change).
 * Lock order everywhere: record locks, then (conflict rows), then the append lock. version-vector
 * locks `records` rows and the rev lock, never these, so no cycle is possible.
 */
export class ServerWriter {
  private clock: HlcState;
  private readonly now: () => number;
  private readonly protocol: number;
  private readonly lockTimeoutMs: number;
  /** Change ids from a pool of random bytes (sync-core `uuidV7Generator`): one OS draw per 1,024 ids, not per id. */
  private readonly newChangeId: () => string;

  constructor(
    private readonly ds: DataSource,
    private readonly options: ServerWriterOptions,
  ) {
    this.clock = hlcInit(options.node);
    this.now = options.now ?? (() => Date.now());
    this.protocol = options.protocol ?? PROTOCOL_V1;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
    this.newChangeId = uuidV7Generator(this.now, randomFillSync);
  }

  get config(): StrategyConfig {
    return this.options.config;
  }

  /**
   * Locks `refs`, loads their states, runs `prepare` (it may lock conflict rows of these records),
   * runs `fn`, appends the changes `fn` made through `ctx` (at most one per record) and commits.
   *
   * The append lock serialises every append of the server, so it is held as briefly as possible:
   * the states are loaded (projection rows + unapplied changes) and `prepare` runs BEFORE it, under
   * the record locks only; once it is held, one catch-up read finds what was appended to these
   * records since (usually nothing) and folds it, so the changes are always derived from each
   * record's state at the log's head with nothing appendable in between.
   * - default: `fn` runs after the catch-up, under the append lock;
   * - `optimistic`: `fn` runs BEFORE the append lock (the resolver's decisions, the JavaScript and
   *   its conflict-row updates); if the catch-up then finds new changes of these records, its changes
   *   are discarded and `fn` runs again, under the lock, on the caught-up states. So `fn` must be
   *   re-runnable in the same transaction (its writes overwritten by the second run's).
   */
  async write<T>(refs: readonly RecordRef[], fn: (ctx: ServerWriteContext) => Promise<T> | T, opts: ServerWriteOptions = {}): Promise<ServerWriteResult<T>> {
    let made: Change[] = [];
    let out: { result: T; appended: LoggedChange[] };
    try {
      out = await this.ds.transaction('READ COMMITTED', async (tx) => {
        await tx.query(`select set_config('lock_timeout', $1, true)`, [`${this.lockTimeoutMs}ms`]);
        await lockRecords(tx, refs);
        const loaded = await loadStatesAt(tx, refs, this.options.config);
        // One origin seq per record is what resolutions and operator writes use; the makers are synchronous for the callback's convenience.
        // A discarded run's changes were never appended, so a second run reuses the same seqs.
        const pool = await nextOriginSeqs(tx, Math.max(1, refs.length));
        if (opts.prepare !== undefined) await opts.prepare(tx);
        const run = async (): Promise<T> => {
          made = [];
          const states = new Map(loaded.states);
          const seqs = [...pool];
          const ctx: ServerWriteContext = {
            tx,
            state: (ref) => getState(states, ref),
            resolve: (ref, resolution) => {
              const state = getState(states, ref);
              const meta = this.meta(state, seqs.shift());
              const { change, state: next } = makeResolutionChange(state, meta, this.options.config, resolution);
              checkStateSize(ref, state, next);
              states.set(refKey(ref), next);
              made.push(change);
              return change;
            },
            edit: (ref, edit) => {
              const state = getState(states, ref);
              const meta = this.meta(state, seqs.shift());
              const { change, state: next } = makeLocalChange(state, edit, { ...meta, origin: SERVER_ORIGIN }, this.options.config, 'tick');
              checkStateSize(ref, state, next);
              states.set(refKey(ref), next);
              made.push(change);
              return change;
            },
          };
          return fn(ctx);
        };
        let result: T;
        if (opts.optimistic === true) {
          result = await run();
          await tx.query(APPEND_LOCK_SQL);
          // Something was logged for these records since they were read: decide again, at the head.
          if ((await catchUp(tx, loaded, this.options.config)) > 0) result = await run();
        } else {
          await tx.query(APPEND_LOCK_SQL);
          await catchUp(tx, loaded, this.options.config);
          result = await run();
        }
        if (made.length === 0) return { result, appended: [] };
        const r = await this.options.changeLog.appendInLockedTransaction(tx, made);
        const bad = r.rejected[0];
        if (bad !== undefined) throw bad.error;
        return { result, appended: [...r.appended] };
      });
    } catch (e) {
      throw asInfraError(e);
    }
    if (out.appended.length > 0 && this.options.publishAppended !== undefined) await this.options.publishAppended(out.appended);
    return out;
  }

  private meta(state: RecordState, originSeq: number | undefined): { originSeq: number; changeId: string; hlc: string; protocol: number } {
    if (originSeq === undefined) throw new FleetError('FLEET_INTERNAL_001', 'more server changes than pre-allocated origin seqs (one per record per write)');
    const now = this.now();
    let clock = hlcNow(this.clock, now).state;
    const seen = maxHlc(state);
    if (seen !== undefined) clock = hlcReceive(clock, seen, now).state;
    this.clock = clock;
    return { originSeq, changeId: this.newChangeId(), hlc: encodeHlc(clock), protocol: this.protocol };
  }
}

/** Refuses (FLEET_DECODE_004) a server write (an operator's, a captured row's, a resolution) past the record size cap. */
function checkStateSize(ref: RecordRef, before: RecordState, next: RecordState): void {
  const over = stateGrowthPastCap(ref, wireStateText(next), () => wireStateText(before));
  if (over !== undefined) throw new FleetError('FLEET_DECODE_004', over.message, { details: over.details });
}

function getState(states: Map<string, RecordState>, ref: RecordRef): RecordState {
  const s = states.get(refKey(ref));
  if (s === undefined) throw new FleetError('FLEET_INTERNAL_001', 'record was not locked by this write', { details: { ...ref } });
  return s;
}

function maxHlc(state: RecordState): string | undefined {
  let m: string | undefined;
  for (const e of state.existence) if (m === undefined || e.hlc > m) m = e.hlc;
  for (const ws of Object.values(state.fields)) for (const w of ws) if (m === undefined || w.hlc > m) m = w.hlc;
  return m;
}

/** Advisory locks on the records' keys, taken in ascending key order (no deadlock between writers). */
export async function lockRecords(tx: EntityManager, refs: readonly RecordRef[]): Promise<void> {
  if (refs.length === 0) return;
  await tx.query(
    `select pg_advisory_xact_lock(k)
       from (select distinct hashtextextended('fleet.record|' || s || '|' || c || '|' || k, 0) as k
               from unnest($1::text[], $2::text[], $3::text[]) as t(s, c, k)
              order by 1) locks`,
    [refs.map((r) => r.scope), refs.map((r) => r.collection), refs.map((r) => r.key)],
  );
}

async function nextOriginSeqs(tx: EntityManager, n: number): Promise<number[]> {
  const rows = (await tx.query(`select nextval('server_origin_seq') as n from generate_series(1, $1)`, [n])) as { n: string }[];
  return rows.map((r) => toSafeNumber(r.n, 'server origin seq'));
}

/** Each record's state at the log's head: projection row + the logged changes it has not applied. */
export async function loadStates(tx: EntityManager, refs: readonly RecordRef[], config: StrategyConfig): Promise<Map<string, RecordState>> {
  return (await loadStatesAt(tx, refs, config)).states;
}

interface LoadedStates {
  readonly refs: readonly RecordRef[];
  readonly states: Map<string, RecordState>;
  /** Per record: the last seq folded into its state. */
  readonly seqs: Map<string, number>;
}

const PENDING_SQL = `select ${CHANGE_COLUMNS.split(', ').map((c) => `c.${c}`).join(', ')}
   from unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) as r(scope, collection, key, after)
   join change_log c on c.scope = r.scope and c.collection = r.collection and c.key = r.key and c.seq > r.after
  order by c.seq`;

async function loadStatesAt(tx: EntityManager, refs: readonly RecordRef[], config: StrategyConfig): Promise<LoadedStates> {
  const states = new Map<string, RecordState>();
  const seqs = new Map<string, number>();
  if (refs.length === 0) return { refs, states, seqs };
  const params = [refs.map((r) => r.scope), refs.map((r) => r.collection), refs.map((r) => r.key)];
  const rows = (await tx.query(
    `select t.scope, t.collection, t.key, r.state, coalesce(r.last_seq, 0) as last_seq
       from unnest($1::text[], $2::text[], $3::text[]) as t(scope, collection, key)
       left join records r on r.scope = t.scope and r.collection = t.collection and r.key = t.key`,
    params,
  )) as { scope: string; collection: string; key: string; state: unknown; last_seq: string }[];
  for (const r of rows) {
    states.set(refKey(r), r.state === null || r.state === undefined ? emptyRecord(r) : decodeRecordState(r.state));
    seqs.set(refKey(r), toSafeNumber(r.last_seq, 'last_seq'));
  }
  const loaded = { refs, states, seqs };
  await catchUp(tx, loaded, config);
  return loaded;
}

/** Folds the changes of the loaded records logged after what their states include; returns how many. */
async function catchUp(tx: EntityManager, loaded: LoadedStates, config: StrategyConfig): Promise<number> {
  const { refs, states, seqs } = loaded;
  if (refs.length === 0) return 0;
  const pending: ChangeLogRow[] = await tx.query(PENDING_SQL, [
    refs.map((r) => r.scope),
    refs.map((r) => r.collection),
    refs.map((r) => r.key),
    refs.map((r) => seqs.get(refKey(r)) ?? 0),
  ]);
  for (const row of pending) {
    const c = rowToLoggedChange(row);
    const k = refKey(c);
    states.set(k, applyChange(states.get(k) as RecordState, c, config).state);
    seqs.set(k, c.seq);
  }
  return pending.length;
}
