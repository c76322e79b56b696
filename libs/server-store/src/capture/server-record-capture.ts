import { Client, type ClientConfig } from 'pg';
import type { DataSource } from 'typeorm';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { decodeServerRowFields, decodeServerRowRef } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import { foldRowEvents, rowEdit, type Fields, type LocalEdit, type LoggedChange, type RecordRef, type RowEvent } from '@fleet/sync-core';
import { asInfraError } from '../postgres-change-log';
import type { ServerWriter } from '../records/server-writer';

/** The table, and the publication the migration declares on it (migration 1767225601000). */
export const SERVER_RECORDS_TABLE = 'server_records';
export const SERVER_RECORDS_PUBLICATION = 'fleet_server_records';

/** A row as the WAL carries it: the table's columns, not yet checked. */
export interface RawServerRow {
  readonly scope: string;
  readonly collection: string;
  readonly key: string;
  /** `undefined` when the WAL left it out (an unchanged TOASTed value of an update's new row). */
  readonly fields: unknown;
}

/** A row event the capture could not turn into a change, with where it was in the WAL. */
export interface RejectedRow {
  readonly row: { readonly scope: string; readonly collection: string; readonly key: string; readonly before: unknown; readonly after: unknown };
  readonly error: FleetError;
  /** The commit's LSN, and the record's place among the transaction's records: with the slot, a stable id. */
  readonly commitLsn: string;
  readonly index: number;
}

export type CaptureState = 'starting' | 'streaming' | 'standby' | 'failed' | 'stopped';

export interface CaptureLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface ServerRecordCaptureOptions {
  /** The replication connection: a URL of the database the migrations ran in (the slot is made there). */
  readonly databaseUrl: string;
  /** The logical replication slot; one per database, shared by every replica (one streams, the others wait). */
  readonly slot: string;
  readonly writer: ServerWriter;
  /** After each appended part's commit: announce the changes (`log.appended`). A failure is logged; the log sweep projects them. */
  readonly announce: (changes: readonly LoggedChange[]) => Promise<void>;
  /** Before the part holding it commits: dead-letter a row that cannot become a change. A failure retries the transaction. */
  readonly reject: (rejected: RejectedRow) => Promise<void>;
  /** Records per appended part (one ServerWriter transaction: one advisory lock per record). */
  readonly partRecords?: number;
  /** Wait before connecting again after the stream ended, failed, or found the slot in use by another replica. */
  readonly retryMs?: number;
  readonly logger: CaptureLogger;
  /** Row outcomes, for metrics: `captured` became a change, `unchanged` needed none, `rejected` was dead-lettered. */
  readonly onRows?: (outcome: 'captured' | 'unchanged' | 'rejected', n: number) => void;
}

interface OpenTransaction {
  readonly commitLsn: string;
  readonly events: RowEvent<RawServerRow>[];
}

/** Where the capture stands: the last commit it appended from, and how many of its (folded) records. */
interface Progress {
  readonly lsn: bigint;
  readonly records: number;
}

/** One replication connection's state; a new session starts only after the last one's handler has finished. */
class Session {
  txn: OpenTransaction | undefined;
  busy = false;
  broken: unknown;
  /** The position up to which everything is handled: what the slot may be acknowledged to. */
  durable: bigint | undefined;
  /** The handler running now (the library runs one at a time). */
  inflight: Promise<void> = Promise.resolve();
  constructor(
    readonly service: LogicalReplicationService,
    readonly from: bigint,
  ) {}

  /** The position to report: what is handled, or where the session started. */
  get position(): string {
    return formatLsn(this.durable ?? this.from);
  }
}

/** The slot is another replica's for now: stand by (`object_in_use`, as PostgreSQL says of an active slot). */
class SlotBusy extends Error {
  readonly code = '55006';
}

/** Thrown out of a capture write (rolling it back) to dead-letter rows that would make their records too large. */
class OversizedRows<T> extends Error {
  constructor(readonly rows: readonly { readonly edit: T; readonly error: FleetError }[]) {
    super(`${rows.length} captured row(s) would make their records too large`);
  }
}

/** Another replica appended this part first (`capture_progress` moved): skip to where it is. */
class AlreadyCaptured extends Error {
  constructor(readonly progress: Progress) {
    super('captured by another replica');
  }
}

/** Status updates to the server while a handler runs (the socket is paused then): under `wal_sender_timeout` / 2 (default 60 s). */
const STATUS_EVERY_MS = 10_000;

/**
 * Captures server-side SQL writes (docs/server-writes.md): streams the committed inserts, updates and
 * deletes of `server_records` from the slot (pgoutput, publication `fleet_server_records`) and appends
 * each transaction's net effect per record to the change log through the ServerWriter: changes with
 * origin `server`, exactly like operator writes over the API.
 *
 * Exactly once. The slot's position is acknowledged only up to the last transaction whose changes are
 * committed, so a crash streams the rest again. Each part of a transaction claims its place in
 * `capture_progress` (commit LSN, records done) in the same PostgreSQL transaction as its changes,
 * with the row locked and checked first: a transaction streamed again skips what was appended, and
 * two replicas that both hold a part (one lost the slot while appending) cannot both commit it. Rows
 * that cannot become changes are dead-lettered before their part commits (with a stable id, stored
 * once within the dead-letter stream's duplicate window).
 *
 * Initial copy. The capture makes its slot with an exported snapshot and stores the table's rows as of
 * it (`capture_copy`), then appends them like one transaction at the slot's consistent point before it
 * streams: rows written before the capture was turned on are captured too, once each.
 *
 * One stream per slot: a second replica's START_REPLICATION fails with "slot is active", and it waits
 * (`standby`) and tries again every `retryMs`, so it takes over when the streaming one stops. A
 * replica starts a new session only once the last one's handler has returned.
 *
 * Idle acknowledgements: a primary keepalive carries the position the server has decoded and sent. When
 * no transaction is open or being appended, everything before it has been handled (the library hands
 * messages over in order and awaits each handler; a keepalive is a later socket event), so the slot
 * may move to it; otherwise a quiet table would hold the server's WAL back for ever.
 */
export class ServerRecordCapture {
  private loop: Promise<void> | undefined;
  private session: Session | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private stateValue: CaptureState = 'starting';
  private lastError: string | undefined;
  private lastErrorCode: string | undefined;
  private progress: Progress | undefined;
  private readonly partRecords: number;
  private readonly retryMs: number;

  constructor(
    private readonly ds: DataSource,
    private readonly options: ServerRecordCaptureOptions,
  ) {
    this.partRecords = options.partRecords ?? 500;
    this.retryMs = options.retryMs ?? 5000;
  }

  /** `streaming` (this replica holds the slot), `standby` (another does), `failed` (see `error`; retried), `starting`, `stopped`. */
  get state(): CaptureState {
    return this.stateValue;
  }

  /** Why the last attempt failed, while `failed` or `standby`. */
  get error(): string | undefined {
    return this.lastError;
  }

  /** The FleetError code of the last failure, if it was one (FLEET_CAPTURE_001: wal_level or the slot). */
  get errorCode(): string | undefined {
    return this.lastErrorCode;
  }

  start(): void {
    if (this.loop !== undefined) return;
    this.loop = this.run();
  }

  /** Stops streaming; waits for the part being appended to commit or roll back (call before closing the DataSource). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.session?.service.stop().catch(() => undefined);
    await this.loop;
    this.stateValue = 'stopped';
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let broken: unknown;
      try {
        broken = await this.once();
        if (!this.stopped && broken === undefined) this.fail('the replication stream ended');
      } catch (e) {
        if (this.stopped) break;
        const code = (e as { code?: unknown } | null)?.code;
        if (code === '55006') {
          // object_in_use: another replica streams from the slot.
          this.stateValue = 'standby';
          this.lastError = (e as Error).message;
        } else {
          this.fail(e);
        }
      }
      if (broken !== undefined && !this.stopped) this.fail(broken);
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.retryMs);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  private fail(e: unknown): void {
    const message = isFleetError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
    if (this.stateValue !== 'failed' || this.lastError !== message) this.options.logger.warn(`capture of ${SERVER_RECORDS_TABLE} (slot ${this.options.slot}): ${message}; trying again every ${this.retryMs} ms`);
    this.stateValue = 'failed';
    this.lastError = message;
    this.lastErrorCode = isFleetError(e) ? e.code : undefined;
  }

  /** One replication session: until the stream ends or a handler fails; returns why it broke, after its handler has finished. */
  private async once(): Promise<unknown> {
    await this.ensureSlot();
    this.progress = await this.readProgress();
    // A slot with no progress yet is being made by another replica, which has not stored its initial
    // copy: streaming now could append later writes before the copy (or make it skip its rows).
    if (this.progress === undefined) throw new SlotBusy(`replication slot ${this.options.slot} is being made by another replica (its initial copy is not stored yet)`);
    await this.finishCopy();
    const service = new LogicalReplicationService(
      { connectionString: this.options.databaseUrl, application_name: `fleet-capture-${this.options.slot}` },
      // Acknowledge by hand (never the library's received position), one message at a time.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
    );
    const session = new Session(service, this.progress?.lsn ?? 0n);
    this.session = session;
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [SERVER_RECORDS_PUBLICATION] });
    service.on('data', (lsn: string, msg: Pgoutput.Message) => (session.inflight = this.onMessage(session, lsn, msg)));
    service.on('heartbeat', (lsn: string, _at: number, reply: boolean) => this.onKeepalive(session, lsn, reply));
    service.on('error', (e: Error) => {
      if (session.broken === undefined) session.broken = e;
      void service.stop().catch(() => undefined);
    });
    service.on('start', () => {
      this.stateValue = 'streaming';
      this.lastError = undefined;
      this.lastErrorCode = undefined;
      this.options.logger.log(`capturing ${SERVER_RECORDS_TABLE} from slot ${this.options.slot}`);
    });
    const status = setInterval(() => void service.acknowledge(session.position).catch(() => undefined), STATUS_EVERY_MS);
    status.unref();
    try {
      if (this.stopped) return undefined;
      await service.subscribe(plugin, this.options.slot, formatLsn(session.from));
      return session.broken;
    } finally {
      clearInterval(status);
      // The handler may still be appending (the stream ended under it): let it commit or roll back first.
      await session.inflight.catch(() => undefined);
      this.session = undefined;
      await service.destroy().catch(() => undefined);
    }
  }

  private async onMessage(session: Session, lsn: string, msg: Pgoutput.Message): Promise<void> {
    if (session.broken !== undefined || this.stopped) return;
    session.busy = true;
    try {
      switch (msg.tag) {
        case 'begin':
          session.txn = { commitLsn: msg.commitLsn ?? lsn, events: [] };
          break;
        case 'insert':
        case 'update':
        case 'delete':
          if (session.txn !== undefined && msg.relation.name === SERVER_RECORDS_TABLE) session.txn.events.push(...rowEvents(msg));
          break;
        case 'commit': {
          const t = session.txn;
          if (t !== undefined) await this.applyTransaction(session, t);
          session.txn = undefined;
          this.advance(session, parseLsn(msg.commitEndLsn ?? lsn));
          await this.acknowledge(session);
          break;
        }
        default:
          break; // relation, type, origin, message: nothing to capture
      }
    } catch (e) {
      // Stop here: nothing after this transaction is acknowledged, and the next session streams it again.
      session.broken = asInfraError(e);
      void session.service.stop().catch(() => undefined);
    } finally {
      session.busy = false;
    }
  }

  private onKeepalive(session: Session, lsn: string, reply: boolean): void {
    if (session.broken !== undefined || this.stopped) return;
    if (!session.busy && session.txn === undefined) this.advance(session, parseLsn(lsn));
    if (reply) void this.acknowledge(session).catch(() => undefined);
  }

  private advance(session: Session, lsn: bigint): void {
    if (session.durable === undefined || lsn > session.durable) session.durable = lsn;
  }

  private async acknowledge(session: Session): Promise<void> {
    if (session.durable === undefined) return;
    await session.service.acknowledge(session.position);
  }

  /** How many of the commit's records are appended, as far as this replica knows. */
  private doneOf(commit: bigint): number {
    const p = this.progress;
    return p === undefined || commit > p.lsn ? 0 : commit === p.lsn ? p.records : Number.POSITIVE_INFINITY;
  }

  /** Appends the transaction's net effect, part by part, from where `capture_progress` says it stands. */
  private async applyTransaction(session: Session, t: OpenTransaction): Promise<void> {
    if (t.events.length === 0) return;
    const folded = foldRowEvents(t.events, (r) => JSON.stringify([r.scope, r.collection, r.key]));
    await this.appendCommit(t.commitLsn, folded.length, async (done, n) => folded.slice(done, done + n), {
      check: () => {
        if (this.stopped || session.broken !== undefined) throw new FleetError('FLEET_INFRA_001', 'capture stopped in the middle of a transaction');
      },
      // Keep the server hearing from us through a long transaction (the socket is paused meanwhile).
      afterPart: () => session.service.acknowledge(session.position).then(() => undefined, () => undefined),
    });
  }

  /**
   * Appends the `total` (folded) records of one commit, part by part, from where `capture_progress` says
   * it stands: each part is decided (rows that cannot become changes are dead-lettered), appended through
   * the ServerWriter and claimed in the same transaction, then announced. A streamed transaction and the
   * initial copy both go through here.
   */
  private async appendCommit(
    commitLsn: string,
    total: number,
    partAt: (done: number, n: number) => Promise<readonly RowEvent<RawServerRow>[]>,
    hooks: { readonly check: () => void; readonly afterPart?: () => Promise<void> },
  ): Promise<void> {
    const commit = parseLsn(commitLsn);
    for (let done = this.doneOf(commit); done < total; done = this.doneOf(commit)) {
      hooks.check();
      const part = await partAt(done, Math.min(this.partRecords, total - done));
      if (part.length === 0) {
        // The initial copy's rows are deleted once all are appended: another replica finished it meanwhile.
        const p = await this.readProgress();
        if (p !== undefined && (p.lsn > commit || (p.lsn === commit && p.records > done))) {
          this.progress = p;
          continue;
        }
        throw new FleetError('FLEET_INTERNAL_001', `capture: no records at ${done} of ${total} in commit ${commitLsn}`);
      }
      const next: Progress = { lsn: commit, records: done + part.length };
      const edits: Array<{ ref: RecordRef; edit: LocalEdit; row: RowEvent<RawServerRow>; index: number }> = [];
      let unchanged = 0;
      let rejected = 0;
      for (const [i, e] of part.entries()) {
        const decided = decideRow(e);
        if ('error' in decided) {
          await this.options.reject({ row: rowOf(e), error: decided.error, commitLsn, index: done + i });
          rejected++;
        } else if (decided.edit === null) {
          unchanged++;
        } else {
          edits.push({ ref: decided.ref, edit: decided.edit, row: e, index: done + i });
        }
      }
      let appended: readonly LoggedChange[] = [];
      try {
        // Rows that would grow their record past MAX_RECORD_STATE_BYTES are found inside the write (on the
        // states at the log's head), dead-lettered OUTSIDE it (no publish under the append lock; before the
        // claim commits, so a crash captures the part again) and the write runs again without them.
        let writing = edits;
        for (;;) {
          if (writing.length === 0) {
            await this.ds.transaction('READ COMMITTED', (tx) => this.claim(tx, done, next));
            break;
          }
          const these = writing;
          try {
            const out = await this.options.writer.write(
              these.map((e) => e.ref),
              async (ctx) => {
                const oversized: { edit: (typeof these)[number]; error: FleetError }[] = [];
                for (const e of these) {
                  try {
                    ctx.edit(e.ref, e.edit);
                  } catch (err) {
                    if (!isFleetError(err, 'FLEET_DECODE_004')) throw err;
                    oversized.push({ edit: e, error: err });
                  }
                }
                if (oversized.length > 0) throw new OversizedRows(oversized);
                await this.claim(ctx.tx, done, next);
              },
            );
            appended = out.appended;
            break;
          } catch (e) {
            if (e instanceof OversizedRows) {
              const rows = (e as OversizedRows<(typeof these)[number]>).rows;
              const out = new Set<(typeof these)[number]>();
              for (const { edit: x, error } of rows) {
                await this.options.reject({ row: rowOf(x.row), error, commitLsn, index: x.index });
                out.add(x);
              }
              rejected += rows.length;
              writing = these.filter((x) => !out.has(x));
              continue;
            }
            // A part that can never be appended (the log refuses a change): its rows are dead-lettered, the capture goes on.
            if (!isFleetError(e) || e.retryable) throw e;
            for (const x of these) await this.options.reject({ row: rowOf(x.row), error: e, commitLsn, index: x.index });
            rejected += these.length;
            await this.ds.transaction('READ COMMITTED', (tx) => this.claim(tx, done, next));
            break;
          }
        }
      } catch (e) {
        if (!(e instanceof AlreadyCaptured)) throw e;
        this.progress = e.progress;
        continue;
      }
      this.progress = next;
      this.options.onRows?.('captured', appended.length);
      this.options.onRows?.('unchanged', unchanged);
      this.options.onRows?.('rejected', rejected);
      if (appended.length > 0) {
        try {
          await this.options.announce(appended);
        } catch (e) {
          this.options.logger.warn(`${appended.length} captured change(s) committed (seq ${appended[0]?.seq}..); their announcement failed: ${String(e)}; the log sweep projects them`);
        }
      }
      await hooks.afterPart?.();
    }
  }

  /**
   * Claims records `done`..`next.records` of the commit in `capture_progress`, in the part's transaction:
   * the row is locked, then checked to stand exactly at `done` of this commit (or at an earlier commit
   * when `done` is 0); otherwise another replica got there first (AlreadyCaptured: roll back, skip).
   */
  private async claim(tx: { query(sql: string, params: unknown[]): Promise<unknown> }, done: number, next: Progress): Promise<void> {
    const rows = (await tx.query(`select lsn::text as lsn, records from capture_progress where slot = $1 for update`, [this.options.slot])) as Array<{ lsn: string; records: number }>;
    const r = rows[0];
    if (r !== undefined) {
      const at: Progress = { lsn: parseLsn(r.lsn), records: r.records };
      const expected = at.lsn === next.lsn ? at.records === done : at.lsn < next.lsn && done === 0;
      if (!expected) throw new AlreadyCaptured(at);
    }
    await tx.query(
      `insert into capture_progress (slot, lsn, records) values ($1, $2::pg_lsn, $3)
       on conflict (slot) do update set lsn = excluded.lsn, records = excluded.records, updated_at = now()`,
      [this.options.slot, formatLsn(next.lsn), next.records],
    );
  }

  private async ensureSlot(): Promise<void> {
    const [level] = (await this.ds.query(`select current_setting('wal_level') as level`)) as Array<{ level: string }>;
    if (level?.level !== 'logical') {
      throw new FleetError('FLEET_CAPTURE_001', `wal_level is ${level?.level ?? 'unknown'}; capturing SQL writes needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL; npm run setup does it for a local server)`);
    }
    const find = async (): Promise<{ database: string | null; plugin: string | null } | undefined> =>
      ((await this.ds.query(`select database, plugin from pg_replication_slots where slot_name = $1`, [this.options.slot])) as Array<{ database: string | null; plugin: string | null }>)[0];
    const [{ name: database } = { name: '' }] = (await this.ds.query(`select current_database() as name`)) as Array<{ name: string }>;
    let slot = await find();
    if (slot === undefined || (slot.plugin === 'pgoutput' && slot.database === database && (await this.readProgress()) === undefined)) {
      // To make (or make again) the slot, hold the slot's session lock until its copy is stored: an
      // exported slot is inactive while the copy is read, and another replica must neither drop it
      // nor make its own meanwhile (either would lose writes or the copy).
      slot = await this.withSlotLock(async (lock) => {
        const found = await find();
        const progress = await this.readProgress();
        if (found !== undefined && found.plugin === 'pgoutput' && found.database === database && progress === undefined) {
          // A slot of this database with no progress at all: made by hand, by a capture that stopped
          // before its copy was stored, or by one that never captured anything. Nothing was taken from
          // it: made again with a snapshot to copy from. (Fails "is active" while a replica streams.)
          await lock.query(`select pg_drop_replication_slot($1)`, [this.options.slot]);
          await this.createSlot({ copy: true }, lock);
        } else if (found === undefined) {
          // Progress but no slot: the slot was dropped. Made again without a copy: a copy would put
          // every row's fields over the agents' later edits of those records.
          await this.createSlot({ copy: progress === undefined }, lock);
        }
        return find();
      });
    }
    if (slot === undefined || slot.plugin !== 'pgoutput' || slot.database !== database) {
      throw new FleetError(
        'FLEET_CAPTURE_001',
        `replication slot ${this.options.slot} is ${slot === undefined ? 'missing' : `a ${slot.plugin ?? 'physical'} slot of database ${slot.database ?? '(none)'}`}; capture needs a pgoutput slot of ${database || 'this database'} (choose another slot name)`,
      );
    }
  }

  /**
   * Runs `fn` holding the session advisory lock of this slot (`fleet.capture.slot:<slot>`), on a
   * connection of its own, which `fn` uses for what must happen under the lock (the drop, the copy):
   * should the session end, the lock and the work go together. Another replica holding it: SlotBusy.
   */
  private async withSlotLock<T>(fn: (lock: Client) => Promise<T>): Promise<T> {
    const lock = new Client({ connectionString: this.options.databaseUrl, application_name: `fleet-capture-${this.options.slot}-lock` });
    lock.on('error', () => undefined);
    await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(`select pg_try_advisory_lock(hashtextextended($1, 0)) as ok`, [`fleet.capture.slot:${this.options.slot}`]);
      if (rows[0]?.ok !== true) throw new SlotBusy(`replication slot ${this.options.slot} is being made by another replica`);
      return await fn(lock);
    } finally {
      await lock.end().catch(() => undefined); // ends the session: releases the lock
    }
  }

  /**
   * Makes the slot over the replication protocol. With `copy`: with an exported snapshot (what
   * PostgreSQL's own logical replication does for its initial table copy), and while the snapshot lives
   * (until the replication connection's next command), stores the table's rows as of it in
   * `capture_copy`, with `capture_progress` at the copy's position, in one transaction. The copy's
   * position is just before the consistent point, where the stream starts (a commit decoded at exactly
   * that point is in the stream, not in the snapshot): every row is in the copy or in the stream, once.
   * A crash before that commit leaves a slot with no progress, which the next start makes again.
   */
  private async createSlot(o: { readonly copy: boolean }, lock: Client): Promise<void> {
    const slot = this.options.slot;
    const config: ClientConfig & { replication: string } = { connectionString: this.options.databaseUrl, application_name: `fleet-capture-${slot}`, replication: 'database' };
    const repl = new Client(config);
    repl.on('error', () => undefined); // a dropped connection fails the query below
    await repl.connect();
    try {
      const made = await repl.query<{ consistent_point: string; snapshot_name: string | null }>(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput (SNAPSHOT '${o.copy ? 'export' : 'nothing'}')`);
      const { consistent_point: lsn, snapshot_name: snapshot } = made.rows[0] ?? { consistent_point: '', snapshot_name: null };
      const at = parseLsn(lsn);
      if (!o.copy) {
        const p = this.progress ?? (await this.readProgress());
        this.options.logger.warn(
          `made replication slot ${slot} again at ${lsn}: writes to ${SERVER_RECORDS_TABLE} committed after the last capture (${p === undefined ? 'none' : formatLsn(p.lsn)}) and before it are not captured, and rows are not copied again (a copy would put every row's fields over the agents' later edits); write such rows again to capture them`,
        );
        return;
      }
      if (snapshot === null || !/^[0-9A-Fa-f-]+$/.test(snapshot)) throw new FleetError('FLEET_INFRA_001', `CREATE_REPLICATION_SLOT returned no snapshot (${JSON.stringify(snapshot)})`);
      const copyAt = formatLsn(at - 1n);
      // On the lock's own session: if it ends, the copy is rolled back with it (never stored by a
      // replica that no longer holds the lock), and the slot, left with no progress, is made again.
      let copied: number;
      await lock.query('begin isolation level repeatable read');
      try {
        await lock.query(`set transaction snapshot '${snapshot}'`);
        await lock.query(`delete from capture_copy where slot = $1`, [slot]);
        const { rows } = await lock.query<{ n: number }>(
          `with c as (insert into capture_copy (slot, idx, lsn, scope, collection, key, fields)
             select $1, row_number() over (order by scope, collection, key), $2::pg_lsn, scope, collection, key, fields from ${SERVER_RECORDS_TABLE}
             returning 1)
           select count(*)::int as n from c`,
          [slot, copyAt],
        );
        await lock.query(
          `insert into capture_progress (slot, lsn, records) values ($1, $2::pg_lsn, 0)
           on conflict (slot) do update set lsn = excluded.lsn, records = 0, updated_at = now()`,
          [slot, copyAt],
        );
        await lock.query('commit');
        copied = rows[0]?.n ?? 0;
      } catch (e) {
        await lock.query('rollback').catch(() => undefined);
        throw e;
      }
      this.options.logger.log(`created replication slot ${slot} at ${lsn}; ${copied} row(s) of ${SERVER_RECORDS_TABLE} to copy`);
    } finally {
      await repl.end().catch(() => undefined);
    }
  }

  /**
   * Appends what is left of the initial copy (`capture_copy`) as one commit at the slot's consistent
   * point, part by part with the same claims as a streamed transaction, then deletes it. Runs before
   * the stream starts; replicas may run it at once (the claims let one of them append each part).
   */
  private async finishCopy(): Promise<void> {
    const slot = this.options.slot;
    const [head] = (await this.ds.query(`select lsn::text as lsn, max(idx)::int as n from capture_copy where slot = $1 group by lsn`, [slot])) as Array<{ lsn: string; n: number }>;
    if (head === undefined) return;
    await this.appendCommit(head.lsn, head.n, async (done, n) => {
      const rows = (await this.ds.query(`select scope, collection, key, fields from capture_copy where slot = $1 and idx > $2 order by idx limit $3`, [slot, done, n])) as RawServerRow[];
      return rows.map((r) => ({ ref: r, before: null, after: r.fields as Fields }));
    }, {
      check: () => {
        if (this.stopped) throw new FleetError('FLEET_INFRA_001', 'capture stopped in the middle of its initial copy');
      },
    });
    await this.ds.query(`delete from capture_copy where slot = $1 and lsn = $2::pg_lsn`, [slot, head.lsn]);
    this.options.logger.log(`copied the ${head.n} row(s) of ${SERVER_RECORDS_TABLE} the slot ${slot} started with`);
  }

  private async readProgress(): Promise<Progress | undefined> {
    const rows = (await this.ds.query(`select lsn::text as lsn, records from capture_progress where slot = $1`, [this.options.slot])) as Array<{ lsn: string; records: number }>;
    const r = rows[0];
    return r === undefined ? undefined : { lsn: parseLsn(r.lsn), records: r.records };
  }
}

/** A PostgreSQL identifier, quoted (a slot name goes into a replication command, which takes no parameters). */
function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A folded row event as a dead letter shows it. */
function rowOf(e: RowEvent<RawServerRow>): RejectedRow['row'] {
  return { scope: e.ref.scope, collection: e.ref.collection, key: e.ref.key, before: e.before, after: e.after };
}

/** The row events of one WAL message; an update that moves a row to another record is a delete and an insert. */
function rowEvents(msg: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete): RowEvent<RawServerRow>[] {
  const rowOf = (t: Record<string, unknown>): RawServerRow => ({ scope: String(t['scope']), collection: String(t['collection']), key: String(t['key']), fields: t['fields'] });
  const same = (a: RawServerRow, b: RawServerRow): boolean => a.scope === b.scope && a.collection === b.collection && a.key === b.key;
  if (msg.tag === 'insert') {
    const row = rowOf(msg.new);
    return [{ ref: row, before: null, after: row.fields as Fields }];
  }
  if (msg.tag === 'delete') {
    // With `replica identity full` the old row is whole; with only its key, it still existed: `{}`.
    const old = rowOf((msg.old ?? msg.key ?? {}) as Record<string, unknown>);
    return [{ ref: old, before: (old.fields ?? {}) as Fields, after: null }];
  }
  const next = rowOf(msg.new);
  const old = msg.old === null ? undefined : rowOf(msg.old);
  const after = (next.fields === undefined ? old?.fields : next.fields) as Fields;
  if (old !== undefined && !same(old, next)) {
    return [
      { ref: old, before: (old.fields ?? {}) as Fields, after: null },
      { ref: next, before: null, after },
    ];
  }
  return [{ ref: next, before: old === undefined ? null : ((old.fields ?? {}) as Fields), after }];
}

/** A folded row's edit, or why it cannot be one. An unreadable old image counts as a row that existed. */
function decideRow(e: RowEvent<RawServerRow>): { ref: RecordRef; edit: LocalEdit | null } | { error: FleetError } {
  try {
    const ref = decodeServerRowRef(e.ref);
    const after = e.after === null ? null : decodeServerRowFields(e.after);
    let before: Fields | null = null;
    if (e.before !== null) {
      try {
        before = decodeServerRowFields(e.before);
      } catch {
        before = {};
      }
    }
    return { ref, edit: rowEdit(before, after) };
  } catch (e2) {
    return { error: isFleetError(e2) ? e2 : new FleetError('FLEET_DECODE_002', String(e2)) };
  }
}

/** `X/Y` (hex halves) as a number. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (m === null) throw new FleetError('FLEET_INTERNAL_001', `not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1] as string}`) << 32n) | BigInt(`0x${m[2] as string}`);
}

/** WAL bytes a slot holds back: the server's position minus the slot's confirmed one (undefined: no such slot). */
export async function slotLagBytes(ds: DataSource, slot: string): Promise<number | undefined> {
  const rows = (await ds.query(`select (pg_current_wal_lsn() - confirmed_flush_lsn)::text as lag from pg_replication_slots where slot_name = $1`, [slot])) as Array<{ lag: string | null }>;
  const lag = rows[0]?.lag;
  return lag === undefined || lag === null ? undefined : Math.max(0, Number(lag));
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
