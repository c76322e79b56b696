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

describe('agent store: pruning decided critical transactions', () => {
  const DAY = 86_400_000;
  const RETENTION = 30 * DAY;
  let clock = NOW;
  let s: SqliteLocalStore;
  let pdir: string;
  const staged = (d: string) => {
    const db = new Database(join(d, 'agent.db'), { readonly: true });
    try {
      return (db.prepare('SELECT txid, state FROM critical_staged ORDER BY txid').all() as { txid: string; state: string }[]).map((r) => `${r.txid}:${r.state}`);
    } finally {
      db.close();
    }
  };
  const codeOf = (fn: () => unknown) => {
    try {
      return `answered ${String(fn())}`;
    } catch (e) {
      return isFleetError(e) ? e.code : String(e);
    }
  };

  beforeEach(() => {
    clock = NOW;
    pdir = mkdtempSync(join(tmpdir(), 'critical-prune-'));
    s = SqliteLocalStore.open({ dataDir: pdir, agentId: 'h1', now: () => clock });
  });
  afterEach(() => {
    s.close();
    rmSync(pdir, { recursive: true, force: true });
  });

  it('drops decided rows older than the retention; keeps recent ones, those in doubt however old, and what the host holds', () => {
    expect(s.criticalPrepare(tx(21), cert('web'), clock + 10_000)).toEqual({ vote: 'yes' });
    expect(s.criticalDecide(tx(21), 'commit')).toBe('committed');
    expect(s.criticalPrepare(tx(22), cert('mail'), clock + 10_000)).toEqual({ vote: 'yes' });
    expect(s.criticalDecide(tx(22), 'abort')).toBe('aborted');
    expect(s.criticalPrepare(tx(23), cert('old', '2026-01-01T00:00:00Z'), clock + 10_000)).toMatchObject({ vote: 'no' }); // recorded aborted
    expect(s.criticalPrepare(tx(24), cert('vpn'), clock + 10_000)).toEqual({ vote: 'yes' }); // in doubt
    clock += 20 * DAY;
    expect(s.criticalPrepare(tx(25), cert('ldap'), clock + 10_000)).toEqual({ vote: 'yes' });
    expect(s.criticalDecide(tx(25), 'commit')).toBe('committed');
    clock += 15 * DAY; // 21..24 are 35 days old, 25 is 15
    expect(s.criticalPrune(RETENTION)).toBe(3);
    expect(staged(pdir)).toEqual([`${tx(24)}:prepared`, `${tx(25)}:committed`]);
    expect(s.criticalInDoubt().map((t) => t.txid)).toEqual([tx(24)]);
    expect(s.criticalEntries().map((e) => [e.name, e.txid])).toEqual([
      ['ldap', tx(25)],
      ['web', tx(21)],
    ]);
    expect(s.criticalPrune(RETENTION)).toBe(0);
    // In doubt for a year: still kept (only the coordinator's answer settles it).
    clock += 365 * DAY;
    expect(s.criticalPrune(RETENTION)).toBe(1);
    expect(staged(pdir)).toEqual([`${tx(24)}:prepared`]);
    expect(() => s.criticalPrune(DAY - 1)).toThrow(RangeError);
  });

  it('prunes at most `limit` rows at a time', () => {
    for (let i = 30; i < 35; i++) s.criticalDecide(tx(i), 'abort');
    clock += 31 * DAY;
    expect(s.criticalPrune(RETENTION, 2)).toBe(2);
    expect(s.criticalPrune(RETENTION, 2)).toBe(2);
    expect(s.criticalPrune(RETENTION, 2)).toBe(1);
    expect(staged(pdir)).toEqual([]);
  });

  it('after pruning, still answers what the pruned rows answered: a late prepare is refused, a repeated decision acknowledged when it can be proven', () => {
    const deadline1 = clock + 10_000;
    expect(s.criticalPrepare(tx(41), cert('web'), deadline1)).toEqual({ vote: 'yes' });
    expect(s.criticalDecide(tx(41), 'commit')).toBe('committed');
    const deadline2 = clock + 10_000;
    expect(s.criticalDecide(tx(42), 'abort')).toBe('aborted'); // heard the abort before its prepare
    expect(s.criticalPrepare(tx(43), cert('mail'), clock + 10_000)).toEqual({ vote: 'yes' });
    expect(s.criticalDecide(tx(43), 'commit')).toBe('committed');
    expect(s.criticalPrepare(tx(44), cert('mail'), clock + 10_000)).toEqual({ vote: 'yes' });
    expect(s.criticalDecide(tx(44), 'commit')).toBe('committed'); // replaces 43's entry
    clock += 31 * DAY;
    expect(s.criticalPrune(RETENTION)).toBe(4);
    expect(staged(pdir)).toEqual([]);

    // The late prepare of the aborted transaction (delivered a month late): refused, nothing staged.
    const late = s.criticalPrepare(tx(42), cert('late'), deadline2);
    expect(late).toMatchObject({ vote: 'no' });
    expect(late.vote === 'no' && late.reason).toMatch(/too late/);
    expect(s.criticalInDoubt()).toEqual([]);
    expect(s.criticalPrepare(tx(41), cert('web'), deadline1)).toMatchObject({ vote: 'no' });
    // Refused without a record: 41 committed, an `aborted` row would contradict a repeated commit.
    expect(staged(pdir)).toEqual([]);
    // A current prepare is taken.
    expect(s.criticalPrepare(tx(45), cert('api'), clock + 10_000)).toEqual({ vote: 'yes' });
    // A repeated commit of 41: critical_state still holds it, so its commit is proven.
    expect(s.criticalDecide(tx(41), 'commit')).toBe('committed');
    expect(codeOf(() => s.criticalDecide(tx(41), 'abort'))).toBe('FLEET_TPC_003');
    // 43 was replaced by 44: nothing proves it any more, FLEET_TPC_003 (never a false acknowledgement).
    expect(codeOf(() => s.criticalDecide(tx(43), 'commit'))).toBe('FLEET_TPC_003');
    expect(s.criticalDecide(tx(44), 'commit')).toBe('committed');
    // A repeated abort is acknowledged, as for any transaction never prepared here.
    expect(s.criticalDecide(tx(42), 'abort')).toBe('aborted');
    expect(s.criticalEntries().map((e) => [e.name, e.txid])).toEqual([
      ['mail', tx(44)],
      ['web', tx(41)],
    ]);
  });

  it('the pruned mark survives a reopen (it is in meta, copied by backups with the staging)', () => {
    s.criticalDecide(tx(51), 'abort');
    clock += 31 * DAY;
    expect(s.criticalPrune(RETENTION)).toBe(1);
    s.close();
    s = SqliteLocalStore.open({ dataDir: pdir, agentId: 'h1', now: () => clock });
    expect(s.criticalPrepare(tx(51), cert('late'), NOW + 10_000)).toMatchObject({ vote: 'no' });
  });
});
