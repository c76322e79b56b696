import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { CriticalOperation } from '@fleet/contracts';
import { isFleetError } from '@fleet/errors';
import { restoreSqliteStore, SqliteLocalStore } from './sqlite-local-store';
import { TEST_PEM as PEM, testCertificate } from '@fleet/contracts/src/testing/critical';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const cert = (name: string, notAfter = '2030-01-01T00:00:00Z'): CriticalOperation => testCertificate(name, notAfter);
const tx = (n: number) => `0190a000-0000-7000-8000-${String(n).padStart(12, '0')}`;

let dir: string;
let store: SqliteLocalStore;
const open = () => SqliteLocalStore.open({ dataDir: dir, agentId: 'h1', now: () => NOW });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'critical-staging-'));
  store = open();
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent store: staging critical operations in SQLite (two-phase commit participant)', () => {
  it('stages on prepare (not yet held), holds on commit, and survives a restart in doubt in between', () => {
    expect(store.criticalPrepare(tx(1), cert('web'))).toEqual({ vote: 'yes' });
    expect(store.criticalEntries()).toEqual([]);
    // The agent process dies between the phases: the staging is on disk, the transaction in doubt.
    store.close();
    store = open();
    expect(store.criticalInDoubt()).toEqual([{ txid: tx(1), kind: 'certificate', name: 'web', preparedAt: NOW }]);
    expect(store.criticalDecide(tx(1), 'commit')).toBe('committed');
    expect(store.criticalEntries()).toEqual([{ kind: 'certificate', name: 'web', value: { pem: PEM, notAfter: '2030-01-01T00:00:00Z' }, txid: tx(1), updatedAt: NOW }]);
    expect(store.criticalInDoubt()).toEqual([]);
    // Repeats are acknowledged with the same state; a contrary decision is refused.
    expect(store.criticalDecide(tx(1), 'commit')).toBe('committed');
    expect(store.criticalPrepare(tx(1), cert('web'))).toEqual({ vote: 'no', reason: 'transaction already committed' });
    const err = (() => {
      try {
        return store.criticalDecide(tx(1), 'abort');
      } catch (e) {
        return e;
      }
    })();
    expect(isFleetError(err) && err.code).toBe('FLEET_TPC_003');
  });

  it('drops what was staged on abort; the entry held before stays', () => {
    store.criticalPrepare(tx(1), cert('web'));
    store.criticalDecide(tx(1), 'commit');
    expect(store.criticalPrepare(tx(2), cert('web', '2031-01-01T00:00:00Z'))).toEqual({ vote: 'yes' });
    expect(store.criticalDecide(tx(2), 'abort')).toBe('aborted');
    expect(store.criticalEntries().map((e) => e.txid)).toEqual([tx(1)]);
    expect(store.criticalInDoubt()).toEqual([]);
  });

  it('votes no on an expired certificate, and records the transaction aborted', () => {
    const vote = store.criticalPrepare(tx(3), cert('old', '2026-01-01T00:00:00Z'));
    expect(vote).toEqual({ vote: 'no', reason: 'certificate old expired at 2026-01-01T00:00:00Z (agent clock 2026-11-28T12:00:00.000Z)' });
    expect(store.criticalInDoubt()).toEqual([]);
    expect(store.criticalPrepare(tx(3), cert('old', '2030-01-01T00:00:00Z'))).toEqual({ vote: 'no', reason: 'transaction already aborted' });
    expect(store.criticalDecide(tx(3), 'abort')).toBe('aborted');
  });

  it('votes no while another transaction holds the same entry prepared', () => {
    expect(store.criticalPrepare(tx(4), cert('vpn'))).toEqual({ vote: 'yes' });
    expect(store.criticalPrepare(tx(5), cert('vpn'))).toEqual({ vote: 'no', reason: `certificate vpn is held prepared by transaction ${tx(4)}` });
    expect(store.criticalPrepare(tx(6), { kind: 'credential', name: 'vpn', value: { user: 'ops', hash: '$6$salt$abc' } })).toEqual({ vote: 'yes' });
  });

  it('acknowledges an abort of a transaction it never saw, and then refuses its late prepare', () => {
    expect(store.criticalDecide(tx(7), 'abort')).toBe('aborted');
    expect(store.criticalPrepare(tx(7), cert('late'))).toEqual({ vote: 'no', reason: 'transaction already aborted' });
  });

  it('refuses a commit it holds no staging for with FLEET_TPC_003 (lost, e.g. restored from an older backup)', () => {
    let err: unknown;
    try {
      store.criticalDecide(tx(8), 'commit');
    } catch (e) {
      err = e;
    }
    expect(isFleetError(err) && err.code).toBe('FLEET_TPC_003');
    expect(store.criticalEntries()).toEqual([]);
  });

  it('keeps a credential hash once: the staged copy is cleared when decided', () => {
    store.criticalPrepare(tx(9), { kind: 'credential', name: 'root', value: { user: 'root', hash: '$6$salt$secret' } });
    store.criticalDecide(tx(9), 'commit');
    store.close();
    const db = new Database(join(dir, 'agent.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT value FROM critical_staged WHERE txid = ?').get(tx(9))).toEqual({ value: null });
      expect(db.prepare("SELECT count(*) AS n FROM critical_state WHERE value LIKE '%secret%'").get()).toEqual({ n: 1 });
    } finally {
      db.close();
    }
    store = open();
  });

  it('a restore from a full backup made before the critical tables existed still restores the critical rows of a later incremental', () => {
    const full = store.backup({ full: true });
    store.criticalPrepare(tx(10), cert('web'));
    store.criticalDecide(tx(10), 'commit');
    store.backup();
    // What a version without critical operations wrote as the full backup: no critical tables in it.
    const old = new Database(full.file);
    old.exec('DROP TABLE critical_staged; DROP TABLE critical_state;');
    old.close();
    store.close();
    const target = mkdtempSync(join(tmpdir(), 'critical-restore-'));
    try {
      restoreSqliteStore(full.dir, target, { agentId: 'h1', now: () => NOW });
      const restored = SqliteLocalStore.open({ dataDir: target, agentId: 'h1', now: () => NOW });
      try {
        expect(restored.criticalEntries().map((e) => e.txid)).toEqual([tx(10)]);
      } finally {
        restored.close();
      }
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
    store = open();
  });
});
