import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { isFleetError } from '@fleet/errors';
import { emptyRecord, encodeRecordState, makeLocalChange } from '@fleet/sync-core';
import type { RecordRef, RecordState } from '@fleet/sync-core';
import { DB_FILE, RESTORE_SEQ_GAP, restoreSqliteStore, SqliteLocalStore } from './sqlite-local-store';
import { SCHEMA_VERSION } from './schema';
import type { SqliteLocalStoreOptions } from './sqlite-local-store';
import { describeLocalStoreConformance } from './testing/conformance';

const roots: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'agent-store-'));
  roots.push(d);
  return d;
}
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

describeLocalStoreConformance('SqliteLocalStore', (o) => {
  const dataDir = tempDir();
  const opts = (x: Partial<typeof o> = {}): SqliteLocalStoreOptions => {
    const m = { ...o, ...x };
    return { dataDir, agentId: m.agentId, now: m.now, ...(m.outboxMax !== undefined ? { outboxMax: m.outboxMax } : {}), ...(m.coalesceAbove !== undefined ? { coalesceAbove: m.coalesceAbove } : {}) };
  };
  let store = SqliteLocalStore.open(opts());
  return {
    get store() {
      return store;
    },
    reopen(x) {
      store.close();
      store = SqliteLocalStore.open(opts(x));
      return store;
    },
    cleanup() {
      store.close();
    },
  };
});

const AGENT = 'agent-1';
const HOST = `host.${AGENT}`;
const ref = (key: string, collection = 'settings'): RecordRef => ({ scope: HOST, collection, key });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isFleetError(e) ? e.code : `not a FleetError: ${String(e)}`;
  }
  return undefined;
}

describe('SqliteLocalStore on disk', () => {
  it('opens in WAL mode with the durability settings it documents', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    s.close();
    const db = new Database(join(dir, DB_FILE));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('stores compact states, converts a schema-1 store at open, and refuses a corrupted state', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const a = ref('a', 'c');
    s.put(a, { x: 1, y: 'two', z: { deep: [1, 2] } });
    s.patch(a, { x: 3 }, ['y']);
    s.put({ ...a, key: 'b' }, { n: 1 });
    s.delete({ ...a, key: 'b' });
    const before = [s.getState(a), s.getState({ ...a, key: 'b' })];
    const rows = [s.get(a), s.get({ ...a, key: 'b' })];
    s.close();
    // Rewrite the file as schema 1 held it: sync-core's whole JSON state.
    const db = new Database(join(dir, DB_FILE));
    const stored = db.prepare<[], { state: string }>("SELECT state FROM records WHERE key = 'a'").get()?.state ?? '';
    expect(stored.length).toBeLessThan(400);
    expect(stored).not.toContain('view');
    db.prepare("UPDATE records SET state = ? WHERE key = 'a'").run(encodeRecordState(before[0] as RecordState));
    db.prepare("UPDATE records SET state = ? WHERE key = 'b'").run(encodeRecordState(before[1] as RecordState));
    db.prepare("UPDATE meta SET v = '1' WHERE k = 'schema_version'").run();
    db.close();
    const again = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    expect([again.getState(a), again.getState({ ...a, key: 'b' })].map((x) => encodeRecordState(x as RecordState))).toEqual(before.map((x) => encodeRecordState(x as RecordState)));
    expect([again.get(a), again.get({ ...a, key: 'b' })]).toEqual(rows);
    again.close();
    const db2 = new Database(join(dir, DB_FILE));
    expect(db2.prepare<[], { v: string }>("SELECT v FROM meta WHERE k = 'schema_version'").get()?.v).toBe(String(SCHEMA_VERSION));
    db2.prepare("UPDATE records SET state = ? WHERE key = 'a'").run('{"w":[],"x":[[0,1]]}');
    db2.close();
    const third = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    try {
      expect(codeOf(() => third.getState(a))).toBe('FLEET_STATE_001');
      expect(codeOf(() => third.put(a, { x: 4 }))).toBe('FLEET_STATE_001');
    } finally {
      third.close();
    }
  });

  it('a store from before the clock floor gets it once at open: a store that wrote keeps its ownFrom, one that never wrote holds its changes from the floor on', () => {
    const t = 1_800_000_000_000;
    const legacy = (wrote: boolean) => {
      const dir = tempDir();
      const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now: () => t - 1000 });
      s.close();
      // what the previous version left: small sequences, ownFrom 1, no seq_floor
      const db = new Database(join(dir, DB_FILE));
      db.prepare("DELETE FROM meta WHERE k = 'seq_floor'").run();
      const c = JSON.parse(db.prepare("SELECT v FROM meta WHERE k = 'counters'").pluck().get() as string) as Record<string, unknown>;
      db.prepare("UPDATE meta SET v = ? WHERE k = 'counters'").run(JSON.stringify({ ...c, originSeq: wrote ? 3 : 0 }));
      const sync = JSON.parse(db.prepare("SELECT v FROM meta WHERE k = 'sync_state'").pluck().get() as string) as Record<string, unknown>;
      db.prepare("UPDATE meta SET v = ? WHERE k = 'sync_state'").run(JSON.stringify({ ...sync, ownFrom: 1 }));
      db.close();
      return dir;
    };
    const a = SqliteLocalStore.open({ dataDir: legacy(true), agentId: AGENT, now: () => t });
    expect(a.syncState().ownFrom).toBe(1); // it may hold its changes from 1 on: still says so
    expect(a.put(ref('x'), { v: 1 })?.originSeq).toBe(t * 1000 + 1);
    a.close();
    const b = SqliteLocalStore.open({ dataDir: legacy(false), agentId: AGENT, now: () => t });
    expect(b.syncState().ownFrom).toBe(t * 1000 + 1);
    b.close();
  });

  it('a restore never numbers below the clock floor (a backup older than a reinstall)', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now: () => 1_700_000_000_000 });
    s.put(ref('a'), { v: 1 });
    const full = s.backup({ full: true });
    s.close();
    const later = 1_700_000_000_000 + 30 * 86_400_000; // a month later: more than a billion microseconds
    restoreSqliteStore(full.dir, dir, { agentId: AGENT, now: () => later });
    const r = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now: () => later });
    expect(r.syncState().ownFrom).toBe(later * 1000 + 1);
    r.setSyncState({ needsVerification: false });
    expect(r.put(ref('b'), { v: 1 })?.originSeq).toBe(later * 1000 + 1);
    r.close();
  });

  it('a store from before `ownFrom` counts its own changes from its next one (it may have been restored or had its floor raised)', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const third = ['a', 'b', 'c'].map((k) => s.put(ref(k), { v: 1 }))[2]?.originSeq as number;
    s.close();
    const db = new Database(join(dir, DB_FILE));
    const raw = JSON.parse(db.prepare("SELECT v FROM meta WHERE k = 'sync_state'").pluck().get() as string) as Record<string, unknown>;
    delete raw['ownFrom'];
    db.prepare("UPDATE meta SET v = ? WHERE k = 'sync_state'").run(JSON.stringify(raw));
    db.close();
    const r = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    expect(r.syncState().ownFrom).toBe(third + 1);
    expect(r.put(ref('d'), { v: 1 })?.originSeq).toBe(third + 1);
    r.close();
  });

  it('turns direct SQL writes from another connection into changes', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    s.put(ref('existing'), { a: 1, b: 2 });
    const other = new Database(join(dir, DB_FILE));
    other.pragma('busy_timeout = 5000');
    other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run(HOST, 'settings', 'from-sql', '{"x": 1}');
    other.prepare("UPDATE visible_records SET fields = json_set(fields, '$.b', 20, '$.c', 30) WHERE scope = ? AND collection = ? AND key = ?").run(HOST, 'settings', 'existing');
    other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run('fleet', 'settings', 'not-mine', '{"x": 1}');
    expect(() => other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run(HOST, 'settings', 'bad', 'not json')).toThrow(/JSON object/);
    expect(() => other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run(HOST, 'settings', 'bad', '[1]')).toThrow(/JSON object/);
    // The records themselves are untouched until processed.
    expect(s.get(ref('from-sql'))).toBeNull();
    expect(s.outboxStats().capturedPending).toBe(3);
    const events: string[] = [];
    s.watch((e) => events.push(`${e.source}:${e.ref.key}:${e.record.status}`));
    expect(s.processCaptured()).toEqual({ processed: 2, rejected: 1, remaining: 0 });
    // The view shows processed records, so a row is deletable through it once processed
    // (`changes` is 0: SQLite does not count rows written by INSTEAD OF triggers).
    expect(other.prepare('DELETE FROM visible_records WHERE key = ?').run('from-sql').changes).toBe(0);
    expect(s.processCaptured()).toEqual({ processed: 1, rejected: 0, remaining: 0 });
    expect(events).toEqual(['captured:from-sql:live', 'captured:existing:live', 'captured:from-sql:deleted']);
    expect(s.get(ref('existing'))?.fields).toEqual({ a: 1, b: 20, c: 30 });
    expect(s.get(ref('from-sql'))?.status).toBe('deleted');
    const queued = s.peekOutbox(10);
    expect(queued.map((c) => [c.key, c.op])).toEqual([
      ['existing', 'put'],
      ['from-sql', 'put'],
      ['existing', 'put'],
      ['from-sql', 'delete'],
    ]);
    expect(queued[2]).toMatchObject({ fields: { b: 20, c: 30 } });
    expect(s.outboxStats()).toMatchObject({ capturedPending: 0, capturedRejected: 1 });
    const rejected = other.prepare('SELECT key, reason FROM capture_rejected').all() as { key: string; reason: string }[];
    expect(rejected).toEqual([{ key: 'not-mine', reason: expect.stringMatching(/^FLEET_AUTH_003/) as unknown as string }]);
    other.close();
    s.close();
  });

  it('a captured UPDATE changes only what the statement changed: a pulled change of another field, made before the capture is processed, is kept', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    s.put(ref('r'), { a: 1, b: 1, gone: true, same: 's' });
    const other = new Database(join(dir, DB_FILE));
    other.pragma('busy_timeout = 5000');
    // The program sets b, removes gone, and writes same with the value it already has.
    other.prepare("UPDATE visible_records SET fields = json_remove(json_set(fields, '$.b', 2, '$.same', 's'), '$.gone') WHERE key = ?").run('r');
    // Before the capture is processed, a pull brings the server's write of a (and a new field).
    const mine = s.getState(ref('r')) as RecordState;
    const server = makeLocalChange(mine, { op: 'put', fields: { a: 9, added: 'by server' } }, { origin: 'server', originSeq: 1, changeId: '0190a000-0000-7000-8000-0000000000aa', hlc: `${'9'.repeat(15)}-000000-server`, protocol: 1 }, { default: 'lww' }).state;
    s.applyRemote([{ ref: ref('r'), state: server }], 1);
    expect(s.processCaptured()).toEqual({ processed: 1, rejected: 0, remaining: 0 });
    expect(s.get(ref('r'))?.fields).toEqual({ a: 9, b: 2, added: 'by server', same: 's' });
    const [, captured] = s.peekOutbox(10);
    expect(captured).toMatchObject({ op: 'put', fields: { b: 2 }, unset: ['gone'] });
    // An UPDATE that changes nothing is no change; an INSERT is still a replace.
    other.prepare("UPDATE visible_records SET fields = json_set(fields, '$.b', 2) WHERE key = ?").run('r');
    expect(s.processCaptured()).toEqual({ processed: 1, rejected: 0, remaining: 0 });
    expect(s.outboxSize()).toBe(2);
    other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run(HOST, 'settings', 'r', '{"only": 1}');
    s.processCaptured();
    expect(s.get(ref('r'))?.fields).toEqual({ only: 1 });
    // An UPDATE of a record a pull deleted before the capture was processed: the whole record as the
    // statement wrote it comes back, not a record of the one field it changed.
    other.prepare("UPDATE visible_records SET fields = json_set(fields, '$.two', 2) WHERE key = ?").run('r');
    const live = s.getState(ref('r')) as RecordState;
    const deleted = makeLocalChange(live, { op: 'delete' }, { origin: 'server', originSeq: 2, changeId: '0190a000-0000-7000-8000-0000000000ab', hlc: `${'9'.repeat(15)}-000001-server`, protocol: 1 }, { default: 'lww' }).state;
    s.applyRemote([{ ref: ref('r'), state: deleted }], 2);
    expect(s.get(ref('r'))?.status).toBe('deleted');
    s.processCaptured();
    expect(s.get(ref('r'))).toMatchObject({ status: 'live', fields: { only: 1, two: 2 } });
    other.close();
    s.close();
  });

  it('processes captured writes at open, and holds them while the outbox is full', () => {
    const dir = tempDir();
    let s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, outboxMax: 1, coalesceAbove: 1 });
    s.put(ref('a'), { n: 1 });
    s.peekOutbox(1); // frozen: nothing can merge
    s.close();
    const other = new Database(join(dir, DB_FILE));
    other.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run(HOST, 'settings', 'b', '{"n": 2}');
    other.close();
    s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, outboxMax: 1, coalesceAbove: 1 });
    expect(s.outboxStats()).toMatchObject({ size: 1, capturedPending: 1 });
    s.markSent(s.peekOutbox(1).map((c) => c.changeId));
    expect(s.processCaptured()).toEqual({ processed: 1, rejected: 0, remaining: 0 });
    expect(s.get(ref('b'))?.fields).toEqual({ n: 2 });
    s.close();
  });

  it('backs up (full, then incremental) and restores the state as of the last backup, flagged for verification', () => {
    const dir = tempDir();
    let t = 1_700_000_000_000;
    const now = () => t++;
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now });
    const floor = s.syncState().ownFrom - 1;
    s.put(ref('a'), { v: 1 });
    s.put(ref('b'), { v: 1 });
    s.setSyncState({ cursor: 41, lastSyncAt: 5 });
    const full = s.backup({ full: true });
    expect(full).toMatchObject({ kind: 'full', parentId: null, records: 2, outbox: 2 });
    s.put(ref('b'), { v: 2 });
    s.put(ref('c'), { v: 1 });
    s.markSent(s.peekOutbox(1).map((c) => c.changeId)); // 'a' sent after the full backup
    const inc = s.backup();
    expect(inc).toMatchObject({ kind: 'incremental', fullId: full.id, parentId: full.id, dir: full.dir, records: 2, outbox: 3 });
    s.put(ref('c'), { v: 2 });
    s.put(ref('d'), { v: 1 });
    const inc2Before = s.outboxStats().size;
    expect(inc2Before).toBe(5);
    const lastSeq = s.peekOutbox(100).at(-1)?.originSeq ?? 0;
    s.close();

    const result = restoreSqliteStore(full.dir, dir, { agentId: AGENT, now });
    expect(result.applied).toEqual([full.id, inc.id]);
    expect(result.previousMovedTo).toMatch(/before-restore/);
    const r = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now });
    expect(r.get(ref('a'))?.fields).toEqual({ v: 1 });
    expect(r.get(ref('b'))?.fields).toEqual({ v: 2 });
    expect(r.get(ref('c'))?.fields).toEqual({ v: 1 });
    expect(r.get(ref('d'))).toBeNull();
    expect(r.outboxStats().size).toBe(3);
    // The writes after the backup are not held: pulls may leave out only what this store assigns from now on.
    // (originSettled as backed up: this store never synced, so its first sync still settles its numbers)
    expect(r.syncState()).toEqual({ lastSyncAt: 5, lastPullAt: null, cursor: null, needsVerification: true, ownFrom: floor + 4 + RESTORE_SEQ_GAP + 1, originSettled: false });
    expect(codeOf(() => r.put(ref('e'), { v: 1 }))).toBe('FLEET_AGENT_004');
    r.setSyncState({ needsVerification: false });
    const next = r.put(ref('e'), { v: 1 });
    // Sequence numbers the lost writes used (up to lastSeq) are never handed out again.
    expect(next?.originSeq).toBe(floor + 4 + RESTORE_SEQ_GAP + 1);
    expect(next?.originSeq).toBeGreaterThan(lastSeq);
    // After a restore the next backup starts a new chain.
    expect(r.backup().kind).toBe('full');
    r.close();
    // The store that was replaced is kept.
    expect(readdirSync(dir).some((f) => f.includes('before-restore'))).toBe(true);
  });

  it('replaceFromServer undoes a corruption a join keeps (another value under the same stamp, damaged derived columns); a drop makes the next backup a full one, so a restore does not bring the record back', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const fleet = (key: string): RecordRef => ({ scope: 'fleet', collection: 'settings', key });
    // The server's states, as pulled.
    const states = ['a', 'b', 'ghost'].map(
      (k, i) =>
        makeLocalChange(emptyRecord(fleet(k)), { op: 'put', fields: { v: 1 } }, { origin: 'server', originSeq: i + 1, changeId: `0190a000-0000-7000-8000-00000000000${i + 1}`, hlc: `001700000000000-00000${i}-server`, protocol: 1 }, { default: 'lww' }).state,
    );
    s.applyRemote(states.map((st) => ({ ref: st.ref, state: st })), 3);
    const full = s.backup({ full: true });
    const healthy = [s.get(fleet('a')), s.get(fleet('b'))];
    s.close();
    const db = new Database(join(dir, DB_FILE));
    const row = db.prepare<[], { state: string }>("SELECT state FROM records WHERE key = 'a'").get() as { state: string };
    db.prepare("UPDATE records SET state = ?, fields = '{\"v\":99}' WHERE key = 'a'").run(row.state.replace('"v":[[0,1]]', '"v":[[0,99]]'));
    db.prepare("UPDATE records SET hash = 'damaged', fields = '{\"v\":7}' WHERE key = 'b'").run();
    db.close();
    const t = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    try {
      // What a join does with it: nothing (equal stamps, and equal state texts for 'b').
      t.applyRemote(states.slice(0, 2).map((st) => ({ ref: st.ref, state: st })), 3);
      expect(t.get(fleet('a'))?.fields).toEqual({ v: 99 });
      expect(t.get(fleet('b'))?.hash).toBe('damaged');
      expect(t.replaceFromServer(states.slice(0, 2).map((st) => ({ ref: st.ref, state: st })), [fleet('ghost')])).toEqual({ replaced: 2, dropped: 1 });
      expect([t.get(fleet('a')), t.get(fleet('b'))]).toEqual(healthy);
      expect(t.get(fleet('ghost'))).toBeNull();
      expect(t.syncState().cursor).toBe(3);
      // A row removed is something an incremental backup (rows written since) cannot carry: the next one is full.
      const next = t.backup();
      expect(next).toMatchObject({ kind: 'full', records: 2 });
      expect(next.fullId).not.toBe(full.fullId);
      expect(t.backup().kind).toBe('incremental'); // and the chain goes on from it
      t.close();
      restoreSqliteStore(next.dir, dir, { agentId: AGENT });
      const r = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
      expect(r.get(fleet('ghost'))).toBeNull();
      expect(r.get(fleet('a'))?.fields).toEqual({ v: 1 });
      r.close();
    } finally {
      t.close(); // (again: close is idempotent)
    }
  });

  it('two connections writing one store (`agent put` beside `agent run`): each reads the counters the other committed, so no number repeats', () => {
    const dir = tempDir();
    const run = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const put = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const made = [];
    for (let i = 0; i < 6; i++) {
      const w = i % 3 === 0 ? put : run; // interleaved, each after the other's commit
      made.push(w.put(ref(`k${i}`), { v: i }));
      made.push(w.patch(ref('shared'), { [`f${i}`]: i }));
    }
    const seqs = made.map((c) => c?.originSeq ?? 0);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs); // in commit order
    expect(run.outboxStats().size).toBe(12);
    const clocks = made.map((c) => c?.hlc ?? '');
    expect([...clocks].sort()).toEqual(clocks); // the HLC never goes back either
    // the record both wrote holds every field (each write saw the other's)
    expect(run.get(ref('shared'))?.fields).toEqual({ f0: 0, f1: 1, f2: 2, f3: 3, f4: 4, f5: 5 });
    put.close();
    run.close();
  });

  it('a restored store that never synced settles its restored queue too (numbered below its ownFrom) above what the log holds', () => {
    const dir = tempDir();
    const behind = () => 978_307_200_000; // 2001: a clock far behind
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now: behind });
    const floor = behind() * 1000;
    s.put(ref('a'), { v: 1 });
    s.put(ref('b'), { v: 1 });
    const full = s.backup({ full: true });
    s.close();
    restoreSqliteStore(full.dir, dir, { agentId: AGENT, now: behind });
    const r = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, now: behind });
    expect(r.syncState()).toMatchObject({ originSettled: false, ownFrom: floor + 2 + RESTORE_SEQ_GAP + 1 });
    // An earlier store of this agent id logged numbers among the restored queue's (floor + 1, floor + 2) and far above.
    const lastLogged = floor + 5;
    const settled = r.settleOrigin(lastLogged);
    expect(settled.renumbered).toBe(2);
    const queued = r.peekOutbox(10);
    expect(queued.every((c) => c.originSeq > lastLogged + RESTORE_SEQ_GAP)).toBe(true);
    expect(r.syncState().ownFrom).toBeGreaterThan(lastLogged);
    r.setSyncState({ needsVerification: false });
    expect(r.put(ref('c'), { v: 1 })?.originSeq).toBeGreaterThan(Math.max(...queued.map((c) => c.originSeq)));
    r.close();
  });

  it('refuses a broken backup chain', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    s.put(ref('a'), { v: 1 });
    const full = s.backup({ full: true });
    s.put(ref('a'), { v: 2 });
    s.backup();
    s.put(ref('a'), { v: 3 });
    s.backup();
    s.close();
    rmSync(join(full.dir, 'inc-000001.db'));
    expect(codeOf(() => restoreSqliteStore(full.dir, tempDir()))).toBe('FLEET_AGENT_006');
    expect(codeOf(() => restoreSqliteStore(tempDir(), tempDir()))).toBe('FLEET_AGENT_006');
    expect(codeOf(() => restoreSqliteStore(full.dir, tempDir(), { agentId: 'someone-else' }))).toBe('FLEET_AGENT_006');
  });

  it('reports an unwritable data directory, another agent\'s store, and a file that is not a database', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), 'x');
    expect(codeOf(() => SqliteLocalStore.open({ dataDir: join(dir, 'file', 'sub'), agentId: AGENT }))).toBe('FLEET_AGENT_001');
    expect(codeOf(() => SqliteLocalStore.open({ dataDir: join(dir, 'file'), agentId: AGENT }))).toBe('FLEET_AGENT_001');
    expect(codeOf(() => SqliteLocalStore.open({ dataDir: dir, agentId: 'bad.id' }))).toBe('FLEET_CONFIG_001');
    SqliteLocalStore.open({ dataDir: dir, agentId: AGENT }).close();
    expect(codeOf(() => SqliteLocalStore.open({ dataDir: dir, agentId: 'agent-2' }))).toBe('FLEET_AGENT_007');
    const junk = join(tempDir(), 'junk');
    mkdirSync(junk);
    writeFileSync(join(junk, DB_FILE), 'this is not a database, just text long enough to have a header '.repeat(20));
    expect(codeOf(() => SqliteLocalStore.open({ dataDir: junk, agentId: AGENT }))).toBe('FLEET_AGENT_007');
  });

  it('reports a full disk (SQLITE_FULL via a size quota) and rolls the write back whole', () => {
    const dir = tempDir();
    // An empty store is ~68 KiB (a page per table and index); the quota leaves room for a few dozen writes.
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, maxDbBytes: 160 * 1024, outboxMax: 1_000_000 });
    let code: string | undefined;
    let written = 0;
    for (let i = 0; i < 10_000 && code === undefined; i++) {
      code = codeOf(() => s.put(ref(`k${i}`), { blob: 'x'.repeat(2000) }));
      if (code === undefined) written++;
    }
    expect(code).toBe('FLEET_AGENT_002');
    expect(written).toBeGreaterThan(0);
    const stats = s.outboxStats();
    expect(stats.size).toBe(written);
    expect(s.query(HOST, 'settings', { limit: 100_000 })).toHaveLength(written);
    s.close();
  });

  it('a coalescing that fails half-way (the run deleted, the merged row refused) rolls the transaction back even if its caller swallows the error', () => {
    const dir = tempDir();
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, coalesceAbove: 2 });
    s.put(ref('r'), { boom: 1 });
    s.put(ref('r'), { boom: 1, a: 2 }); // two unsent rows of r: coalesced at the next write past the bound
    // Stands in for a full disk: the merged row's insert fails, after the run was deleted.
    const other = new Database(join(dir, DB_FILE));
    other.exec(`CREATE TRIGGER fail_merged BEFORE INSERT ON outbox WHEN NEW.change LIKE '%"a":2%' AND NEW.change LIKE '%"boom":1%' BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END`);
    other.close();
    const before = s.peekOutbox(0).length + s.outboxSize();
    expect(before).toBe(2);
    expect(() =>
      s.transaction(() => {
        try {
          s.put(ref('x'), { v: 1 });
        } catch {
          // swallowed by the caller
        }
      }),
    ).toThrow(/failed part-way/);
    expect(s.outboxSize()).toBe(2); // r's two rows are still there
    expect(s.peekOutbox(10).map((c) => c.key)).toEqual(['r', 'r']);
    expect(s.get(ref('x'))).toBeNull();
    s.close();
  });

  it('loses nothing and applies nothing twice when the process is killed mid-way (SIGKILL)', () => {
    const dir = tempDir();
    const script = join(tempDir(), 'crash.ts');
    const lib = resolve(__dirname, 'index.ts');
    writeFileSync(
      script,
      `import { SqliteLocalStore } from ${JSON.stringify(lib)};
const s = SqliteLocalStore.open({ dataDir: ${JSON.stringify(dir)}, agentId: 'agent-1' });
for (let t = 0; ; t++) {
  s.transaction(() => { for (let i = 0; i < 50; i++) s.put({ scope: 'host.agent-1', collection: 'c', key: 't' + t + '-' + i }, { t, i }); });
  if (t === 7) { s.transaction(() => { s.put({ scope: 'host.agent-1', collection: 'c', key: 'half' }, { x: 1 }); process.kill(process.pid, 'SIGKILL'); }); }
}
`,
    );
    const root = resolve(__dirname, '../../..');
    const r = spawnSync(process.execPath, ['-r', join(root, 'scripts/register.js'), script], { cwd: root, encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    const s = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
    const records = s.query(HOST, 'c', { limit: 10_000 });
    const outbox = s.peekOutbox(10_000);
    expect(records).toHaveLength(400);
    expect(outbox).toHaveLength(400);
    expect(s.get({ scope: HOST, collection: 'c', key: 'half' })).toBeNull();
    expect(new Set(outbox.map((c) => c.changeId)).size).toBe(400);
    const floor = s.syncState().ownFrom - 1;
    expect(outbox.map((c) => c.originSeq)).toEqual(Array.from({ length: 400 }, (_, i) => floor + i + 1));
    const next = s.put({ scope: HOST, collection: 'c', key: 'after' }, { ok: true });
    expect(next?.originSeq).toBe(floor + 401);
    s.close();
    void execFileSync;
  });
});
