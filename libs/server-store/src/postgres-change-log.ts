import type { DataSource, EntityManager } from 'typeorm';
import type { Change, LoggedChange } from '@fleet/sync-core';
import { FleetError } from '@fleet/errors';
import type { AppendResult, ChangeLog, ReadSinceOptions, ReadSinceResult, RejectedChange } from './change-log.port';
import type { Projection } from './projections/projection';
import { OriginsProjection } from './projections/origins.projection';
import { CHANGE_COLUMNS, contentOf, differingFields, rowToLoggedChange, toSafeNumber } from './rows';
import type { ChangeLogRow } from './rows';

/**
 * The advisory lock that serialises seq assignment (and projection rebuilds) across every
 * process appending to this database. A constant derived from a readable name.
 */
export const APPEND_LOCK_SQL = `select pg_advisory_xact_lock(hashtextextended('fleet.change_log.append', 0))`;

export const MAX_READ_LIMIT = 10_000;

export interface PostgresChangeLogOptions {
  /** Projections maintained in the append transaction, applied in this order. Default: origins. */
  readonly projections?: readonly Projection[];
  /** How long an append waits for the append lock before failing (retryable). Default 30 s. */
  readonly lockTimeoutMs?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The change log on PostgreSQL.
 *
 * Append: one READ COMMITTED transaction per batch that (1) takes a transaction-scoped advisory
 * lock, (2) looks up which changes are already logged (by change_id or (origin, origin_seq)),
 * (3) inserts the new ones in one statement with seqs max(seq)+1.., ON CONFLICT DO NOTHING as a
 * backstop, (4) applies the projections, (5) commits, which releases the lock.
 *
 * Why the lock (cursor safety): concurrent transactions would otherwise commit out of seq order,
 * and a reader that saw seq 6 before seq 5 committed would move its cursor past 5 for ever.
 * Under the lock, the transaction that assigns seqs n+1.. started its assignment after the
 * previous holder released the lock, and PostgreSQL releases a transaction's locks only after
 * its commit is visible to new snapshots (CommitTransaction in xact.c runs
 * ProcArrayEndTransaction before ResourceOwnerRelease frees the locks; the "locks are released
 * at commit" wording of the docs, "Advisory Locks" and "Explicit Locking"). So commit order ==
 * seq order: any snapshot that sees seq s also sees every seq < s. READ COMMITTED matters: the
 * max(seq) statement takes its snapshot after the lock is granted; under REPEATABLE READ the
 * snapshot would date from before the wait. See docs/change-log.md.
 */
export class PostgresChangeLog implements ChangeLog {
  private readonly projections: readonly Projection[];
  private readonly lockTimeoutMs: number;

  constructor(
    private readonly ds: DataSource,
    options: PostgresChangeLogOptions = {},
  ) {
    this.projections = options.projections ?? [new OriginsProjection()];
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
  }

  async appendBatch(changes: readonly Change[]): Promise<AppendResult> {
    const { storable, rejected } = splitStorable(changes);
    if (storable.length === 0) return { appended: [], duplicates: [], rejected };
    try {
      // Common path: nothing repeats inside the batch, so insert it all without looking anything up;
      // the unique indexes tell us if a row is already logged. Then (rare: a redelivery, a replay, an
      // identity conflict) this transaction rolls back and the batch is classified row by row.
      if (!hasRepeats(storable)) {
        try {
          return await this.inAppendTransaction(async (tx) => {
            const appended = await this.insert(tx, storable, 'signal');
            await this.project(tx, appended);
            return { appended, duplicates: [], rejected: [...rejected] };
          });
        } catch (e) {
          if (!(e instanceof AlreadyLogged)) throw e;
        }
      }
      return await this.inAppendTransaction((tx) => this.appendLocked(tx, storable, rejected));
    } catch (e) {
      throw asInfraError(e);
    }
  }

  /** One READ COMMITTED transaction holding the append lock (waiting at most lockTimeoutMs for it). */
  private inAppendTransaction<T>(fn: (tx: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction('READ COMMITTED', async (tx) => {
      await tx.query(APPEND_LOCK_WITH_TIMEOUT_SQL, [`${this.lockTimeoutMs}ms`]);
      return fn(tx);
    });
  }

  private async project(tx: EntityManager, appended: readonly LoggedChange[]): Promise<void> {
    if (appended.length > 0) for (const p of this.projections) await p.apply(tx, appended);
  }

  /**
   * Appends inside the caller's transaction, which must be READ COMMITTED and already hold the append
   * lock (`APPEND_LOCK_SQL`): for a writer that must read the log and append in one atomic step (the
   * `ServerWriter` folds a record's unapplied changes, derives its change from them and appends it;
   * holding the lock across the read means nothing can be appended in between). Same classification,
   * projections and result as `appendBatch`; the commit is the caller's.
   */
  async appendInLockedTransaction(tx: EntityManager, changes: readonly Change[]): Promise<AppendResult> {
    const { storable, rejected } = splitStorable(changes);
    if (storable.length === 0) return { appended: [], duplicates: [], rejected };
    try {
      return await this.appendLocked(tx, storable, rejected);
    } catch (e) {
      throw asInfraError(e);
    }
  }

  private async appendLocked(tx: EntityManager, changes: readonly Change[], rejected: RejectedChange[]): Promise<AppendResult> {
    const existing = await this.findExisting(tx, changes);
    const byId = new Map<string, LoggedChange>();
    const byOrigin = new Map<string, LoggedChange>();
    for (const l of existing) {
      byId.set(l.changeId, l);
      byOrigin.set(originKey(l), l);
    }

    // Classify in input order. `fresh` are inserted; a repeat inside the batch points at its index.
    const fresh: Change[] = [];
    const freshById = new Map<string, number>();
    const freshByOrigin = new Map<string, number>();
    const dupRefs: Array<{ logged: LoggedChange } | { fresh: number }> = [];
    for (const c of changes) {
      const id = c.changeId.toLowerCase();
      const logged = byId.get(id);
      if (logged !== undefined) {
        if (contentOf(logged) === contentOf(c)) dupRefs.push({ logged });
        else rejected.push({ change: c, error: contentConflict(c, logged) });
        continue;
      }
      const sameOrigin = byOrigin.get(originKey(c));
      if (sameOrigin !== undefined) {
        rejected.push({ change: c, error: originSeqConflict(c, sameOrigin) });
        continue;
      }
      const i = freshById.get(id);
      if (i !== undefined) {
        const first = fresh[i] as Change;
        if (contentOf(first) === contentOf(c)) dupRefs.push({ fresh: i });
        else rejected.push({ change: c, error: contentConflict(c, first) });
        continue;
      }
      const j = freshByOrigin.get(originKey(c));
      if (j !== undefined) {
        rejected.push({ change: c, error: originSeqConflict(c, fresh[j] as Change) });
        continue;
      }
      freshById.set(id, fresh.length);
      freshByOrigin.set(originKey(c), fresh.length);
      fresh.push(c);
    }

    const appended = fresh.length === 0 ? [] : await this.insert(tx, fresh, 'strict');
    await this.project(tx, appended);
    const duplicates = dupRefs.map((d) => ('logged' in d ? d.logged : (appended[d.fresh] as LoggedChange)));
    return { appended, duplicates, rejected };
  }

  private async findExisting(tx: EntityManager, changes: readonly Change[]): Promise<LoggedChange[]> {
    const rows: ChangeLogRow[] = await tx.query(
      `select ${CHANGE_COLUMNS} from change_log where change_id = any($1::uuid[])
       union
       select ${CHANGE_COLUMNS} from change_log
        where (origin, origin_seq) in (select * from unnest($2::text[], $3::bigint[]))`,
      [changes.map((c) => c.changeId), changes.map((c) => c.origin), changes.map((c) => c.originSeq)],
    );
    return rows.map(rowToLoggedChange);
  }

  /**
   * Inserts `fresh` with consecutive seqs after the head, in one statement that also reads the head
   * (`max(seq)`: its snapshot is taken after the lock was granted, so it sees the previous holder's
   * rows); the caller holds the append lock. A plain insert: the unique indexes check each row as it
   * goes into them, which costs far less than ON CONFLICT's speculative insertion. A row that is
   * already logged (unique violation) is `AlreadyLogged` in 'signal' mode (the caller classifies
   * the batch in a new transaction); in 'strict' mode the lookup said nothing was logged, so a
   * writer bypassed the lock: retryable FLEET_INFRA_001, and the transaction rolls back rather than
   * log with a hole (the retry classifies afresh).
   */
  private async insert(tx: EntityManager, fresh: readonly Change[], mode: 'signal' | 'strict'): Promise<LoggedChange[]> {
    let rows: Array<{ head: string; n: number }>;
    try {
      rows = (await queryQuietly(tx, INSERT_SQL, [
        textArray(fresh.map((c) => c.changeId)),
        textArray(fresh.map((c) => c.origin)),
        plainArray(fresh.map((c) => c.originSeq)),
        textArray(fresh.map((c) => c.scope)),
        textArray(fresh.map((c) => c.collection)),
        textArray(fresh.map((c) => c.key)),
        textArray(fresh.map((c) => c.op)),
        textArray(fresh.map((c) => JSON.stringify(c.fields))),
        textArray(fresh.map((c) => (c.unset === undefined ? null : JSON.stringify(c.unset)))),
        textArray(fresh.map((c) => c.hlc)),
        textArray(fresh.map((c) => JSON.stringify(c.vv))),
        textArray(fresh.map((c) => c.hash)),
        plainArray(fresh.map((c) => c.protocol)),
      ])) as Array<{ head: string; n: number }>;
    } catch (e) {
      if (!isLogUniqueViolation(e)) throw e;
      if (mode === 'signal') throw new AlreadyLogged();
      throw new FleetError('FLEET_INFRA_001', `change_log insert raced: ${(e as Error).message}`, { cause: e });
    }
    const n = rows[0]?.n ?? 0;
    if (n !== fresh.length) throw new FleetError('FLEET_INFRA_001', `change_log insert raced: ${n} of ${fresh.length} rows inserted`);
    const base = toSafeNumber(rows[0]?.head ?? 0, 'head seq');
    return fresh.map((c, i) => ({ ...c, changeId: c.changeId.toLowerCase(), seq: base + i + 1 }));
  }

  async readSince(cursor: number, options: ReadSinceOptions): Promise<ReadSinceResult> {
    if (!Number.isSafeInteger(cursor) || cursor < 0) throw new RangeError(`cursor must be a non-negative integer, got ${cursor}`);
    const { limit, scopes } = options;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_READ_LIMIT) throw new RangeError(`limit must be 1..${MAX_READ_LIMIT}, got ${limit}`);
    if (scopes !== undefined && scopes.length === 0) return { changes: [], nextCursor: cursor, hasMore: false };
    // One statement = one snapshot; by the append rule that snapshot holds a gapless prefix of
    // the log, so whatever it returns may be consumed and the cursor moved past it.
    const rows: ChangeLogRow[] =
      scopes === undefined
        ? await this.ds.query(`select ${CHANGE_COLUMNS} from change_log where seq > $1 order by seq limit $2`, [cursor, limit + 1])
        : await this.ds.query(
            `select ${CHANGE_COLUMNS} from change_log where scope = any($3::text[]) and seq > $1 order by seq limit $2`,
            [cursor, limit + 1, scopes],
          );
    const hasMore = rows.length > limit;
    const changes = rows.slice(0, limit).map(rowToLoggedChange);
    const last = changes[changes.length - 1];
    return { changes, nextCursor: last === undefined ? cursor : last.seq, hasMore };
  }
}

/**
 * `set_config` runs first (the materialized CTE is evaluated before the row that takes the lock), so
 * the lock wait is bounded by this transaction's lock_timeout: one round trip instead of two.
 */
const APPEND_LOCK_WITH_TIMEOUT_SQL = `with t as materialized (select set_config('lock_timeout', $1, true) as v)
  ${APPEND_LOCK_SQL.replace(/^select /, 'select t.v, ')} from t`;

/** Seqs head+1.. in input order (WITH ORDINALITY); returns the head and the number of rows inserted. */
const INSERT_SQL = `with h as (select coalesce(max(seq), 0) as head from change_log),
  ins as (
    insert into change_log (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
    select h.head + r.ord, r.change_id, r.origin, r.origin_seq, r.scope, r.collection, r.key, r.op, r.fields, r.unset, r.hlc, r.vv, r.hash, r.protocol
      from h, unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::jsonb[], $9::jsonb[], $10::text[], $11::jsonb[], $12::text[], $13::int[])
              with ordinality as r(change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol, ord)
    returning 1)
  select (select head from h)::text as head, (select count(*) from ins)::int as n`;

/**
 * A query on the transaction's own connection, without TypeORM's error log: a unique violation of the
 * optimistic insert is an expected outcome (a redelivered push), not something to log with every
 * parameter of the batch. Errors are thrown as usual.
 */
async function queryQuietly(tx: EntityManager, sql: string, params: unknown[]): Promise<unknown[]> {
  if (tx.queryRunner === undefined) return (await tx.query(sql, params)) as unknown[];
  const client = (await tx.queryRunner.connect()) as { query(sql: string, params: unknown[]): Promise<{ rows: unknown[] }> };
  return (await client.query(sql, params)).rows;
}

/** The unique indexes of change_log: a violation of one means a row of the batch is already logged. */
const LOG_UNIQUE_CONSTRAINTS = new Set(['change_log_pk', 'change_log_change_id_uq', 'change_log_origin_seq_uq']);

function isLogUniqueViolation(e: unknown): boolean {
  const err = e as { code?: unknown; constraint?: unknown } | null;
  return err?.code === '23505' && typeof err.constraint === 'string' && LOG_UNIQUE_CONSTRAINTS.has(err.constraint);
}

/** The optimistic insert met a row that is already logged; the batch is classified in a new transaction. */
class AlreadyLogged extends Error {
  constructor() {
    super('a change of the batch is already logged');
  }
}

/** Whether a change id or an (origin, originSeq) occurs twice in the batch (then it is classified row by row). */
function hasRepeats(changes: readonly Change[]): boolean {
  const ids = new Set<string>();
  const origins = new Set<string>();
  for (const c of changes) {
    const id = c.changeId.toLowerCase();
    const o = originKey(c);
    if (ids.has(id) || origins.has(o)) return true;
    ids.add(id);
    origins.add(o);
  }
  return false;
}

/**
 * A PostgreSQL array literal of strings (NULL for null), built here rather than by node-postgres's
 * generic array serialiser, which was a tenth of the service's CPU per change: each element quoted,
 * with `\` and `"` escaped (array_in's rules; NUL was already refused by `unstorable`).
 */
function textArray(values: ReadonlyArray<string | null>): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else out += `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPED, '\\$&') : v}"`;
  }
  return `${out}}`;
}
const NEEDS_ESCAPE = /[\\"]/;
const ESCAPED = /[\\"]/g;

/** A PostgreSQL array literal of integers (already checked to be safe integers). */
function plainArray(values: readonly number[]): string {
  return `{${values.join(',')}}`;
}

function splitStorable(changes: readonly Change[]): { storable: Change[]; rejected: RejectedChange[] } {
  const rejected: RejectedChange[] = [];
  const storable: Change[] = [];
  for (const c of changes) {
    const problem = unstorable(c);
    if (problem === undefined) storable.push(c);
    else rejected.push({ change: c, error: new FleetError('FLEET_DECODE_002', problem, { details: { changeId: c.changeId } }) });
  }
  return { storable, rejected };
}

function originKey(c: Change): string {
  return `${c.origin}\u0000${c.originSeq}`;
}

function contentConflict(c: Change, logged: Change): FleetError {
  const differs = differingFields(c, logged);
  return new FleetError('FLEET_LOG_001', `changeId ${c.changeId} is already logged with different ${differs.join(', ')}`, {
    details: { changeId: c.changeId, differs, ...('seq' in logged ? { loggedSeq: (logged as LoggedChange).seq } : {}) },
  });
}

function originSeqConflict(c: Change, logged: Change): FleetError {
  return new FleetError('FLEET_LOG_001', `(${c.origin}, ${c.originSeq}) is already logged as change ${logged.changeId}, not ${c.changeId}`, {
    details: { changeId: c.changeId, origin: c.origin, originSeq: c.originSeq, loggedChangeId: logged.changeId },
  });
}

const NUL = /\u0000/;

/**
 * What PostgreSQL would refuse for the whole batch (a bad uuid, a NUL in text or jsonb, an
 * out-of-range number). The wire decoder should have caught it; checked again here so that one
 * bad change is refused alone instead of poisoning its batch into endless redelivery.
 */
function unstorable(c: Change): string | undefined {
  if (typeof c.changeId !== 'string' || !UUID.test(c.changeId)) return `changeId ${JSON.stringify(c.changeId)} is not a UUID`;
  if (!Number.isSafeInteger(c.originSeq) || c.originSeq < 1) return `originSeq ${String(c.originSeq)} is not a positive integer`;
  if (c.op !== 'put' && c.op !== 'delete') return `op ${JSON.stringify(c.op)} is not put or delete`;
  if (!Number.isInteger(c.protocol) || c.protocol < 0 || c.protocol > 2_147_483_647) return `protocol ${String(c.protocol)} is out of range`;
  for (const [name, v] of [['origin', c.origin], ['scope', c.scope], ['collection', c.collection], ['key', c.key], ['hlc', c.hlc], ['hash', c.hash]] as const) {
    if (typeof v !== 'string' || NUL.test(v)) return `${name} is not a string without NUL characters`;
  }
  const json = JSON.stringify([c.fields, c.vv, c.unset ?? null]);
  if (json.includes('\\u0000')) return 'fields, vv or unset contain a NUL character, which jsonb cannot store';
  return undefined;
}

/** Connection and lock-timeout failures are retryable; anything already a FleetError stays as is. */
export function asInfraError(e: unknown): unknown {
  if (e instanceof FleetError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  // 55P03 lock_not_available (lock_timeout), 57P01 admin_shutdown, 08xxx connection exceptions, 40001/40P01.
  if (typeof code === 'string' && (code === '55P03' || code === '57P01' || code.startsWith('08') || code === '40001' || code === '40P01')) {
    return new FleetError('FLEET_INFRA_001', `PostgreSQL: ${(e as Error).message}`, { cause: e });
  }
  if (e instanceof Error && /ECONNREFUSED|ECONNRESET|Connection terminated|timeout/i.test(e.message)) {
    return new FleetError('FLEET_INFRA_001', `PostgreSQL: ${e.message}`, { cause: e });
  }
  return e;
}
