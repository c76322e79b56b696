/**
 * Opening a schema-2 store (agents in the field have them) migrates it to schema 3: records keep their
 * rowid as their declared id, every outbox row gets its record's id, and the store reads, writes,
 * coalesces and captures direct SQL writes as before.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { RecordRef } from '@fleet/sync-core';
import { SCHEMA_VERSION } from './schema';
import { DB_FILE, SqliteLocalStore } from './sqlite-local-store';

/** The schema-2 SQL exactly as version 2 of the agent created it. */
const SCHEMA_V2 = `
CREATE TABLE IF NOT EXISTS meta (
  k TEXT PRIMARY KEY,
  v TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS records (
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
CREATE INDEX IF NOT EXISTS outbox_record ON outbox (scope, collection, key, origin_seq);

CREATE TABLE IF NOT EXISTS capture (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  scope TEXT NOT NULL,
  collection TEXT NOT NULL,
  key TEXT NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('put', 'delete')),
  fields TEXT,
  captured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
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
  INSERT INTO capture (scope, collection, key, op, fields) VALUES (NEW.scope, NEW.collection, NEW.key, 'put', json(NEW.fields));
END;

CREATE TRIGGER IF NOT EXISTS visible_records_delete INSTEAD OF DELETE ON visible_records
BEGIN
  INSERT INTO capture (scope, collection, key, op, fields) VALUES (OLD.scope, OLD.collection, OLD.key, 'delete', NULL);
END;
`;

const AGENT = 'agent-1';
const HOST = `host.${AGENT}`;
const ref = (key: string): RecordRef => ({ scope: HOST, collection: 'settings', key });

const roots: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'agent-store-migrate-'));
  roots.push(d);
  return d;
}
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

const RECORD_COLS = 'scope, collection, key, state, fields, hash, status, conflicted, vv, mseq';
const OUTBOX_COLS = 'origin_seq, change_id, scope, collection, key, change, created_at, frozen, attempts, last_error, last_attempt_at';

/** Rewrites the store in `dir` as a schema-2 file holding the same rows; record rowids scrambled (`rowidOf`). */
function downgradeToV2(dir: string, rowidOf: (key: string) => number): void {
  const file = join(dir, DB_FILE);
  const v3 = new Database(file);
  const records = v3.prepare(`SELECT ${RECORD_COLS} FROM records`).all() as Record<string, unknown>[];
  const outbox = v3.prepare(`SELECT ${OUTBOX_COLS} FROM outbox`).all() as Record<string, unknown>[];
  const meta = v3.prepare('SELECT k, v FROM meta').all() as { k: string; v: string }[];
  const capture = v3.prepare('SELECT * FROM capture').all();
  v3.close();
  rmSync(file);
  rmSync(`${file}-wal`, { force: true });
  rmSync(`${file}-shm`, { force: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(SCHEMA_V2);
  const insR = db.prepare(`INSERT INTO records (rowid, ${RECORD_COLS}) VALUES (?, ${RECORD_COLS.split(', ').map(() => '?').join(', ')})`);
  for (const r of records) insR.run(rowidOf(r['key'] as string), ...RECORD_COLS.split(', ').map((c) => r[c]));
  const insO = db.prepare(`INSERT INTO outbox (${OUTBOX_COLS}) VALUES (${OUTBOX_COLS.split(', ').map(() => '?').join(', ')})`);
  for (const o of outbox) insO.run(...OUTBOX_COLS.split(', ').map((c) => o[c]));
  const insM = db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)');
  for (const m of meta) insM.run(m.k, m.k === 'schema_version' ? '2' : m.v);
  insM.run('backup_chain', JSON.stringify({ fullId: 'x', dir: '/nowhere', lastId: 'x', lastMarker: 0, count: 0 }));
  expect(capture).toEqual([]);
  db.close();
}

describe('schema 2 -> 3 migration', () => {
  it('keeps every record (its rowid as its id) and outbox row, links the outbox to records, and works as before', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, coalesceAbove: 1000 });
    s.put(ref('a'), { x: 1 });
    s.put(ref('b'), { y: 'two' });
    s.patch(ref('a'), { x: 2, z: [1, 2] });
    expect(s.peekOutbox(10).length).toBe(3); // frozen: handed to the sync manager
    s.put(ref('a'), { x: 3 });
    s.put(ref('a'), { x: 4 });
    s.delete(ref('b'));
    s.put(ref('c'), { n: 0 });
    const records = ['a', 'b', 'c'].map((k) => s.get(ref(k)));
    const states = ['a', 'b', 'c'].map((k) => s.getState(ref(k)));
    s.close();
    const before = new Database(join(dir, DB_FILE));
    const outboxBefore = before.prepare(`SELECT ${OUTBOX_COLS} FROM outbox ORDER BY origin_seq`).all();
    before.close();
    const rowids: Record<string, number> = { a: 907, b: 12, c: 5000 };
    downgradeToV2(dir, (k) => rowids[k] as number);

    const m = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, coalesceAbove: 1000 });
    const db = new Database(join(dir, DB_FILE), { readonly: true });
    try {
      expect(db.prepare("SELECT v FROM meta WHERE k = 'schema_version'").pluck().get()).toBe(String(SCHEMA_VERSION));
      expect(db.prepare("SELECT v FROM meta WHERE k = 'backup_chain'").pluck().get()).toBeUndefined(); // a new chain starts
      expect(db.prepare('SELECT key, id FROM records ORDER BY key').all()).toEqual(Object.entries(rowids).map(([key, id]) => ({ key, id })));
      expect(db.prepare(`SELECT ${OUTBOX_COLS} FROM outbox ORDER BY origin_seq`).all()).toEqual(outboxBefore);
      expect(db.prepare('SELECT o.origin_seq, r.key FROM outbox o JOIN records r ON r.id = o.record_id ORDER BY o.origin_seq').all()).toEqual(
        (outboxBefore as { origin_seq: number; key: string }[]).map((o) => ({ origin_seq: o.origin_seq, key: o.key })),
      );
      expect(db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index', 'view', 'trigger') AND name LIKE '%v2%'").all()).toEqual([]);
      expect(db.prepare("SELECT sql FROM sqlite_master WHERE name = 'outbox_record'").pluck().get()).toContain('(record_id, origin_seq)');
      expect((db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").pluck().get() as number)).toBe(3);
    } finally {
      db.close();
    }
    expect(['a', 'b', 'c'].map((k) => m.get(ref(k)))).toEqual(records);
    expect(['a', 'b', 'c'].map((k) => m.getState(ref(k)))).toEqual(states);

    // The unsent run of 'a' (two unfrozen rows) is found by record id and coalesced with a new write.
    expect(m.coalesceOutbox()).toBe(1);
    const sizeBefore = m.outboxStats().size;
    m.put(ref('d'), { new: true });
    expect(m.outboxStats().size).toBe(sizeBefore + 1);
    m.close();
    const small = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, coalesceAbove: 1 });
    small.put(ref('a'), { x: 5 });
    expect(small.outboxStats().size).toBe(sizeBefore + 1); // merged into the unfrozen row of 'a'
    const queued = small.peekOutbox(100);
    expect(queued.slice(0, 3).map((c) => c.key)).toEqual(['a', 'b', 'a']);
    const unsentA = queued.slice(3).filter((c) => c.key === 'a');
    expect(unsentA.length).toBe(1);
    expect(unsentA[0]?.fields).toEqual({ x: 5 });
    expect(small.get(ref('a'))?.fields).toEqual({ x: 5 }); // put replaces: z went with the first unsent put

    // Direct SQL writes through the recreated view and its triggers.
    const other = new Database(join(dir, DB_FILE));
    other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run(HOST, 'settings', 'e', '{"via":"sql"}');
    other.close();
    expect(small.processCaptured().processed).toBe(1);
    expect(small.get(ref('e'))?.fields).toEqual({ via: 'sql' });
    small.close();
  });

  it('migrates an empty schema-2 store and a store whose outbox is empty', () => {
    const dir = tempDir();
    SqliteLocalStore.open({ dataDir: dir, agentId: AGENT }).close();
    downgradeToV2(dir, () => 1);
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    s.put(ref('a'), { x: 1 });
    expect(s.get(ref('a'))?.fields).toEqual({ x: 1 });
    expect(s.peekOutbox(10).map((c) => c.key)).toEqual(['a']);
    s.close();
  });
});

describe('capture.base (no version bump)', () => {
  it('a store made before it gets the column and the new UPDATE trigger, starts a new backup chain; a row captured before stays a replace, one captured after is a patch', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    s.put(ref('r'), { a: 1, b: 1 });
    s.backup({ full: true });
    s.close();
    // Back to the shape the previous version made: no column, the UPDATE trigger that captured a replace.
    const old = new Database(join(dir, DB_FILE));
    const oldTrigger = /CREATE TRIGGER IF NOT EXISTS visible_records_update[\s\S]*?END;/.exec(SCHEMA_V2)?.[0] as string;
    old.exec(`DROP TRIGGER visible_records_update; ALTER TABLE capture DROP COLUMN base; ${oldTrigger}`);
    expect(old.prepare("SELECT count(*) FROM meta WHERE k = 'backup_chain'").pluck().get()).toBe(1);
    // Captured by the previous version: a replace of the whole record.
    old.prepare("UPDATE visible_records SET fields = json_set(fields, '$.b', 2) WHERE key = 'r'").run();
    old.close();

    const m = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const db = new Database(join(dir, DB_FILE));
    try {
      expect(db.prepare('SELECT name FROM pragma_table_info(?) WHERE name = ?').pluck().get('capture', 'base')).toBe('base');
      expect(db.prepare("SELECT sql FROM sqlite_master WHERE name = 'visible_records_update'").pluck().get()).toContain('base');
      expect(db.prepare("SELECT count(*) FROM meta WHERE k = 'backup_chain'").pluck().get()).toBe(0);
      expect(db.prepare('SELECT count(*) FROM capture').pluck().get()).toBe(0); // processed at open
    } catch (e) {
      db.close();
      throw e;
    }
    expect(m.get(ref('r'))?.fields).toEqual({ a: 1, b: 2 });
    expect(m.peekOutbox(10).map((c) => [c.fields, c.unset ?? []])).toEqual([
      [{ a: 1, b: 1 }, []],
      [{ b: 2 }, []], // the replace wrote only what differed from the record then
    ]);
    // Captured now: a patch of what the statement changed.
    db.prepare("UPDATE visible_records SET fields = json_remove(fields, '$.a') WHERE key = 'r'").run();
    db.close();
    expect(m.processCaptured().processed).toBe(1);
    expect(m.peekOutbox(10).slice(2).map((c) => [c.fields, c.unset ?? []])).toEqual([[{}, ['a']]]);
    expect(m.backup().kind).toBe('full'); // a new chain
    m.close();
  });
});
