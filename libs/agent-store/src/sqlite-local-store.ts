/**
 * `LocalStore` on SQLite (better-sqlite3), one file per agent: `<dataDir>/agent.db`.
 *
 * Durability. WAL journal with `synchronous=FULL` by default: every commit fsyncs the WAL before
 * the call returns, so a write the API (or `agent put`) acknowledged survives a power cut or a kernel
 * panic, not only a crash of the agent. `NORMAL` in WAL mode is crash-safe for the process but may
 * lose the last commits on power loss; managed hosts (laptops, edge boxes) lose power, and "nothing
 * recorded may be lost" is the product, so FULL is the default. The cost is one fsync per
 * transaction, which is why bulk writers batch in `transaction()`. `busy_timeout` (5 s) lets other
 * local programs writing the `visible_records` view take the write lock briefly without failing us.
 * Write transactions start `BEGIN IMMEDIATE`: in WAL mode, a deferred transaction that reads and then
 * writes fails with SQLITE_BUSY_SNAPSHOT (not retried by busy_timeout) when another connection wrote
 * in between.
 *
 * Counters (HLC, origin sequence, modification counter) live in memory and are written to `meta`
 * in the same transaction as the writes that used them; a rollback restores the in-memory copy.
 */
import { randomFillSync } from 'node:crypto';
import { accessSync, constants as fsConstants, copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { CollectionSchema, fieldNameProblem, FieldsSchema, fromWireRecord, isAgentId, isHostScope, isScope, isServerScope, isValidCollection, isValidFields, isValidKey, KeySchema, MAX_FIELDS_PER_CHANGE, PREPARED_ROW_WIDTH, prepareWireRows, PROTOCOL_VERSION, restatementOf, stateGrowthPastCap } from '@fleet/contracts';
import type { PreparedWireRows, WireRecord } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import {
  applyChange,
  canonicalJson,
  coalesce,
  decodeHlc,
  decodeRecordState,
  emptyRecord,
  encodeHlc,
  hlcInit,
  hlcNow,
  hlcReceive,
  jsonEquals,
  makeLocalChange,
  mergeRecordStates,
  recordHash,
  uuidV7Generator,
  visibleHash,
} from '@fleet/sync-core';
import type { Change, Fields, HlcState, JsonValue, LocalEdit, MerkleEntry, RecordRef, RecordState, StrategyConfig, VersionVector } from '@fleet/sync-core';
import type {
  BackupInfo,
  LocalStore,
  OriginSettlement,
  OutboxStats,
  ProcessCapturedResult,
  QueryOptions,
  RemoteItem,
  StoredRecord,
  StoreEvent,
  StoreListener,
  SyncCursor,
  SyncState,
} from './local-store';
import { CRITICAL_SCHEMA_SQL, SCHEMA_SQL, SCHEMA_VERSION, SNAPSHOT_TABLES } from './schema';
import { changeText, objectText } from './json-text';
import { translateError } from './sqlite-errors';
import { CriticalStaging } from './critical-staging';
import { StoreLock } from './store-lock';
import type { CriticalEntry, InDoubt } from './critical-staging';
import type { CriticalOperation } from '@fleet/contracts';
import type { Decision, Vote } from '@fleet/sync-core';
import { decodeStoredState, encodeStoredState } from './stored-state';

export const DB_FILE = 'agent.db';
export const DEFAULT_OUTBOX_MAX = 100_000;
/** Rows per multi-row INSERT of `applyRemoteWire`'s bulk path. */
const INSERT_BATCH = 25;
/**
 * After a restore the origin sequence jumps by this much: changes made after the backup may have
 * reached the server with the sequence numbers the restored store would hand out again, and the
 * change log refuses a reused (origin, originSeq) (FLEET_LOG_001). A billion is more writes than an
 * agent makes between two backups; gaps in originSeq are normal.
 */
export const RESTORE_SEQ_GAP = 1_000_000_000;

/**
 * The origin sequence a new store starts after: its clock in microseconds (epoch ms x 1000). Agent ids
 * outlive stores: a reinstalled host comes back under its old id with an empty store, which must not
 * hand out the (origin, originSeq) pairs (FLEET_LOG_001) or per-record counters (FLEET_CHANGE_002, see
 * sync-core `makeLocalChange`) its earlier store used. Those are below this floor as long as the earlier
 * store made fewer than 1,000 changes per millisecond of its life on average, and the new host's clock is
 * not behind the old store's creation. ~1.8e15 today: safe integers (2^53) for another ~250 years.
 */
export function originSeqFloor(nowMs: number): number {
  return Math.max(0, Math.floor(nowMs)) * 1000;
}

/**
 * Whether a coalesced change is still one the change log accepts (the contracts' field count and byte
 * caps, which each write met alone but their union may not): one that is not would be acknowledged by
 * JetStream, then dead-lettered by the change log, its writes lost to the server. A run whose merge does
 * not fit stays as it is (the outbox bound still holds: past it, writes are refused, FLEET_AGENT_003).
 */
function fitsOneChange(c: Change): boolean {
  return isValidFields(c.fields) && (c.unset?.length ?? 0) <= MAX_FIELDS_PER_CHANGE;
}

export interface SqliteLocalStoreOptions {
  /** Directory of `agent.db` (created if missing). */
  readonly dataDir: string;
  /** This agent's id: the origin of its changes; must be a subject token. */
  readonly agentId: string;
  /** Bound of the outbox (rows). Default 100,000. */
  readonly outboxMax?: number;
  /** Above this many rows, unsent changes to the same record are coalesced as they are written. Default `outboxMax / 2`. */
  readonly coalesceAbove?: number;
  /** Wall clock, epoch ms. Injected for tests. */
  readonly now?: () => number;
  /** Change id generator (lowercase UUIDv7). Injected for tests. */
  readonly newId?: () => string;
  /** Resolution strategies: must be the server's, so both compute the same views. Default all-LWW. */
  readonly strategies?: StrategyConfig;
  /** `FULL` (default) or `NORMAL`; see the module comment. */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** A size quota for the database file (bytes): writes past it fail with FLEET_AGENT_002. */
  readonly maxDbBytes?: number;
  /** Where `backup()` writes chains by default. Default `<dataDir>/backups`. */
  readonly backupRoot?: string;
  /** HLC drift bound passed to `hlcReceive`. */
  readonly maxDriftMs?: number;
  /** Called when a `watch` listener throws (the write is already committed). Default: ignore. */
  readonly onListenerError?: (error: unknown, event: StoreEvent) => void;
  /** Turn pending captured writes into changes at open (default true). */
  readonly processCapturedOnOpen?: boolean;
  /**
   * Hold the store's owner lock while open, naming this command (`agent run`) to whoever is refused:
   * one owner at a time, and no restore meanwhile (FLEET_AGENT_010; `store-lock.ts`). Without it the
   * store holds the shared lock, which coexists with the owner's.
   */
  readonly owner?: string;
  /** How long opening waits for a restore in progress before FLEET_AGENT_010. Default 5 s. */
  readonly lockWaitMs?: number;
}

/** `meta.counters` as stored (the HLC encoded). */
interface StoredCounters {
  readonly hlc: string;
  readonly originSeq: number;
  readonly mseq: number;
}

interface Counters {
  hlc: HlcState;
  originSeq: number;
  mseq: number;
}

interface BackupChain {
  readonly fullId: string;
  readonly dir: string;
  readonly lastId: string;
  readonly lastMarker: number;
  readonly count: number;
  /**
   * `replaceFromServer` removed record rows since the last backup: an incremental one copies the rows
   * written (`mseq > marker`) and cannot say that a row is gone, so the next backup is a full one.
   */
  readonly dropped?: boolean;
}

interface RecordRow {
  scope: string;
  collection: string;
  key: string;
  fields: string | null;
  hash: string;
  status: string;
  conflicted: number;
  vv: string;
}

interface OutboxRow {
  origin_seq: number;
  change_id: string;
  change: string;
  created_at: number;
}

interface CaptureRow {
  seq: number;
  scope: string;
  collection: string;
  key: string;
  op: string;
  fields: string | null;
  captured_at: string;
  /** The fields an UPDATE replaced (see schema.ts); NULL for an INSERT or a delete. */
  base: string | null;
}

// ownFrom's default leaves nothing out: `open` sets the real value (see SyncState.ownFrom).
// originSettled's default: a store from before the field has synced under its numbers (a new one is created with false).
const DEFAULT_SYNC_STATE: SyncState = { lastSyncAt: null, lastPullAt: null, cursor: null, needsVerification: false, ownFrom: Number.MAX_SAFE_INTEGER, originSettled: true };
const DEFAULT_STRATEGIES: StrategyConfig = { default: 'lww' };

function invalidWrite(why: string, details?: Record<string, unknown>): never {
  throw new FleetError('FLEET_AGENT_005', why, details === undefined ? undefined : { details });
}

function has(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/** The smallest string greater than every string with this prefix, in code point (= UTF-8 byte) order. */
export function prefixUpperBound(prefix: string): string | undefined {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const last = (cps.pop() as string).codePointAt(0) as number;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return cps.join('') + String.fromCodePoint(next);
    }
  }
  return undefined;
}

/**
 * The event record of a prepared single-write row (`applyRemoteRows`): its fields and vector are parsed
 * from the row's texts when a listener reads them (most never do), not for every record of a snapshot.
 */
function preparedRecord(ref: RecordRef, rows: readonly (string | null)[], o: number): StoredRecord {
  const fieldsText = rows[o + 4] as string | null;
  const vvText = rows[o + 7] as string;
  let fields: Fields | null | undefined;
  let vv: VersionVector | undefined;
  return {
    ref,
    status: rows[o + 6] as StoredRecord['status'],
    get fields(): Fields | null {
      fields ??= fieldsText === null ? null : (JSON.parse(fieldsText) as Fields);
      return fields;
    },
    conflicted: false,
    hash: rows[o + 5] as string,
    get vv(): VersionVector {
      vv ??= JSON.parse(vvText) as VersionVector;
      return vv;
    },
  };
}

function sameRef(a: RecordRef, b: RecordRef): boolean {
  return a.scope === b.scope && a.collection === b.collection && a.key === b.key;
}

/** A state received from the server (stored text or object), decoded; it must be the state of its ref (FLEET_STATE_001). */
function receivedState(item: { readonly ref: RecordRef; readonly state: string | RecordState }): RecordState {
  const remote = decodeRecordState(item.state);
  if (!sameRef(remote.ref, item.ref)) throw new FleetError('FLEET_STATE_001', 'state is for another record than its ref', { details: { ref: item.ref, stateRef: remote.ref } });
  return remote;
}

/** Two JSON texts (or nulls) of equal values, object keys in any order. */
function jsonTextEquals(a: string | null, b: string | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  try {
    return canonicalJson(JSON.parse(a)) === canonicalJson(JSON.parse(b));
  } catch {
    return false; // a stored text that does not parse is a corruption: rewritten
  }
}

/** The greatest HLC among a state's writes (what a received state has "seen"). */
function maxHlcOf(state: RecordState): string | undefined {
  let max: string | undefined;
  for (const w of state.existence) if (max === undefined || w.hlc > max) max = w.hlc;
  for (const ws of Object.values(state.fields)) for (const w of ws) if (max === undefined || w.hlc > max) max = w.hlc;
  return max;
}

/**
 * Schema 1 -> 2: `records.state` from sync-core's whole JSON state (`decodeRecordState`) to the compact
 * stored form (stored-state.ts). Runs once, inside the open transaction, in pages by rowid.
 */
function migrateRecordStates(db: Database.Database): void {
  const page = db.prepare<[number], { id: number; state: string }>('SELECT rowid AS id, state FROM records WHERE rowid > ? ORDER BY rowid LIMIT 1000');
  const upd = db.prepare('UPDATE records SET state = ? WHERE rowid = ?');
  // An incremental backup on top of a full one of the old format could not be restored: start a new chain.
  db.prepare('DELETE FROM meta WHERE k = ?').run('backup_chain');
  let after = 0;
  for (;;) {
    const rows = page.all(after);
    for (const r of rows) upd.run(encodeStoredState(decodeRecordState(r.state)), r.id);
    const last = rows[rows.length - 1];
    if (last === undefined) return;
    after = last.id;
  }
}

/** A captured `fields` text as an object; FLEET_AGENT_005 (`invalidWrite`: the row is rejected) otherwise. */
function capturedObject(text: string | null): Fields {
  let value: unknown;
  try {
    value = JSON.parse(text ?? 'null');
  } catch {
    invalidWrite('captured fields are not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalidWrite('captured fields must be a JSON object');
  return value as Fields;
}

function hasTable(db: Database.Database, schema: 'main' | 'inc', table: string): boolean {
  return db.prepare(`SELECT 1 FROM ${schema}.sqlite_master WHERE type = 'table' AND name = ?`).get(table) !== undefined;
}

function columnsOf(db: Database.Database, table: string): Set<string> {
  return new Set(db.prepare<[], { name: string }>(`PRAGMA table_info(${table})`).all().map((c) => c.name));
}

/**
 * Schema 2 -> 3: `records` gets a declared `id INTEGER PRIMARY KEY` (each row keeps its rowid as its id),
 * and `outbox` gets `record_id` (the id of its record) with `outbox_record` on (record_id, origin_seq)
 * instead of (scope, collection, key, origin_seq). SQLite cannot add a primary key in place, so both
 * tables are rebuilt: the old ones are renamed, SCHEMA_SQL creates the new ones, rows are copied, the old
 * ones dropped. Runs once, inside the open transaction (a crash leaves the file at version 2). The view
 * `visible_records` (and its triggers, which go with it) is dropped first and recreated by SCHEMA_SQL.
 * Starts a new backup chain: an incremental of the new shape cannot be applied onto a full backup of the old.
 */
function migrateToRecordIds(db: Database.Database): void {
  if (columnsOf(db, 'records').has('id') && columnsOf(db, 'outbox').has('record_id')) return;
  db.exec(`
    DROP VIEW IF EXISTS visible_records;
    ALTER TABLE records RENAME TO records_v2;
    ALTER TABLE outbox RENAME TO outbox_v2;
    DROP INDEX IF EXISTS records_mseq;
    DROP INDEX IF EXISTS records_conflicted;
    DROP INDEX IF EXISTS outbox_record;
  `);
  db.exec(SCHEMA_SQL);
  db.exec(`
    INSERT INTO records (id, scope, collection, key, state, fields, hash, status, conflicted, vv, mseq)
      SELECT rowid, scope, collection, key, state, fields, hash, status, conflicted, vv, mseq FROM records_v2 ORDER BY rowid;
    INSERT INTO outbox (origin_seq, change_id, record_id, scope, collection, key, change, created_at, frozen, attempts, last_error, last_attempt_at)
      SELECT o.origin_seq, o.change_id, coalesce(r.id, 0), o.scope, o.collection, o.key, o.change, o.created_at, o.frozen, o.attempts, o.last_error, o.last_attempt_at
      FROM outbox_v2 o LEFT JOIN records r ON r.scope = o.scope AND r.collection = o.collection AND r.key = o.key ORDER BY o.origin_seq;
    DROP TABLE records_v2;
    DROP TABLE outbox_v2;
  `);
  db.prepare('DELETE FROM meta WHERE k = ?').run('backup_chain');
}

/**
 * `capture.base`: an UPDATE through `visible_records` is captured with the fields it replaced, and becomes
 * a patch of what it changed (`applyCaptured`). A store made before it gets the column, and the view's
 * UPDATE trigger is replaced (SCHEMA_SQL recreates it). Starts a new backup chain: an incremental with
 * the column cannot be applied onto a full backup without it. Rows captured before stay replaces.
 */
function migrateCaptureBase(db: Database.Database): void {
  if (!hasTable(db, 'main', 'capture')) return;
  if (!columnsOf(db, 'capture').has('base')) {
    db.exec('ALTER TABLE capture ADD COLUMN base TEXT');
    db.prepare('DELETE FROM meta WHERE k = ?').run('backup_chain');
  }
  const trigger = db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'visible_records_update'").get();
  if (trigger !== undefined && !trigger.sql.includes('base')) db.exec('DROP TRIGGER visible_records_update');
}

export class SqliteLocalStore implements LocalStore {
  readonly agentId: string;
  readonly path: string;
  private readonly db: Database.Database;
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly strategies: StrategyConfig;
  private readonly outboxMax: number;
  private readonly coalesceAbove: number;
  private readonly backupRoot: string;
  private readonly maxDriftMs: number | undefined;
  private readonly onListenerError: (error: unknown, event: StoreEvent) => void;
  private readonly listeners = new Set<StoreListener>();

  private counters: Counters;
  private outboxCount = 0;
  private needFullPass = true;
  private needsVerification = false;
  private depth = 0;
  /** A write failed after touching the database: the current transaction must roll back. */
  private poisoned = false;
  private pending: StoreEvent[] = [];
  private closed = false;
  private readonly runTx: Database.Transaction<(fn: () => unknown) => unknown>;
  /**
   * `PRAGMA data_version` when this connection last read its in-memory counters: it changes when
   * ANOTHER connection commits (another process on the same store: `agent put` beside `agent run`),
   * and then the counters, outbox count and flags are read again before this connection writes.
   */
  private seenVersion = -1;
  private readonly dataVersion: Database.Statement<[], number>;

  private readonly st: {
    getRecord: Database.Statement<[string, string, string], { state: string }>;
    getRow: Database.Statement<[string, string, string], RecordRow>;
    upsertRecord: Database.Statement<[string, string, string, string, string | null, string, string, number, string, number]>;
    insertOutbox: Database.Statement<[number, string, number, string, string, string, string, number]>;
    getLocal: Database.Statement<[string, string, string], { id: number; state: string }>;
    insertRecord: Database.Statement<[string, string, string, string, string | null, string, string, number, string, number]>;
    updateRecord: Database.Statement<[string, string | null, string, string, number, string, number, number]>;
    putMeta: Database.Statement<[string, string]>;
    getMeta: Database.Statement<[string], { v: string }>;
    outboxRunOf: Database.Statement<[number], OutboxRow>;
    deleteOutboxSeq: Database.Statement<[number]>;
    countOutbox: Database.Statement<[], { n: number }>;
    peekOutbox: Database.Statement<[number], { origin_seq: number; change: string; frozen: number }>;
    freezeOutbox: Database.Statement<[number]>;
    deleteOutboxId: Database.Statement<[string]>;
    failOutboxId: Database.Statement<[string, number, string]>;
    getStored: Database.Statement<[string, string, string], { state: string; fields: string | null; hash: string; status: string; conflicted: number; vv: string }>;
    deleteRecord: Database.Statement<[string, string, string]>;
    nextScope: Database.Statement<[string], { scope: string; collection: string }>;
    nextCollection: Database.Statement<[string, string], { scope: string; collection: string }>;
  };

  private constructor(
    db: Database.Database,
    path: string,
    options: SqliteLocalStoreOptions,
    private readonly lock: StoreLock,
  ) {
    this.db = db;
    this.path = path;
    this.agentId = options.agentId;
    this.now = options.now ?? Date.now;
    this.newId = options.newId ?? uuidV7Generator(this.now, randomFillSync);
    this.strategies = options.strategies ?? DEFAULT_STRATEGIES;
    this.outboxMax = options.outboxMax ?? DEFAULT_OUTBOX_MAX;
    this.coalesceAbove = options.coalesceAbove ?? Math.floor(this.outboxMax / 2);
    this.backupRoot = options.backupRoot ?? join(options.dataDir, 'backups');
    this.maxDriftMs = options.maxDriftMs;
    this.onListenerError = options.onListenerError ?? (() => undefined);
    this.counters = { hlc: hlcInit(options.agentId), originSeq: 0, mseq: 0 };
    this.runTx = db.transaction((fn: () => unknown) => {
      const r = fn();
      if (typeof r === 'object' && r !== null && typeof (r as { then?: unknown }).then === 'function') {
        throw new TypeError('transaction(fn): fn must be synchronous (it returned a promise)');
      }
      return r;
    });
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    this.st = {
      getRecord: db.prepare('SELECT state FROM records WHERE scope = ? AND collection = ? AND key = ?'),
      getRow: db.prepare('SELECT scope, collection, key, fields, hash, status, conflicted, vv FROM records WHERE scope = ? AND collection = ? AND key = ?'),
      upsertRecord: db.prepare(
        `INSERT INTO records (scope, collection, key, state, fields, hash, status, conflicted, vv, mseq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (scope, collection, key) DO UPDATE SET state = excluded.state, fields = excluded.fields, hash = excluded.hash,
         status = excluded.status, conflicted = excluded.conflicted, vv = excluded.vv, mseq = excluded.mseq`,
      ),
      insertOutbox: db.prepare('INSERT INTO outbox (origin_seq, change_id, record_id, scope, collection, key, change, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      // The local write path: the record's id with its state, then a plain INSERT (new record: no upsert
      // probe) or an UPDATE by id (no second lookup through the unique index).
      getLocal: db.prepare('SELECT id, state FROM records WHERE scope = ? AND collection = ? AND key = ?'),
      insertRecord: db.prepare('INSERT INTO records (scope, collection, key, state, fields, hash, status, conflicted, vv, mseq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      updateRecord: db.prepare('UPDATE records SET state = ?, fields = ?, hash = ?, status = ?, conflicted = ?, vv = ?, mseq = ? WHERE id = ?'),
      putMeta: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v'),
      getMeta: db.prepare('SELECT v FROM meta WHERE k = ?'),
      outboxRunOf: db.prepare('SELECT origin_seq, change_id, change, created_at FROM outbox WHERE record_id = ? AND frozen = 0 ORDER BY origin_seq'),
      deleteOutboxSeq: db.prepare('DELETE FROM outbox WHERE origin_seq = ?'),
      countOutbox: db.prepare('SELECT count(*) AS n FROM outbox'),
      peekOutbox: db.prepare('SELECT origin_seq, change, frozen FROM outbox ORDER BY origin_seq LIMIT ?'),
      freezeOutbox: db.prepare('UPDATE outbox SET frozen = 1 WHERE frozen = 0 AND origin_seq <= ?'),
      deleteOutboxId: db.prepare('DELETE FROM outbox WHERE change_id = ?'),
      failOutboxId: db.prepare('UPDATE outbox SET attempts = attempts + 1, last_error = ?, last_attempt_at = ? WHERE change_id = ?'),
      getStored: db.prepare('SELECT state, fields, hash, status, conflicted, vv FROM records WHERE scope = ? AND collection = ? AND key = ?'),
      deleteRecord: db.prepare('DELETE FROM records WHERE scope = ? AND collection = ? AND key = ?'),
      nextScope: db.prepare('SELECT scope, collection FROM records WHERE scope > ? ORDER BY scope, collection LIMIT 1'),
      nextCollection: db.prepare('SELECT scope, collection FROM records WHERE scope = ? AND collection > ? ORDER BY scope, collection LIMIT 1'),
    };
  }

  /**
   * Opens (creating if needed) the agent's store in `dataDir`. Throws FLEET_AGENT_001 when the
   * directory or file cannot be created or written, FLEET_AGENT_007 when the file is another
   * agent's store, a newer schema, or not a database, FLEET_CONFIG_001 for a bad agent id,
   * FLEET_AGENT_010 when the store is being restored, or (`owner`) another owner holds it.
   */
  static open(options: SqliteLocalStoreOptions): SqliteLocalStore {
    if (!isAgentId(options.agentId)) {
      throw new FleetError('FLEET_CONFIG_001', `agent id ${JSON.stringify(options.agentId)} is not a subject token ([A-Za-z0-9_-], 1-128, not "server")`);
    }
    const dataDir = resolve(options.dataDir);
    const path = join(dataDir, DB_FILE);
    try {
      mkdirSync(dataDir, { recursive: true });
      if (!statSync(dataDir).isDirectory()) throw new FleetError('FLEET_AGENT_001', `${dataDir} is not a directory`, { details: { path: dataDir } });
      accessSync(dataDir, fsConstants.W_OK | fsConstants.X_OK);
    } catch (e) {
      const t = translateError(e, dataDir);
      if (isFleetError(t)) throw t;
      throw new FleetError('FLEET_AGENT_001', `${dataDir}: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { path: dataDir } });
    }
    // Before the database file: a restore may be moving it.
    const lock = StoreLock.acquire(dataDir, options.owner === undefined ? 'shared' : 'owner', {
      ...(options.owner === undefined ? {} : { command: options.owner }),
      ...(options.lockWaitMs === undefined ? {} : { waitMs: options.lockWaitMs }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
    let db: Database.Database | undefined;
    try {
      db = new Database(path);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new FleetError('FLEET_AGENT_001', `${path}: cannot use WAL journal mode (got ${String(mode)})`);
      db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = OFF');
      // 16 MiB page cache (default 2 MiB): index pages of a large store stay hot; bounded, unlike mmap.
      db.pragma('cache_size = -16384');
      db.pragma('wal_autocheckpoint = 8192');
      if (options.maxDbBytes !== undefined) {
        const pageSize = Number(db.pragma('page_size', { simple: true }));
        db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxDbBytes / pageSize))}`);
      }
      db.exec('BEGIN IMMEDIATE');
      try {
        let hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
        const get = (k: string) => (hasMeta ? (db as Database.Database).prepare<[string], { v: string }>('SELECT v FROM meta WHERE k = ?').get(k)?.v : undefined);
        const put = (k: string, v: string) => (db as Database.Database).prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v').run(k, v);
        const version = get('schema_version');
        if (version !== undefined && Number(version) > SCHEMA_VERSION) {
          throw new FleetError('FLEET_AGENT_007', `${path} has schema version ${version}; this agent understands up to ${SCHEMA_VERSION}`, { details: { path } });
        }
        const owner = get('agent_id');
        if (owner !== undefined && owner !== options.agentId) {
          throw new FleetError('FLEET_AGENT_007', `${path} belongs to agent ${JSON.stringify(owner)}, not ${JSON.stringify(options.agentId)}`, { details: { path, owner } });
        }
        // Migrations run on the old tables, before SCHEMA_SQL (whose indexes name version-3 columns).
        if (version !== undefined && Number(version) < 2) migrateRecordStates(db);
        if (version !== undefined && Number(version) < 3) migrateToRecordIds(db);
        if (version !== undefined) migrateCaptureBase(db);
        db.exec(SCHEMA_SQL);
        hasMeta = true;
        if (version === undefined || Number(version) < SCHEMA_VERSION) put('schema_version', String(SCHEMA_VERSION));
        if (owner === undefined) put('agent_id', options.agentId);
        let sync = JSON.parse(get('sync_state') ?? '{}') as Partial<SyncState>;
        let counters = JSON.parse(get('counters') ?? 'null') as StoredCounters | null;
        if (get('seq_floor') === undefined) {
          // Once per store (a new one, or one this version opens for the first time): its changes are
          // numbered from at least a floor read off its clock (see originSeqFloor). A store that has made
          // no change yet holds none of its agent id's: it holds them from the floor on.
          const floor = originSeqFloor((options.now ?? Date.now)());
          const wrote = counters !== null && counters.originSeq > 0;
          counters = { hlc: counters?.hlc ?? encodeHlc(hlcInit(options.agentId)), originSeq: Math.max(counters?.originSeq ?? 0, floor), mseq: counters?.mseq ?? 0 };
          put('counters', JSON.stringify(counters));
          put('seq_floor', String(floor));
          if (!wrote) {
            const { ownFrom: _stale, ...rest } = sync;
            sync = rest;
          }
        }
        if (sync.ownFrom === undefined) {
          // From the store's next change: a new store's floor + 1; an older one may have been restored or had its floor raised.
          // A new store learns the log's numbers of its agent id before it first syncs (settleOrigin).
          put('sync_state', JSON.stringify({ ...DEFAULT_SYNC_STATE, ...sync, ownFrom: (counters?.originSeq ?? 0) + 1, ...(version === undefined ? { originSettled: false } : {}) }));
        }
        db.exec('COMMIT');
      } catch (e) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw e;
      }
      const store = new SqliteLocalStore(db, path, options, lock);
      store.load();
      if (options.processCapturedOnOpen !== false) store.processCaptured();
      return store;
    } catch (e) {
      try {
        db?.close();
      } catch {
        // already failing: report the first error
      }
      lock.release();
      throw translateError(e, path);
    }
  }

  /** Reads the counters again when another connection has committed since they were read (`seenVersion`). */
  private reloadIfOtherWrote(): void {
    if (this.dataVersion.get() !== this.seenVersion) this.load();
  }

  private load(): void {
    this.seenVersion = this.dataVersion.get() as number; // first: a commit after it is seen by the next transaction
    const raw = this.st.getMeta.get('counters')?.v;
    if (raw !== undefined) {
      const c = JSON.parse(raw) as StoredCounters;
      const h = decodeHlc(c.hlc);
      this.counters = { hlc: { ...h, node: this.agentId }, originSeq: c.originSeq, mseq: c.mseq };
    }
    this.needsVerification = this.readSyncState().needsVerification;
    this.outboxCount = this.st.countOutbox.get()?.n ?? 0;
    this.needFullPass = true;
  }

  // -------------------------------------------------------------------------------------------
  // plumbing

  private assertOpen(): void {
    if (this.closed) throw new FleetError('FLEET_AGENT_001', `${this.path}: store is closed`);
  }

  private stagingP: CriticalStaging | undefined;

  private get staging(): CriticalStaging {
    this.stagingP ??= new CriticalStaging(this.db, this.now);
    return this.stagingP;
  }

  // -------------------------------------------------------------------------------------------
  // critical operations (two-phase commit participant; critical-staging.ts)

  /** Phase 1 of a critical operation: stage it durably and vote; `deadline` (the prepare's) refuses a late copy of a pruned transaction's prepare. */
  criticalPrepare(txid: string, operation: CriticalOperation, deadline?: number): Vote {
    return this.guard(() => this.staging.prepare(txid, operation, deadline));
  }

  /** Deletes up to `limit` decided critical transactions decided more than `retentionMs` ago (never one in doubt); how many went. */
  criticalPrune(retentionMs: number, limit?: number): number {
    return this.guard(() => this.staging.prune(retentionMs, limit));
  }

  /** Phase 2: apply or drop what was staged; the state to acknowledge. */
  criticalDecide(txid: string, decision: Decision): 'committed' | 'aborted' {
    return this.guard(() => this.staging.decide(txid, decision));
  }

  /** Critical transactions staged and not yet decided (to ask the coordinator about). */
  criticalInDoubt(): InDoubt[] {
    return this.guard(() => this.staging.inDoubt());
  }

  /** The certificates and credentials this host holds, committed. */
  criticalEntries(): CriticalEntry[] {
    return this.guard(() => this.staging.entries());
  }

  private guard<T>(fn: () => T): T {
    this.assertOpen();
    try {
      return fn();
    } catch (e) {
      throw translateError(e, this.path);
    }
  }

  private persistCounters(): void {
    const c = this.counters;
    this.st.putMeta.run('counters', JSON.stringify({ hlc: encodeHlc(c.hlc), originSeq: c.originSeq, mseq: c.mseq }));
  }

  transaction<T>(fn: () => T): T {
    this.assertOpen();
    if (this.depth > 0) {
      // Nested: a savepoint. Counters may stay advanced after its rollback (gaps are harmless);
      // the outbox count and the events it buffered are put back.
      const mark = this.pending.length;
      const needFullPass = this.needFullPass;
      this.depth++;
      try {
        return this.runTx(fn) as T;
      } catch (e) {
        this.pending.length = mark;
        this.needFullPass = needFullPass;
        this.outboxCount = this.st.countOutbox.get()?.n ?? 0;
        throw translateError(e, this.path);
      } finally {
        this.depth--;
      }
    }
    const saved = { counters: { ...this.counters }, outboxCount: this.outboxCount, needFullPass: this.needFullPass, needsVerification: this.needsVerification };
    this.depth++;
    let result: T;
    try {
      this.poisoned = false;
      result = this.runTx.immediate(() => {
        // Under the write lock: nobody else commits until this transaction ends.
        this.reloadIfOtherWrote();
        const r = fn();
        if (this.poisoned) throw new FleetError('FLEET_AGENT_001', `${this.path}: a write in this transaction failed part-way; the whole transaction was rolled back`);
        this.persistCounters();
        return r;
      }) as T;
    } catch (e) {
      this.counters = saved.counters;
      this.seenVersion = -1; // the counters put back may be older than what was read: read them again next time
      this.outboxCount = saved.outboxCount;
      this.needFullPass = saved.needFullPass;
      this.needsVerification = saved.needsVerification;
      this.pending = [];
      throw translateError(e, this.path);
    } finally {
      this.depth--;
      this.poisoned = false;
    }
    const events = this.pending;
    this.pending = [];
    this.emit(events);
    return result;
  }

  private emit(events: readonly StoreEvent[]): void {
    if (events.length === 0 || this.listeners.size === 0) return;
    for (const ev of events) {
      for (const l of [...this.listeners]) {
        try {
          l(ev);
        } catch (e) {
          this.onListenerError(e, ev);
        }
      }
    }
  }

  watch(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private loadState(ref: RecordRef): RecordState {
    const row = this.st.getRecord.get(ref.scope, ref.collection, ref.key);
    return row === undefined ? emptyRecord(ref) : decodeStoredState(ref, row.state, this.strategies);
  }

  /** `encoded`: the state's `encodeStoredState` text when the caller already has it. */
  private saveState(state: RecordState, hash?: string, encoded?: string): StoredRecord {
    const { ref, view } = state;
    const h = hash ?? recordHash(state);
    const fields = view.status === 'live' ? view.fields : null;
    this.counters.mseq += 1;
    this.st.upsertRecord.run(
      ref.scope,
      ref.collection,
      ref.key,
      // The compact form (stored-state.ts): registers with each stamp once, no view, no vector.
      encoded ?? encodeStoredState(state),
      fields === null ? null : JSON.stringify(fields),
      h,
      view.status,
      view.conflicted ? 1 : 0,
      JSON.stringify(state.vv),
      this.counters.mseq,
    );
    return { ref: { scope: ref.scope, collection: ref.collection, key: ref.key }, status: view.status, fields, conflicted: view.conflicted, hash: h, vv: state.vv };
  }

  /**
   * The local write path's `saveState`: `id` is the record's id when the store holds it (UPDATE by id),
   * undefined for a new record (plain INSERT; the id is returned for its outbox row).
   */
  /** `encoded`: the state's text (`encodeStoredState`), already checked against the size cap. */
  private saveLocal(id: number | undefined, state: RecordState, hash: string, encoded: string): { record: StoredRecord; id: number } {
    const { ref, view } = state;
    const fields = view.status === 'live' ? view.fields : null;
    const mseq = this.counters.mseq + 1;
    const fieldsText = fields === null ? null : objectText(fields);
    const vv = objectText(state.vv);
    const conflicted = view.conflicted ? 1 : 0;
    if (id === undefined) {
      id = Number(this.st.insertRecord.run(ref.scope, ref.collection, ref.key, encoded, fieldsText, hash, view.status, conflicted, vv, mseq).lastInsertRowid);
    } else {
      this.st.updateRecord.run(encoded, fieldsText, hash, view.status, conflicted, vv, mseq, id);
    }
    this.counters.mseq = mseq;
    const record: StoredRecord = { ref: { scope: ref.scope, collection: ref.collection, key: ref.key }, status: view.status, fields, conflicted: view.conflicted, hash, vv: state.vv };
    return { record, id };
  }

  private rowToRecord(row: RecordRow): StoredRecord {
    return {
      ref: { scope: row.scope, collection: row.collection, key: row.key },
      status: row.status as StoredRecord['status'],
      fields: row.fields === null ? null : (JSON.parse(row.fields) as Fields),
      conflicted: row.conflicted === 1,
      hash: row.hash,
      vv: JSON.parse(row.vv) as StoredRecord['vv'],
    };
  }

  // -------------------------------------------------------------------------------------------
  // reading

  get(ref: RecordRef): StoredRecord | null {
    return this.guard(() => {
      const row = this.st.getRow.get(ref.scope, ref.collection, ref.key);
      return row === undefined ? null : this.rowToRecord(row);
    });
  }

  getState(ref: RecordRef): RecordState | null {
    return this.guard(() => {
      const row = this.st.getRecord.get(ref.scope, ref.collection, ref.key);
      return row === undefined ? null : decodeStoredState(ref, row.state, this.strategies);
    });
  }

  query(scope: string, collection: string, options: QueryOptions = {}): StoredRecord[] {
    return this.guard(() => {
      const limit = options.limit ?? 1000;
      if (!Number.isSafeInteger(limit) || limit < 0) invalidWrite(`query limit must be a non-negative integer, got ${limit}`);
      const where = ['scope = ?', 'collection = ?', "status = 'live'"];
      const params: (string | number)[] = [scope, collection];
      if (options.prefix !== undefined && options.prefix !== '') {
        where.push('key >= ?');
        params.push(options.prefix);
        const upper = prefixUpperBound(options.prefix);
        if (upper !== undefined) {
          where.push('key < ?');
          params.push(upper);
        }
      }
      if (options.after !== undefined) {
        where.push('key > ?');
        params.push(options.after);
      }
      params.push(limit);
      const rows = this.db
        .prepare<(string | number)[], RecordRow>(`SELECT scope, collection, key, fields, hash, status, conflicted, vv FROM records WHERE ${where.join(' AND ')} ORDER BY key LIMIT ?`)
        .all(...params);
      return rows.map((r) => this.rowToRecord(r));
    });
  }

  conflictCount(): number {
    return this.guard(() => this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM records WHERE conflicted = 1').get()?.n ?? 0);
  }

  clock(): string {
    return encodeHlc(this.counters.hlc);
  }

  // -------------------------------------------------------------------------------------------
  // local writes

  private checkRef(ref: RecordRef): void {
    if (typeof ref !== 'object' || ref === null) invalidWrite('ref must be { scope, collection, key }');
    if (typeof ref.scope !== 'string' || !isScope(ref.scope)) invalidWrite(`scope ${JSON.stringify(ref.scope)}: expected "fleet", "group.<name>" or "host.<agentId>"`);
    // The yes/no checks first (the same rules as the schemas, without zod); the schema for the reason.
    if (!isValidCollection(ref.collection)) {
      const c = CollectionSchema.safeParse(ref.collection);
      if (!c.success) invalidWrite(`collection ${JSON.stringify(ref.collection)}: ${c.error.issues.map((i) => i.message).join('; ')}`);
    }
    if (!isValidKey(ref.key)) {
      const k = KeySchema.safeParse(ref.key);
      if (!k.success) invalidWrite(`key: ${k.error.issues.map((i) => i.message).join('; ')}`);
    }
    if (!isHostScope(ref.scope, this.agentId)) {
      throw new FleetError('FLEET_AUTH_003', `agent ${this.agentId} may write only scope host.${this.agentId}, not ${JSON.stringify(ref.scope)} (server-owned)`, {
        details: { scope: ref.scope, agentId: this.agentId },
      });
    }
  }

  private checkFields(fields: Fields, unset: readonly string[]): void {
    const f = isValidFields(fields) ? undefined : FieldsSchema.safeParse(fields);
    if (f !== undefined && !f.success) invalidWrite(`fields: ${f.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    if (!Array.isArray(unset)) invalidWrite('unset must be an array of field names');
    for (const name of unset) {
      const p = typeof name === 'string' ? fieldNameProblem(name) : 'field name must be a string';
      if (p !== undefined) invalidWrite(`unset ${JSON.stringify(name)}: ${p}`);
      if (has(fields, name)) invalidWrite(`field ${JSON.stringify(name)} is both written and unset`);
    }
  }

  private assertWritable(): void {
    if (this.needsVerification) {
      throw new FleetError('FLEET_AGENT_004', 'local writes are held until the sync manager has verified the restored store with the server');
    }
  }

  /** What a put (replace) or patch writes, against the current view; null when it changes nothing. */
  private editFor(state: RecordState, kind: 'put' | 'patch' | 'delete', fields: Fields, unset: readonly string[]): LocalEdit | null {
    const view = state.view;
    const live = view.status === 'live';
    if (kind === 'delete') return live || view.contestedExistence ? { op: 'delete' } : null;
    const visible: Fields = live ? view.fields : {};
    const contested = new Set(view.contested);
    const set: [string, JsonValue][] = [];
    for (const [f, v] of Object.entries(fields)) {
      if (!live || !has(visible, f) || contested.has(f) || !jsonEquals(visible[f] as JsonValue, v)) set.push([f, v]);
    }
    const removed = kind === 'put' ? Object.keys(visible).filter((f) => !has(fields, f)) : unset.filter((f) => has(visible, f) || contested.has(f));
    if (live && !view.contestedExistence && set.length === 0 && removed.length === 0) return null;
    if (set.length + removed.length > MAX_FIELDS_PER_CHANGE) invalidWrite(`the write changes ${set.length + removed.length} fields; a change carries at most ${MAX_FIELDS_PER_CHANGE}`);
    return { op: 'put', fields: Object.fromEntries(set), unset: removed };
  }

  /**
   * The write path every local and captured write takes; runs inside a transaction. Everything that
   * can refuse the write (validation, held writes, the outbox bound) is decided before the first
   * SQL write, so a refused write leaves nothing behind even inside a caller's transaction, and no
   * savepoint per write is needed (in WAL mode each costs a sub-journal of every page touched).
   */
  private writeLocal(ref: RecordRef, kind: 'put' | 'patch' | 'delete', fields: Fields, unset: readonly string[], source: 'local' | 'captured'): Change | null {
    this.assertWritable();
    this.checkRef(ref);
    if (kind !== 'delete') this.checkFields(fields, unset);
    const row = this.st.getLocal.get(ref.scope, ref.collection, ref.key);
    const state = row === undefined ? emptyRecord(ref) : decodeStoredState(ref, row.state, this.strategies);
    const edit = this.editFor(state, kind, fields, unset);
    if (edit === null) return null;
    return this.queueEdit(ref, row, state, edit, source);
  }

  /**
   * The second half of the local write path, once the edit is decided: HLC tick, `makeLocalChange`,
   * coalescing past the soft bound, the outbox bound, the record size cap, then the record and its
   * outbox row. `row` and `state`: the record as stored now (undefined / empty for a new record).
   * Everything that can refuse the edit is decided before the first SQL write.
   */
  private queueEdit(ref: RecordRef, row: { id: number; state: string } | undefined, state: RecordState, edit: LocalEdit, source: 'local' | 'captured'): Change {
    const nowMs = this.now();
    const tick = hlcNow(this.counters.hlc, nowMs);
    this.counters.hlc = tick.state;
    this.counters.originSeq += 1;
    const made = makeLocalChange(
      state,
      edit,
      { origin: this.agentId, originSeq: this.counters.originSeq, changeId: this.newId(), hlc: encodeHlc(tick.ts), protocol: PROTOCOL_VERSION },
      this.strategies,
    );
    // The bound: past `coalesceAbove`, the new change is coalesced with the record's unsent run.
    let run: OutboxRow[] = [];
    let queue: Change[] = [made.change];
    if (this.outboxCount + 1 > this.coalesceAbove) {
      if (this.needFullPass) {
        this.coalesceAllUnfrozen(); // semantically neutral, so it may stay even if this write is refused
        this.needFullPass = false;
      }
      run = row === undefined ? [] : this.st.outboxRunOf.all(row.id);
      if (run.length > 0) {
        const merged = coalesce([...run.map((r) => JSON.parse(r.change) as Change), made.change]);
        if (merged.length < run.length + 1 && merged.every(fitsOneChange)) queue = merged;
        else run = [];
      }
    } else {
      this.needFullPass = true;
    }
    const delta = queue.length - run.length;
    if (this.outboxCount + delta > this.outboxMax) {
      throw new FleetError('FLEET_AGENT_003', `the outbox holds ${this.outboxCount} unsent changes (max ${this.outboxMax}, FLEET_AGENT_OUTBOX_MAX) even after coalescing; this write was refused, nothing queued was dropped`, {
        details: { max: this.outboxMax, size: this.outboxCount, scope: ref.scope, collection: ref.collection, key: ref.key },
      });
    }
    const queued = queue[queue.length - 1] as Change;
    let next = made.state;
    // coalesce's caller duty: the merged change re-stamps fields of the earlier ones; hold the same.
    if (run.length > 0) for (const c of queue) next = applyChange(next, c, this.strategies).state;
    const encoded = encodeStoredState(next);
    // Refused before anything is written (contracts' record size cap).
    const over = stateGrowthPastCap(ref, encoded, () => row?.state);
    if (over !== undefined) invalidWrite(over.message, over.details);
    try {
      const { record, id } = this.saveLocal(row?.id, next, run.length > 0 ? recordHash(next) : made.change.hash, encoded);
      let createdAt = nowMs;
      for (const r of run) {
        createdAt = Math.min(createdAt, r.created_at);
        this.st.deleteOutboxSeq.run(r.origin_seq);
      }
      for (const c of queue) this.st.insertOutbox.run(c.originSeq, c.changeId, id, c.scope, c.collection, c.key, changeText(c), createdAt);
      this.outboxCount += delta;
      this.pending.push({ source, ref: record.ref, change: queued, record });
    } catch (e) {
      // Half written: make sure the enclosing transaction cannot commit, even if its caller swallows this.
      this.poisoned = true;
      throw e;
    }
    return queued;
  }

  /**
   * Coalesces one record's unfrozen outbox rows with sync-core `coalesce`, and applies the result to
   * the local record state too (coalesce's caller duty: the merged change re-stamps fields written by
   * earlier ones, and the agent must hold what every other replica will hold). Returns rows saved.
   */
  private coalesceRecord(id: number, ref: RecordRef): number {
    const rows = this.st.outboxRunOf.all(id);
    if (rows.length < 2) return 0;
    const changes = rows.map((r) => JSON.parse(r.change) as Change);
    const merged = coalesce(changes);
    if (merged.length >= rows.length || !merged.every(fitsOneChange)) return 0;
    const createdAt = Math.min(...rows.map((r) => r.created_at));
    try {
      for (const r of rows) this.st.deleteOutboxSeq.run(r.origin_seq);
      for (const c of merged) this.st.insertOutbox.run(c.originSeq, c.changeId, id, c.scope, c.collection, c.key, changeText(c), createdAt);
      let state = this.loadState(ref);
      const before = recordHash(state);
      let changed = false;
      for (const c of merged) {
        const r = applyChange(state, c, this.strategies);
        if (r.changed) {
          state = r.state;
          changed = true;
        }
      }
      if (changed) {
        const record = this.saveState(state);
        if (record.hash !== before) this.pending.push({ source: 'local', ref: record.ref, record });
      }
    } catch (e) {
      // Half done (the run deleted, the merged rows not all written: a full disk): the enclosing
      // transaction must not commit, even if its caller swallows this (as in writeLocal).
      this.poisoned = true;
      throw e;
    }
    const saved = rows.length - merged.length;
    this.outboxCount -= saved;
    return saved;
  }

  private coalesceAllUnfrozen(): number {
    // record_id 0: a row a migration found without its record (never written so); it is left as it is.
    const refs = this.db
      .prepare<[], RecordRef & { id: number }>('SELECT record_id AS id, min(scope) AS scope, min(collection) AS collection, min(key) AS key FROM outbox WHERE frozen = 0 AND record_id > 0 GROUP BY record_id HAVING count(*) > 1')
      .all();
    let saved = 0;
    for (const { id, scope, collection, key } of refs) saved += this.coalesceRecord(id, { scope, collection, key });
    return saved;
  }

  coalesceOutbox(): number {
    return this.transaction(() => this.coalesceAllUnfrozen());
  }

  /** Inside a transaction: no savepoint (writeLocal refuses before writing); outside: its own transaction. */
  private write<T>(fn: () => T): T {
    if (this.depth === 0) return this.transaction(fn);
    try {
      return fn();
    } catch (e) {
      throw translateError(e, this.path);
    }
  }

  put(ref: RecordRef, fields: Fields): Change | null {
    return this.write(() => this.writeLocal(ref, 'put', fields, [], 'local'));
  }

  /**
   * Queues, for each record of this agent's own scope, a new local change restating its current state
   * (see `LocalStore.requeueForPush`): the same path as a local write (HLC tick, `makeLocalChange`,
   * outbox row), all in one transaction. Not held by `needsVerification`: it is the verification's own
   * repair. Skipped: refs of other scopes, records the store does not hold, records with a conflict an
   * operator must settle, and a record the restatement would grow past the size cap (FLEET_AGENT_005,
   * rolled back alone). A full outbox (FLEET_AGENT_003) refuses the whole call.
   */
  requeueForPush(refs: readonly RecordRef[]): number {
    return this.transaction(() => {
      let queued = 0;
      for (const ref of refs) {
        if (!isHostScope(ref.scope, this.agentId)) continue;
        try {
          // A savepoint per record: a record refused part-way (its second chunk over the cap) leaves nothing.
          if (this.transaction(() => this.restate(ref))) queued += 1;
        } catch (e) {
          if (isFleetError(e, 'FLEET_AGENT_005')) continue;
          throw e;
        }
      }
      return queued;
    });
  }

  /** One record's restatement (`requeueForPush`); false when there is nothing to restate. */
  private restate(ref: RecordRef): boolean {
    const first = this.st.getLocal.get(ref.scope, ref.collection, ref.key);
    if (first === undefined) return false;
    const state = decodeStoredState(ref, first.state, this.strategies);
    if (state.view.conflicted) return false;
    const edits = restatementOf(state);
    for (const [i, edit] of edits.entries()) {
      // Each chunk of a wide record goes on top of the one before (its row and state as saved).
      const row = i === 0 ? first : this.st.getLocal.get(ref.scope, ref.collection, ref.key);
      const current = i === 0 ? state : decodeStoredState(ref, (row as { state: string }).state, this.strategies);
      this.queueEdit(ref, row, current, edit, 'local');
    }
    return true;
  }

  patch(ref: RecordRef, fields: Fields, unset: readonly string[] = []): Change | null {
    return this.write(() => this.writeLocal(ref, 'patch', fields, unset, 'local'));
  }

  delete(ref: RecordRef): Change | null {
    return this.write(() => this.writeLocal(ref, 'delete', {}, [], 'local'));
  }

  // -------------------------------------------------------------------------------------------
  // direct SQL writes

  processCaptured(limit = 1000): ProcessCapturedResult {
    return this.guard(() => {
      const pendingCount = () => this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM capture').get()?.n ?? 0;
      if (this.needsVerification) return { processed: 0, rejected: 0, remaining: pendingCount() };
      let processed = 0;
      let rejected = 0;
      let stop = false;
      while (!stop) {
        const rows = this.db.prepare<[number], CaptureRow>('SELECT seq, scope, collection, key, op, fields, captured_at, base FROM capture ORDER BY seq LIMIT ?').all(Math.min(limit - processed - rejected, 500));
        if (rows.length === 0) break;
        this.transaction(() => {
          const del = this.db.prepare('DELETE FROM capture WHERE seq = ?');
          for (const row of rows) {
            try {
              this.applyCaptured(row);
              processed += 1;
            } catch (e) {
              if (isFleetError(e, 'FLEET_AGENT_003') || isFleetError(e, 'FLEET_AGENT_004')) {
                stop = true; // retry later: the row stays captured
                break;
              }
              // Disk full, locks, bugs: roll the batch back and report; the rows stay captured.
              if (!isFleetError(e) || e.retryable) throw e;
              this.db
                .prepare('INSERT OR REPLACE INTO capture_rejected (seq, scope, collection, key, op, fields, captured_at, reason, rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
                .run(row.seq, row.scope, row.collection, row.key, row.op, row.fields, row.captured_at, `${e.code} ${e.message}`, this.now());
              rejected += 1;
            }
            del.run(row.seq);
          }
        });
        if (processed + rejected >= limit) break;
      }
      return { processed, rejected, remaining: pendingCount() };
    });
  }

  private applyCaptured(row: CaptureRow): void {
    const ref = { scope: row.scope, collection: row.collection, key: row.key };
    if (row.op === 'delete') {
      this.writeLocal(ref, 'delete', {}, [], 'captured');
      return;
    }
    const fields = capturedObject(row.fields);
    // An INSERT: the record's fields are these. An UPDATE of a record deleted since (a pull): the same,
    // the whole record as the statement wrote it, not a record of only the fields it changed.
    if (row.base === null || this.loadState(ref).view.status !== 'live') {
      this.writeLocal(ref, 'put', fields, [], 'captured');
      return;
    }
    // An UPDATE: only what the statement changed, against the fields it saw. Processed later, the
    // record may hold newer values (a pull, another write) of the fields it left alone: a replace
    // would write the old ones back over them.
    const base = capturedObject(row.base);
    const set = Object.fromEntries(Object.entries(fields).filter(([f, v]) => !has(base, f) || !jsonEquals(base[f] as JsonValue, v)));
    const unset = Object.keys(base).filter((f) => !has(fields, f));
    if (Object.keys(set).length === 0 && unset.length === 0) return; // the statement changed nothing
    this.writeLocal(ref, 'patch', set, unset, 'captured');
  }

  // -------------------------------------------------------------------------------------------
  // outbox, for the sync manager

  peekOutbox(limit: number): Change[] {
    if (!Number.isSafeInteger(limit) || limit < 0) invalidWrite(`peekOutbox limit must be a non-negative integer, got ${limit}`);
    return this.transaction(() => {
      const rows = this.st.peekOutbox.all(limit);
      const last = rows[rows.length - 1];
      if (last !== undefined) this.st.freezeOutbox.run(last.origin_seq);
      return rows.map((r) => JSON.parse(r.change) as Change);
    });
  }

  markSent(changeIds: readonly string[]): number {
    return this.transaction(() => {
      let n = 0;
      for (const id of changeIds) n += this.st.deleteOutboxId.run(id).changes;
      this.outboxCount -= n;
      if (n > 0) this.st.putMeta.run('consecutive_failures', '0');
      if (this.outboxCount <= this.coalesceAbove) this.needFullPass = true;
      return n;
    });
  }

  recordFailure(changeIds: readonly string[], error: string): void {
    this.transaction(() => {
      const at = this.now();
      for (const id of changeIds) this.st.failOutboxId.run(error, at, id);
      const n = Number(this.st.getMeta.get('consecutive_failures')?.v ?? '0');
      this.st.putMeta.run('consecutive_failures', String(n + 1));
      this.st.putMeta.run('last_error', JSON.stringify({ message: error, at }));
    });
  }

  outboxSize(): number {
    return this.guard(() => {
      // Another process (`agent put`) may have queued changes since: then read the counters again.
      if (this.depth === 0) this.reloadIfOtherWrote();
      return this.outboxCount;
    });
  }

  private statsStatements: { outbox: Database.Statement<[], { size: number; oldest: number | null; failures: number; inflight: number }>; counts: Map<string, Database.Statement<[], { n: number }>> } | undefined;

  outboxStats(): OutboxStats {
    return this.guard(() => {
      this.statsStatements ??= {
        outbox: this.db.prepare('SELECT count(*) AS size, min(created_at) AS oldest, coalesce(sum(attempts > 0), 0) AS failures, coalesce(sum(frozen), 0) AS inflight FROM outbox'),
        counts: new Map(),
      };
      const st = this.statsStatements;
      const o = st.outbox.get() ?? { size: 0, oldest: null, failures: 0, inflight: 0 };
      const last = this.st.getMeta.get('last_error')?.v;
      const lastError = last === undefined ? null : (JSON.parse(last) as { message: string; at: number });
      const count = (sql: string) => {
        let s = st.counts.get(sql);
        if (s === undefined) st.counts.set(sql, (s = this.db.prepare<[], { n: number }>(sql)));
        return s.get()?.n ?? 0;
      };
      return {
        size: o.size,
        max: this.outboxMax,
        oldestAt: o.oldest,
        oldestAgeMs: o.oldest === null ? null : Math.max(0, this.now() - o.oldest),
        failures: o.failures,
        consecutiveFailures: Number(this.st.getMeta.get('consecutive_failures')?.v ?? '0'),
        lastError: lastError?.message ?? null,
        lastErrorAt: lastError?.at ?? null,
        inFlight: o.inflight,
        capturedPending: count('SELECT count(*) AS n FROM capture'),
        capturedRejected: count('SELECT count(*) AS n FROM capture_rejected'),
      };
    });
  }

  // -------------------------------------------------------------------------------------------
  // remote changes, for the sync manager

  applyRemote(items: readonly RemoteItem[], cursorAfter: SyncCursor): { applied: number; changed: number; conflicts: number; drifted: number } {
    return this.transaction(() => {
      const acc = { changed: 0, conflicts: 0, drifted: 0 };
      const nowMs = this.now();
      const receive = this.remoteClock(nowMs, acc);
      for (const item of items) {
        if ('state' in item) {
          const remote = receivedState(item);
          this.joinRemoteState(remote, receive, acc);
        } else {
          const change = item;
          const local = this.loadState(change);
          const r = applyChange(local, change, this.strategies);
          receive(change.hlc);
          if (r.changed) {
            const record = this.saveState(r.state);
            acc.changed += 1;
            if (r.conflict !== undefined) acc.conflicts += 1;
            this.pending.push({ source: 'remote', ref: record.ref, change, record });
          }
        }
      }
      this.writeSyncState({ ...this.readSyncState(), cursor: cursorAfter, lastPullAt: nowMs });
      return { applied: items.length, ...acc };
    });
  }

  /**
   * `applyRemote` for pulled wire records, the pull decoder having checked them (contracts'
   * `WireRecordsSchema`): they are not checked again. Records and cursor in ONE transaction, the same
   * rows and events as `applyRemote` of `fromWireRecord(r)`. The bulk path (a snapshot, any first pull):
   * a record that is a single write (`singleWriteState`) is INSERTed directly with its derived
   * columns, no join, no stored state to load; if the store already holds the key (the insert does
   * nothing) it is joined like any other record.
   */
  applyRemoteWire(records: readonly WireRecord[], cursorAfter: SyncCursor): { applied: number; changed: number; conflicts: number; drifted: number } {
    return this.applyRemoteRows(prepareWireRows(records), cursorAfter);
  }

  /**
   * `applyRemoteWire` of records already prepared (contracts' `prepareWireRows`, e.g. by the sync
   * manager's decoder worker from the page it checked): the rows of single-write records are inserted
   * as they are (this thread does no JSON work for them), the other records joined in page order.
   * Records and cursor in ONE transaction, the same rows, counts and events as `applyRemoteWire`.
   */
  applyRemoteRows(prepared: PreparedWireRows, cursorAfter: SyncCursor): { applied: number; changed: number; conflicts: number; drifted: number } {
    const { rows, hlcs, others } = prepared;
    if (rows.length !== hlcs.length * PREPARED_ROW_WIDTH) throw new FleetError('FLEET_STATE_001', 'prepared rows do not match their clocks', { details: { rows: rows.length, hlcs: hlcs.length } });
    return this.transaction(() => {
      const acc = { changed: 0, conflicts: 0, drifted: 0 };
      const nowMs = this.now();
      const receive = this.remoteClock(nowMs, acc);
      // Single-write records are inserted INSERT_BATCH rows per statement (a multi-row INSERT costs
      // SQLite and the driver less per row than one statement per row). Each row gets its own mseq, so
      // when a statement inserts fewer rows than it carried, the rows that are ours are told apart from
      // the ones the store already held (or a duplicate of the page) by their mseq; those are joined.
      const W = PREPARED_ROW_WIDTH;
      let from = 0; // first single-write record of the batch
      const mseqs: number[] = [];
      const params: (string | number | null)[] = [];
      const flush = (): void => {
        const n = mseqs.length;
        if (n === 0) return;
        const inserted = this.insertNewRecords(n).run(...params).changes;
        for (let j = 0; j < n; j++) {
          const o = (from + j) * W;
          const ref = { scope: rows[o] as string, collection: rows[o + 1] as string, key: rows[o + 2] as string };
          const text = rows[o + 3] as string;
          if (inserted !== n && this.mseqOf().get(ref.scope, ref.collection, ref.key)?.mseq !== mseqs[j]) {
            // Its stamp was received when it was batched: not again (a drift would be counted twice).
            const state = JSON.parse(text) as Pick<WireRecord, 'w' | 'x' | 'f'>;
            this.joinRemoteState(fromWireRecord({ s: ref.scope, c: ref.collection, k: ref.key, ...state }), () => undefined, acc);
            continue;
          }
          acc.changed += 1;
          this.pending.push({ source: 'remote', ref, record: preparedRecord(ref, rows, o) });
        }
        from += n;
        mseqs.length = 0;
        params.length = 0;
      };
      let next = 0; // next single-write record to batch
      const batchUpTo = (end: number): void => {
        for (; next < end; next++) {
          receive(hlcs[next]);
          this.counters.mseq += 1;
          const o = next * W;
          params.push(rows[o] as string, rows[o + 1] as string, rows[o + 2] as string, rows[o + 3] as string, rows[o + 4] as string | null, rows[o + 5] as string, rows[o + 6] as string, rows[o + 7] as string, this.counters.mseq);
          mseqs.push(this.counters.mseq);
          if (mseqs.length === INSERT_BATCH) flush();
        }
      };
      for (const other of others) {
        batchUpTo(other.at);
        flush(); // in page order: the same counts and events as applyRemote, duplicates included
        this.joinRemoteState(fromWireRecord(other.record), receive, acc);
      }
      batchUpTo(hlcs.length);
      flush();
      this.writeSyncState({ ...this.readSyncState(), cursor: cursorAfter, lastPullAt: nowMs });
      return { applied: hlcs.length + others.length, ...acc };
    });
  }

  private readonly insertNewStmts = new Map<number, Database.Statement<(string | number | null)[]>>();
  private mseqStmt: Database.Statement<[string, string, string], { mseq: number }> | undefined;

  /** INSERT of `n` record rows the store does not hold (a row it holds is skipped): applyRemoteWire's bulk path only. */
  private insertNewRecords(n: number): Database.Statement<(string | number | null)[]> {
    let st = this.insertNewStmts.get(n);
    if (st === undefined) {
      const row = '(?, ?, ?, ?, ?, ?, ?, 0, ?, ?)';
      st = this.db.prepare<(string | number | null)[]>(
        `INSERT INTO records (scope, collection, key, state, fields, hash, status, conflicted, vv, mseq) VALUES ${Array.from({ length: n }, () => row).join(', ')} ON CONFLICT (scope, collection, key) DO NOTHING`,
      );
      this.insertNewStmts.set(n, st);
    }
    return st;
  }

  private mseqOf(): Database.Statement<[string, string, string], { mseq: number }> {
    this.mseqStmt ??= this.db.prepare('SELECT mseq FROM records WHERE scope = ? AND collection = ? AND key = ?');
    return this.mseqStmt;
  }

  /**
   * The HLC side of receiving remote writes (`hlcReceive` of each record's greatest HLC), counting
   * drifted ones in `acc`. A record whose greatest HLC is not above the last one received (and that one
   * did not drift) is skipped: it cannot drift (its wall time is not above an accepted one) and
   * receiving it would only tick the counter. A page thus costs one `hlcReceive` per new maximum.
   */
  private remoteClock(nowMs: number, acc: { drifted: number }): (hlc: string | undefined) => void {
    let last: string | undefined;
    let lastDrifted = false;
    return (hlc) => {
      if (hlc === undefined) return;
      if (last !== undefined && hlc <= last && !lastDrifted) return;
      const r = hlcReceive(this.counters.hlc, hlc, nowMs, this.maxDriftMs === undefined ? {} : { maxDriftMs: this.maxDriftMs });
      this.counters.hlc = r.state;
      if (r.drifted) acc.drifted += 1;
      if (last === undefined || hlc > last) {
        last = hlc;
        lastDrifted = r.drifted;
      }
    };
  }

  /** Joins one received (decoded) state into the store: applyRemote's and applyRemoteWire's general path. */
  private joinRemoteState(remote: RecordState, receive: (hlc: string | undefined) => void, acc: { changed: number; conflicts: number }): void {
    const row = this.st.getRecord.get(remote.ref.scope, remote.ref.collection, remote.ref.key);
    receive(maxHlcOf(remote));
    let merged: RecordState;
    let encoded: string;
    let conflictedBefore = false;
    if (row === undefined) {
      // Not held yet (every record of a first pull): the join with the empty state is the
      // received state itself, normalised; no stored state to parse or compare with.
      merged = mergeRecordStates(emptyRecord(remote.ref), remote, this.strategies);
      if (merged.existence.length === 0) return;
      encoded = encodeStoredState(merged);
    } else {
      const local = decodeStoredState(remote.ref, row.state, this.strategies);
      merged = mergeRecordStates(local, remote, this.strategies);
      encoded = encodeStoredState(merged);
      // Equal texts are equal states. Different texts may still be equal states (a value's object
      // keys in another order), so those are compared canonically before counting a change.
      const before = encodeStoredState(local);
      if (encoded === before || canonicalJson(JSON.parse(encoded)) === canonicalJson(JSON.parse(before))) return;
      conflictedBefore = local.view.conflicted;
    }
    const record = this.saveState(merged, undefined, encoded);
    acc.changed += 1;
    if (merged.view.conflicted && !conflictedBefore) acc.conflicts += 1;
    this.pending.push({ source: 'remote', ref: record.ref, record });
  }

  /**
   * A verification's repair in server-owned scopes (`fleet`, `group.<name>`; see `LocalStore`): each
   * fetched state REPLACES the stored record, row and derived columns (fields, hash, status, conflict
   * flag, vector) rewritten from it whenever any of them differs, so a corruption that kept a write's
   * stamp (which a join would keep) is undone; each `drop` ref's row is deleted. One transaction; the
   * outbox and the cursor are not touched (the HLC moves past the states received, as for a pull). A
   * ref of another scope refuses the whole call (FLEET_AUTH_003), the agent's own scope above all:
   * there the server's state is joined, never replaces writes made here.
   */
  replaceFromServer(items: readonly { readonly ref: RecordRef; readonly state: string | RecordState }[], drop: readonly RecordRef[] = []): { replaced: number; dropped: number } {
    for (const ref of [...items.map((i) => i.ref), ...drop]) this.assertServerOwned(ref);
    return this.transaction(() => {
      let replaced = 0;
      let dropped = 0;
      const receive = this.remoteClock(this.now(), { drifted: 0 });
      const gone: RecordRef[] = [...drop];
      for (const item of items) {
        const remote = receivedState(item);
        receive(maxHlcOf(remote));
        // Normalised and viewed under this store's strategies, like a record received for the first time.
        const next = mergeRecordStates(emptyRecord(remote.ref), remote, this.strategies);
        if (next.existence.length === 0) {
          gone.push(remote.ref); // nothing was ever written: the server holds no record
          continue;
        }
        const encoded = encodeStoredState(next);
        const hash = recordHash(next);
        const fields = next.view.status === 'live' ? JSON.stringify(next.view.fields) : null;
        const row = this.st.getStored.get(remote.ref.scope, remote.ref.collection, remote.ref.key);
        if (
          row !== undefined &&
          row.state === encoded &&
          row.hash === hash &&
          row.status === next.view.status &&
          row.conflicted === (next.view.conflicted ? 1 : 0) &&
          jsonTextEquals(row.fields, fields) &&
          jsonTextEquals(row.vv, JSON.stringify(next.vv))
        ) {
          continue;
        }
        const record = this.saveState(next, hash, encoded);
        replaced += 1;
        this.pending.push({ source: 'remote', ref: record.ref, record });
      }
      for (const ref of gone) {
        if (this.st.deleteRecord.run(ref.scope, ref.collection, ref.key).changes === 0) continue;
        dropped += 1;
        const r = { scope: ref.scope, collection: ref.collection, key: ref.key };
        this.pending.push({ source: 'remote', ref: r, record: { ref: r, status: 'absent', fields: null, conflicted: false, hash: visibleHash(null), vv: {} } });
      }
      if (dropped > 0) {
        const chain = this.st.getMeta.get('backup_chain')?.v;
        if (chain !== undefined) this.st.putMeta.run('backup_chain', JSON.stringify({ ...(JSON.parse(chain) as BackupChain), dropped: true }));
      }
      return { replaced, dropped };
    });
  }

  /** `replaceFromServer`'s refusal: only server-owned scopes, never this agent's own. */
  private assertServerOwned(ref: RecordRef): void {
    if (typeof ref !== 'object' || ref === null || typeof ref.scope !== 'string') invalidWrite('ref must be { scope, collection, key }');
    if (isServerScope(ref.scope)) return;
    const own = isHostScope(ref.scope, this.agentId);
    throw new FleetError(
      'FLEET_AUTH_003',
      own
        ? `the server's state never replaces records of this agent's own scope host.${this.agentId} (writes made here would be lost): there it is joined (applyRemote) and what the server lacks re-pushed`
        : `replaceFromServer takes records of server-owned scopes (fleet, group.<name>) only, not ${JSON.stringify(ref.scope)}`,
      { details: { scope: ref.scope, agentId: this.agentId } },
    );
  }

  private readSyncState(): SyncState {
    const raw = this.st.getMeta.get('sync_state')?.v;
    return raw === undefined ? DEFAULT_SYNC_STATE : { ...DEFAULT_SYNC_STATE, ...(JSON.parse(raw) as Partial<SyncState>) };
  }

  private writeSyncState(s: SyncState): void {
    this.st.putMeta.run('sync_state', JSON.stringify(s));
    this.needsVerification = s.needsVerification;
  }

  syncState(): SyncState {
    return this.guard(() => this.readSyncState());
  }

  setSyncState(patch: Partial<SyncState>): void {
    this.transaction(() => {
      const next = { ...this.readSyncState() };
      for (const [k, v] of Object.entries(patch)) if (v !== undefined) (next as Record<string, unknown>)[k] = v;
      this.writeSyncState(next);
    });
  }

  settleOrigin(lastLogged: number | null): OriginSettlement {
    if (lastLogged !== null && (!Number.isSafeInteger(lastLogged) || lastLogged < 0)) invalidWrite(`last logged origin sequence must be a non-negative integer or null, got ${lastLogged}`);
    return this.transaction(() => {
      const s = this.readSyncState();
      if (s.originSettled) return { shift: 0, renumbered: 0, ownFrom: s.ownFrom };
      // Everything this store numbers from `from` on (its queued changes, which a restore leaves below
      // ownFrom, and its next ones) moves above the log's highest with the restore gap's margin: changes
      // an earlier store pushed that the log has not appended yet are above `lastLogged` too.
      const lowestQueued = this.db.prepare<[], { m: number | null }>('SELECT min(origin_seq) AS m FROM outbox').get()?.m ?? null;
      const from = lowestQueued === null ? s.ownFrom : Math.min(s.ownFrom, lowestQueued);
      const shift = lastLogged === null || lastLogged + RESTORE_SEQ_GAP < from ? 0 : lastLogged + RESTORE_SEQ_GAP + 1 - from;
      if (shift > 0 && s.cursor !== null) {
        throw new FleetError('FLEET_AGENT_009', `${this.path}: the log holds this agent id's changes up to ${lastLogged}, at or above this store's (from ${s.ownFrom}), and the store has pulled: it cannot renumber its own changes`, { details: { cursor: s.cursor } });
      }
      const renumbered = shift === 0 ? 0 : this.shiftOwnChanges(shift);
      this.counters.originSeq += shift;
      this.writeSyncState({ ...s, ownFrom: s.ownFrom + shift, originSettled: true });
      return { shift, renumbered, ownFrom: s.ownFrom + shift };
    });
  }

  /**
   * settleOrigin's renumbering: every queued change gets `originSeq + shift` and its own vector entry
   * `+ shift` (order kept), and each record is folded again from its renumbered changes, which is its
   * whole history in a store that has never synced (nothing pulled, nothing sent); each change's hash is
   * the record's after it, as when it was made.
   */
  private shiftOwnChanges(shift: number): number {
    const rows = this.db
      .prepare<[], { origin_seq: number; record_id: number; change: string; created_at: number }>('SELECT origin_seq, record_id, change, created_at FROM outbox ORDER BY origin_seq')
      .all();
    const states = new Map<number, RecordState>();
    const moved: { row: (typeof rows)[number]; change: Change }[] = [];
    for (const row of rows) {
      const c = JSON.parse(row.change) as Change;
      const vv = { ...c.vv, [this.agentId]: (c.vv[this.agentId] ?? 0) + shift };
      const draft: Change = { ...c, originSeq: c.originSeq + shift, vv };
      const r = applyChange(states.get(row.record_id) ?? emptyRecord(c), draft, this.strategies);
      if (r.rejection !== undefined) throw r.rejection;
      states.set(row.record_id, r.state);
      moved.push({ row, change: { ...draft, hash: recordHash(r.state) } });
    }
    this.db.prepare('DELETE FROM outbox').run();
    for (const { row, change: c } of moved) this.st.insertOutbox.run(c.originSeq, c.changeId, row.record_id, c.scope, c.collection, c.key, changeText(c), row.created_at);
    const saved = new Map<number, StoredRecord>();
    for (const [id, state] of states) saved.set(id, this.saveState(state));
    // The fields stay as they were, but each record's vector (its own entry) moved, and the changes
    // watchers were given at write time have new numbers: tell them, one event per change, in order.
    for (const { row, change } of moved) {
      const record = saved.get(row.record_id) as StoredRecord;
      this.pending.push({ source: 'renumbered', ref: record.ref, change, record });
    }
    this.needFullPass = true;
    return moved.length;
  }

  // -------------------------------------------------------------------------------------------
  // anti-entropy

  collections(): { scope: string; collection: string }[] {
    return this.guard(() => {
      // A skip scan over the unique index on (scope, collection, key): one index seek per pair held,
      // not a read of every record.
      const out: { scope: string; collection: string }[] = [];
      // (Two seeks, not one `(scope, collection) > (?, ?)`: SQLite steps through the pair's keys for that.)
      for (let at = this.st.nextScope.get(''); at !== undefined; at = this.st.nextCollection.get(at.scope, at.collection) ?? this.st.nextScope.get(at.scope)) out.push({ scope: at.scope, collection: at.collection });
      return out;
    });
  }

  *merkleEntries(scope: string, collection: string): Iterable<MerkleEntry> {
    // Paged by key (not one open cursor), so the caller may write to the store between pages.
    const page = this.db.prepare<[string, string, string, number], { key: string; hash: string }>(
      'SELECT key, hash FROM records WHERE scope = ? AND collection = ? AND key > ? ORDER BY key LIMIT ?',
    );
    let after = '';
    for (;;) {
      const rows = this.guard(() => page.all(scope, collection, after, 2000));
      for (const r of rows) yield { key: r.key, recordHash: r.hash };
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < 2000) return;
      after = last.key;
    }
  }

  // -------------------------------------------------------------------------------------------
  // backups

  backup(options: { full?: boolean; dir?: string } = {}): BackupInfo {
    this.assertOpen();
    if (this.depth > 0) throw new TypeError('backup() cannot run inside transaction()');
    const chainRaw = this.st.getMeta.get('backup_chain')?.v;
    const chain = chainRaw === undefined ? undefined : (JSON.parse(chainRaw) as BackupChain);
    const root = resolve(options.dir ?? this.backupRoot);
    const wantFull = options.full === true || chain === undefined || chain.dropped === true || !existsSync(chain.dir) || (options.dir !== undefined && resolve(chain.dir, '..') !== root);
    try {
      return wantFull ? this.backupFull(root) : this.backupIncremental(chain as BackupChain);
    } catch (e) {
      const t = translateError(e, root);
      if (isFleetError(t)) throw t;
      throw new FleetError('FLEET_AGENT_006', `backup to ${root} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  private backupFull(root: string): BackupInfo {
    const id = this.newId();
    const dir = join(root, `chain-${id}`);
    mkdirSync(dir, { recursive: true });
    const file = join(dir, 'full.db');
    const createdAt = this.now();
    // VACUUM INTO reads one consistent snapshot; this connection is synchronous, so the marker read
    // just before it is exactly what the snapshot holds.
    const marker = this.counters.mseq;
    this.db.prepare('VACUUM INTO ?').run(file);
    const out = new Database(file);
    let records = 0;
    let outbox = 0;
    try {
      out.pragma('journal_mode = DELETE');
      records = out.prepare<[], { n: number }>('SELECT count(*) AS n FROM records').get()?.n ?? 0;
      outbox = out.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox').get()?.n ?? 0;
      out.exec('CREATE TABLE backup_info (id TEXT NOT NULL, kind TEXT NOT NULL, full_id TEXT NOT NULL, parent_id TEXT, agent_id TEXT NOT NULL, marker INTEGER NOT NULL, created_at INTEGER NOT NULL)');
      out.prepare('INSERT INTO backup_info VALUES (?, ?, ?, ?, ?, ?, ?)').run(id, 'full', id, null, this.agentId, marker, createdAt);
    } finally {
      out.close();
    }
    const chain: BackupChain = { fullId: id, dir, lastId: id, lastMarker: marker, count: 0 };
    this.transaction(() => this.st.putMeta.run('backup_chain', JSON.stringify(chain)));
    return { id, kind: 'full', fullId: id, parentId: null, dir, file, marker, createdAt, records, outbox };
  }

  private backupIncremental(chain: BackupChain): BackupInfo {
    const id = this.newId();
    const n = chain.count + 1;
    const file = join(chain.dir, `inc-${String(n).padStart(6, '0')}.db`);
    if (existsSync(file)) rmSync(file);
    const createdAt = this.now();
    const marker = this.counters.mseq;
    this.db.prepare('ATTACH DATABASE ? AS inc').run(file);
    let records = 0;
    let outbox = 0;
    try {
      this.runTx(() => {
        this.db.prepare('CREATE TABLE inc.records AS SELECT * FROM main.records WHERE mseq > ?').run(chain.lastMarker);
        for (const t of SNAPSHOT_TABLES) this.db.exec(`CREATE TABLE inc.${t} AS SELECT * FROM main.${t}`);
        this.db.exec('CREATE TABLE inc.backup_info (id TEXT NOT NULL, kind TEXT NOT NULL, full_id TEXT NOT NULL, parent_id TEXT, agent_id TEXT NOT NULL, marker INTEGER NOT NULL, created_at INTEGER NOT NULL)');
        this.db.prepare('INSERT INTO inc.backup_info VALUES (?, ?, ?, ?, ?, ?, ?)').run(id, 'incremental', chain.fullId, chain.lastId, this.agentId, marker, createdAt);
        records = this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM inc.records').get()?.n ?? 0;
        outbox = this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM inc.outbox').get()?.n ?? 0;
      });
    } finally {
      this.db.exec('DETACH DATABASE inc');
    }
    const next: BackupChain = { ...chain, lastId: id, lastMarker: marker, count: n };
    this.transaction(() => this.st.putMeta.run('backup_chain', JSON.stringify(next)));
    return { id, kind: 'incremental', fullId: chain.fullId, parentId: chain.lastId, dir: chain.dir, file, marker, createdAt, records, outbox };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.db.close();
    } finally {
      // After the database: a restore waiting for the lock finds it closed.
      this.lock.release();
    }
  }
}

interface BackupInfoRow {
  id: string;
  kind: string;
  full_id: string;
  parent_id: string | null;
  agent_id: string;
  marker: number;
  created_at: number;
}

export interface RestoreOptions {
  /** Refuse a backup of another agent (FLEET_AGENT_006). */
  readonly agentId?: string;
  readonly now?: () => number;
  /** The command named to a process refused meanwhile. Default `agent restore`. */
  readonly command?: string;
  /** How long to wait for other processes' open stores (short commands) before FLEET_AGENT_010. Default 5 s. */
  readonly lockWaitMs?: number;
}

export interface RestoreResult {
  readonly fullId: string;
  /** Backup ids applied, full first. */
  readonly applied: readonly string[];
  /** Where the store that was there before went (kept, never deleted), or null if there was none. */
  readonly previousMovedTo: string | null;
  readonly path: string;
}

/**
 * Rebuilds the store in `dataDir` from a backup chain directory (`full.db` plus `inc-NNNNNN.db`, as
 * `backup()` writes them): the full backup, then each incremental in order, each checked to follow
 * the previous one. The store must be closed: while `agent run` (the owner lock) has it open, the
 * restore is refused at once with FLEET_AGENT_010; other processes' open stores (short commands) are
 * waited for, then refused the same way, and stores opened meanwhile wait for the restore to end
 * (`store-lock.ts`). The store that was there is moved aside (`agent.db.before-restore-<ms>`), never deleted.
 *
 * After a restore the store is flagged `needsVerification` with the cursor `null`: writes made after
 * the backup may exist on the server, so the sync manager must verify (Merkle) before trusting or
 * moving the cursor, and local writes are held until it does (FLEET_AGENT_004). The origin sequence
 * jumps by RESTORE_SEQ_GAP for the same reason.
 */
export function restoreSqliteStore(backupDir: string, dataDir: string, options: RestoreOptions = {}): RestoreResult {
  const dir = resolve(backupDir);
  const now = options.now ?? Date.now;
  const bad = (why: string, file = dir): never => {
    throw new FleetError('FLEET_AGENT_006', `${file}: ${why}`, { details: { file } });
  };
  if (!existsSync(dir) || !statSync(dir).isDirectory()) bad('not a backup directory');
  const full = join(dir, 'full.db');
  if (!existsSync(full)) bad('no full.db: not a backup chain directory');
  const incs = readdirSync(dir)
    .filter((f) => /^inc-\d{6}\.db$/.test(f))
    .sort()
    .map((f) => join(dir, f));
  const target = resolve(dataDir);
  try {
    mkdirSync(target, { recursive: true });
    accessSync(target, fsConstants.W_OK);
  } catch (e) {
    throw new FleetError('FLEET_AGENT_001', `${target}: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { path: target } });
  }
  // The store alone from the work file to the swap: refused at once while agent run has it open (or
  // another restore runs); other processes' short commands are waited for (store-lock.ts).
  const lock = StoreLock.acquire(target, 'exclusive', {
    command: options.command ?? 'agent restore',
    ...(options.lockWaitMs === undefined ? {} : { waitMs: options.lockWaitMs }),
    now,
  });
  try {
    return restoreLocked(dir, full, incs, target, options.agentId, now);
  } finally {
    lock.release();
  }
}

function restoreLocked(dir: string, full: string, incs: readonly string[], target: string, agentId: string | undefined, now: () => number): RestoreResult {
  const bad = (why: string, file = dir): never => {
    throw new FleetError('FLEET_AGENT_006', `${file}: ${why}`, { details: { file } });
  };
  const work = join(target, `${DB_FILE}.restoring`);
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${work}${suffix}`, { force: true });
  copyFileSync(full, work);
  const db = new Database(work);
  const applied: string[] = [];
  let fullId = '';
  try {
    db.pragma('journal_mode = DELETE');
    const info = (schema: string, file: string): BackupInfoRow => {
      try {
        const row = db.prepare<[], BackupInfoRow>(`SELECT * FROM ${schema}.backup_info`).get();
        if (row === undefined) return bad('backup_info is empty', file);
        return row;
      } catch (e) {
        if (isFleetError(e)) throw e;
        return bad(`not a backup written by the agent (${e instanceof Error ? e.message : String(e)})`, file);
      }
    };
    const head = info('main', full);
    if (head.kind !== 'full') bad('full.db is not a full backup', full);
    if (agentId !== undefined && head.agent_id !== agentId) bad(`backup of agent ${JSON.stringify(head.agent_id)}, not ${JSON.stringify(agentId)}`, full);
    fullId = head.id;
    applied.push(head.id);
    let prev = head.id;
    for (const file of incs) {
      db.prepare('ATTACH DATABASE ? AS inc').run(file);
      try {
        const inc = info('inc', file);
        if (inc.full_id !== fullId) bad(`belongs to full backup ${inc.full_id}, not ${fullId}`, file);
        if (inc.parent_id !== prev) bad(`follows backup ${String(inc.parent_id)}, but the chain so far ends at ${prev} (a missing or reordered file)`, file);
        db.transaction(() => {
          db.exec('INSERT OR REPLACE INTO main.records SELECT * FROM inc.records');
          // A full backup made before the critical tables existed: create them, so that the rows of a
          // later incremental are restored, not skipped.
          db.exec(CRITICAL_SCHEMA_SQL);
          for (const t of SNAPSHOT_TABLES) {
            // An incremental made before a table was added (critical_*) has none of it to restore.
            if (!hasTable(db, 'inc', t)) continue;
            db.exec(`DELETE FROM main.${t}; INSERT INTO main.${t} SELECT * FROM inc.${t};`);
          }
        })();
        prev = inc.id;
        applied.push(inc.id);
      } finally {
        db.exec('DETACH DATABASE inc');
      }
    }
    db.transaction(() => {
      const get = (k: string) => db.prepare<[string], { v: string }>('SELECT v FROM meta WHERE k = ?').get(k)?.v;
      const put = (k: string, v: string) => db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v').run(k, v);
      const counters = JSON.parse(get('counters') ?? 'null') as StoredCounters | null;
      // Past the backup's sequence by a billion, and never below the clock's floor: the backup may be
      // older than a reinstall of the host whose store numbered from a later floor.
      const next = Math.max((counters?.originSeq ?? 0) + RESTORE_SEQ_GAP, originSeqFloor(now()));
      if (counters !== null) put('counters', JSON.stringify({ ...counters, originSeq: next }));
      // The writes made after the backup are not held: only what this store assigns from now on is.
      const sync = { ...DEFAULT_SYNC_STATE, ...(JSON.parse(get('sync_state') ?? '{}') as Partial<SyncState>), cursor: null, needsVerification: true, ownFrom: next + 1 };
      put('sync_state', JSON.stringify(sync));
      db.prepare('DELETE FROM meta WHERE k = ?').run('backup_chain');
      put('restored_from', JSON.stringify({ dir, fullId, applied, at: now() }));
      db.exec('DROP TABLE IF EXISTS backup_info');
    })();
  } catch (e) {
    db.close();
    rmSync(work, { force: true });
    throw translateError(e, work);
  }
  db.close();
  const live = join(target, DB_FILE);
  let previousMovedTo: string | null = null;
  if (existsSync(live)) {
    previousMovedTo = `${live}.before-restore-${now()}`;
    // The WAL and shared-memory files go with their database: a stale WAL beside the restored file
    // would be replayed into it.
    for (const suffix of ['-wal', '-shm']) if (existsSync(`${live}${suffix}`)) renameSync(`${live}${suffix}`, `${previousMovedTo}${suffix}`);
    renameSync(live, previousMovedTo);
  }
  renameSync(work, live);
  return { fullId, applied, previousMovedTo, path: live };
}
