/**
 * The SQLite schema of the agent's store (see docs/agent.md for the reasoning).
 *
 * - `records`: one row per record: the CRDT state (compact, see stored-state.ts), and, derived from it for
 *   readers and indexes, the visible fields, hash, status, conflict flag and vector. `mseq` is the
 *   store's modification counter at the row's last write: incremental backups copy `mseq > marker`.
 * - `outbox`: the offline queue, one row per unsent change, keyed by `origin_seq` (its order);
 *   `record_id` is the `records.id` of the change's record.
 *   `frozen` marks rows handed to the sync manager (never coalesced again).
 * - `capture`: direct SQL writes made through the `visible_records` view, in order, waiting for
 *   `processCaptured` to turn them into changes. `capture_rejected` keeps those that could not be.
 * - `records` is a rowid table with a unique index rather than WITHOUT ROWID: its rows (the state
 *   and the visible fields, a few hundred bytes and more) are above the size where SQLite advises
 *   WITHOUT ROWID, and inserts in random key order would split wide leaf pages. Its rowid is declared
 *   (`id INTEGER PRIMARY KEY`) so it is stable: VACUUM (and so `VACUUM INTO`, the full backup) may
 *   renumber an undeclared rowid, and the outbox refers to records by it.
 * - `outbox_record (record_id, origin_seq)`: the coalescing lookup (a record's unsent run). Keyed by the
 *   integer record id rather than (scope, collection, key): ids of new records are handed out in
 *   ascending order, so a new record's outbox entry is appended to the index instead of landing on a
 *   random leaf page (with random keys, a transaction of 100 writes dirtied ~100 pages of the old
 *   index; now ~1), and the entry is ~10 bytes instead of ~40.
 * - `meta`: counters (HLC, origin sequence, modification counter), sync state, backup chain.
 * - `critical_staged`, `critical_state`: critical operations (two-phase commit), see critical-staging.ts.
 */
/**
 * 3: `records.id INTEGER PRIMARY KEY` (the old rowid, kept), `outbox.record_id` and `outbox_record` on
 * (record_id, origin_seq); 2: `records.state` holds the compact stored form (stored-state.ts); 1 held
 * sync-core's whole JSON state. Older files are migrated at open (sqlite-local-store.ts `migrateSchema`).
 */
export const SCHEMA_VERSION = 3;

/**
 * Critical operations (two-phase commit, critical-staging.ts): what is staged or was decided, by
 * transaction (decided rows are pruned after a retention period; `meta` key `critical_pruned` keeps
 * the latest decision time pruned); and what this host holds, committed. Added without a schema version bump (an older
 * agent ignores them); also run on a restored backup made before they existed.
 */
export const CRITICAL_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS critical_staged (
  txid TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT,
  state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),
  prepared_at INTEGER,
  decided_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS critical_staged_prepared ON critical_staged (kind, name) WHERE state = 'prepared';
CREATE INDEX IF NOT EXISTS critical_staged_decided ON critical_staged (decided_at) WHERE state <> 'prepared';

CREATE TABLE IF NOT EXISTS critical_state (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  txid TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
) WITHOUT ROWID;

`;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS meta (
  k TEXT PRIMARY KEY,
  v TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS records (
  id INTEGER PRIMARY KEY,
  scope TEXT NOT NULL,
  collection TEXT NOT NULL,
  key TEXT NOT NULL,
  state TEXT NOT NULL,
  fields TEXT,
  hash TEXT NOT NULL,
  status TEXT NOT NULL,
  conflicted INTEGER NOT NULL DEFAULT 0,
  vv TEXT NOT NULL,
  mseq INTEGER NOT NULL,
  UNIQUE (scope, collection, key)
);
CREATE INDEX IF NOT EXISTS records_mseq ON records (mseq);
CREATE INDEX IF NOT EXISTS records_conflicted ON records (conflicted) WHERE conflicted = 1;

CREATE TABLE IF NOT EXISTS outbox (
  origin_seq INTEGER PRIMARY KEY,
  change_id TEXT NOT NULL UNIQUE,
  record_id INTEGER NOT NULL,
  scope TEXT NOT NULL,
  collection TEXT NOT NULL,
  key TEXT NOT NULL,
  change TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  frozen INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  last_attempt_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_record ON outbox (record_id, origin_seq);

CREATE TABLE IF NOT EXISTS capture (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  scope TEXT NOT NULL,
  collection TEXT NOT NULL,
  key TEXT NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('put', 'delete')),
  fields TEXT,
  captured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  -- An UPDATE of a record's fields: the fields it replaced (OLD.fields), so that only what the statement
  -- changed becomes a change (a patch). NULL for an INSERT (a replace) and a delete. Added without a
  -- schema version bump: an older agent ignores it and replaces, as it always did (openStore adds it).
  base TEXT
);

CREATE TABLE IF NOT EXISTS capture_rejected (
  seq INTEGER PRIMARY KEY,
  scope TEXT,
  collection TEXT,
  key TEXT,
  op TEXT,
  fields TEXT,
  captured_at TEXT,
  reason TEXT NOT NULL,
  rejected_at INTEGER NOT NULL
);

${CRITICAL_SCHEMA_SQL}
-- The writable surface for other local programs: the live records' visible fields.
-- Writes to it never touch records: INSTEAD OF triggers append them to capture.
CREATE VIEW IF NOT EXISTS visible_records AS
  SELECT scope, collection, key, fields FROM records WHERE status = 'live';

CREATE TRIGGER IF NOT EXISTS visible_records_insert INSTEAD OF INSERT ON visible_records
BEGIN
  SELECT RAISE(ABORT, 'visible_records: scope, collection and key are required')
    WHERE NEW.scope IS NULL OR NEW.collection IS NULL OR NEW.key IS NULL;
  SELECT RAISE(ABORT, 'visible_records: fields must be a JSON object')
    WHERE NEW.fields IS NULL OR json_valid(NEW.fields) = 0 OR json_type(NEW.fields) <> 'object';
  INSERT INTO capture (scope, collection, key, op, fields) VALUES (NEW.scope, NEW.collection, NEW.key, 'put', json(NEW.fields));
END;

CREATE TRIGGER IF NOT EXISTS visible_records_update INSTEAD OF UPDATE ON visible_records
BEGIN
  SELECT RAISE(ABORT, 'visible_records: scope, collection and key are required')
    WHERE NEW.scope IS NULL OR NEW.collection IS NULL OR NEW.key IS NULL;
  SELECT RAISE(ABORT, 'visible_records: fields must be a JSON object')
    WHERE NEW.fields IS NULL OR json_valid(NEW.fields) = 0 OR json_type(NEW.fields) <> 'object';
  INSERT INTO capture (scope, collection, key, op, fields)
    SELECT OLD.scope, OLD.collection, OLD.key, 'delete', NULL
    WHERE NEW.scope IS NOT OLD.scope OR NEW.collection IS NOT OLD.collection OR NEW.key IS NOT OLD.key;
  INSERT INTO capture (scope, collection, key, op, fields, base) VALUES (NEW.scope, NEW.collection, NEW.key, 'put', json(NEW.fields),
    CASE WHEN NEW.scope IS OLD.scope AND NEW.collection IS OLD.collection AND NEW.key IS OLD.key THEN json(OLD.fields) END);
END;

CREATE TRIGGER IF NOT EXISTS visible_records_delete INSTEAD OF DELETE ON visible_records
BEGIN
  INSERT INTO capture (scope, collection, key, op, fields) VALUES (OLD.scope, OLD.collection, OLD.key, 'delete', NULL);
END;
`;

/**
 * Tables copied whole into every incremental backup; `records` is copied by `mseq`. All are small:
 * the outbox and captures are bounded, `critical_staged` grows by one short row per critical
 * operation (its values are cleared once decided) and is not pruned yet.
 */
export const SNAPSHOT_TABLES = ['outbox', 'capture', 'capture_rejected', 'meta', 'critical_staged', 'critical_state'] as const;
