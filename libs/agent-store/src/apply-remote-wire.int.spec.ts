/**
 * `applyRemoteWire` (the bulk path of pulls) against `applyRemote` of the same records decoded: the same
 * rows (state text, visible fields, hash, status, conflict flag, vector), counts, events and cursor, for
 * records the store does not hold (multi-row inserts), records it holds (joined), duplicates within a
 * page, deletes, concurrent writes, and field names the fast path leaves to the join. Real SQLite files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { fromWireRecord, prepareWireRows, toWireRecord } from '@fleet/contracts';
import type { WireRecord } from '@fleet/contracts';
import { emptyRecord, encodeHlc, joinChange } from '@fleet/sync-core';
import type { Change, Fields, RecordRef, RecordState, StrategyConfig } from '@fleet/sync-core';
import type { StoreEvent } from './local-store';
import { SqliteLocalStore } from './sqlite-local-store';

const AGENT = 'agent-w';
const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

function open(config: StrategyConfig): SqliteLocalStore {
  const d = mkdtempSync(join(tmpdir(), 'agent-wire-'));
  roots.push(d);
  return SqliteLocalStore.open({ dataDir: d, agentId: AGENT, strategies: config, now: () => 1_767_225_700_000 });
}

function rows(store: SqliteLocalStore): unknown[] {
  const db = new Database(store.path, { readonly: true });
  try {
    return db.prepare('SELECT scope, collection, key, state, fields, hash, status, conflicted, vv FROM records ORDER BY scope, collection, key').all();
  } finally {
    db.close();
  }
}

let seq = 0;
function change(origin: string, ref: RecordRef, op: 'put' | 'delete', fields: Fields, vv: Record<string, number>, unset?: string[]): Change {
  seq++;
  return {
    changeId: `c-${seq}`,
    origin,
    originSeq: vv[origin] as number,
    ...ref,
    op,
    fields: op === 'delete' ? {} : fields,
    ...(unset === undefined ? {} : { unset }),
    hlc: encodeHlc({ wallMs: 1_767_225_600_000 + seq, counter: 0, node: origin }),
    vv,
    hash: '0'.repeat(64),
    protocol: 1,
  };
}

function stateOf(changes: readonly Change[]): RecordState {
  let s = emptyRecord(changes[0] as Change);
  for (const c of changes) s = joinChange(s, c).state;
  return s;
}

const wire = (changes: readonly Change[]): WireRecord => toWireRecord(stateOf(changes));
const ref = (key: string, collection = 'pkgs'): RecordRef => ({ scope: 'fleet', collection, key });

/** Applies `pages` to two stores, one through each path, and expects the same everything. */
function expectSamePaths(pages: readonly WireRecord[][], config: StrategyConfig = { default: 'lww' }): void {
  const bulk = open(config);
  const plain = open(config);
  // applyRemoteRows of rows prepared elsewhere and passed between threads (as plain data), as the sync
  // manager's decoder worker hands them over
  const prepared = open(config);
  const evBulk: string[] = [];
  const evPlain: string[] = [];
  const evPrepared: string[] = [];
  // the whole event record (fields and vector are read lazily from the prepared rows' texts)
  const event = (e: StoreEvent): string => `${e.ref.key}:${JSON.stringify(e.record === undefined ? null : { s: e.record.status, f: e.record.fields, c: e.record.conflicted, h: e.record.hash, v: e.record.vv, r: e.record.ref })}`;
  bulk.watch((e) => evBulk.push(event(e)));
  plain.watch((e) => evPlain.push(event(e)));
  prepared.watch((e) => evPrepared.push(event(e)));
  pages.forEach((page, i) => {
    const a = bulk.applyRemoteWire(page, `s.9.${i}`);
    const b = plain.applyRemote(
      page.map((w) => ({ ref: { scope: w.s, collection: w.c, key: w.k }, state: fromWireRecord(w) })),
      `s.9.${i}`,
    );
    const c = prepared.applyRemoteRows(JSON.parse(JSON.stringify(prepareWireRows(page))) as ReturnType<typeof prepareWireRows>, `s.9.${i}`);
    expect({ ...a, drifted: 0 }).toEqual({ ...b, drifted: 0 });
    expect({ ...c, drifted: 0 }).toEqual({ ...b, drifted: 0 });
  });
  expect(rows(bulk)).toEqual(rows(plain));
  expect(rows(prepared)).toEqual(rows(plain));
  expect(evBulk.sort()).toEqual(evPlain.sort());
  expect(evPrepared.sort()).toEqual(evPlain.sort());
  expect(bulk.syncState().cursor).toBe(plain.syncState().cursor);
  expect(prepared.syncState().cursor).toBe(plain.syncState().cursor);
  for (const w of pages.flat()) expect(bulk.get({ scope: w.s, collection: w.c, key: w.k })).toEqual(plain.get({ scope: w.s, collection: w.c, key: w.k }));
  bulk.close();
  plain.close();
  prepared.close();
}

describe('applyRemoteWire', () => {
  it('inserts records it does not hold in bulk and joins the rest, exactly as applyRemote', () => {
    const fresh = Array.from({ length: 137 }, (_, i) => wire([change('server', ref(`k${String(i).padStart(3, '0')}`), 'put', { n: i, name: `p${i}`, nested: { b: 1, a: [i] } }, { server: i + 1 })]));
    // page 2: some keys of page 1 again with a newer write (held: joined), new ones, a duplicate within the page,
    // a delete (delete vectors), a record with concurrent writes, a removed field, integer-like field names
    const again = [5, 30, 31, 99].map((i) => wire([change('server', ref(`k${String(i).padStart(3, '0')}`), 'put', { n: -i }, { server: 1000 + i })]));
    const del = wire([change('server', ref('k007'), 'delete', {}, { server: 2000 })]);
    const c1 = change('agent-a', ref('conc'), 'put', { v: 'a' }, { 'agent-a': 1 });
    const c2 = change('agent-b', ref('conc'), 'put', { v: 'b' }, { 'agent-b': 1 });
    const concurrent = wire([c1, c2]);
    const removed = wire([change('server', ref('rm'), 'put', { keep: 1 }, { server: 3000 }, ['gone'])]);
    const numeric = wire([change('server', ref('num'), 'put', { '10': 1, '9': 2, x: 3 }, { server: 3001 })]);
    const dup = wire([change('server', ref('dup'), 'put', { d: 1 }, { server: 3002 })]);
    const dupLater = wire([change('server', ref('dup'), 'put', { d: 2 }, { server: 3003 })]);
    const page2 = [...fresh.slice(0, 3), ...again, del, concurrent, removed, numeric, dup, ...Array.from({ length: 40 }, (_, i) => wire([change('server', ref(`n${i}`), 'put', { i }, { server: 4000 + i })])), dupLater];
    expectSamePaths([fresh, page2]);
    expectSamePaths([fresh, page2], { default: 'manual' });
  });

  it('a record held from a local write is joined, and a conflict it raises is counted', () => {
    const store = open({ default: 'manual' });
    const mine = { scope: `host.${AGENT}`, collection: 'cfg', key: 'a' };
    store.put(mine, { v: 'local' });
    const remote = wire([change('server', mine, 'put', { v: 'server' }, { server: 1 })]);
    const r = store.applyRemoteWire([remote], 7);
    expect(r).toMatchObject({ applied: 1, changed: 1, conflicts: 1 });
    expect(store.get(mine)?.conflicted).toBe(true);
    expect(store.syncState().cursor).toBe(7);
    store.close();
  });

  it('generated pages: the same rows as applyRemoteWire of the decoded states', () => {
    const keyArb = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
    const opArb = fc.record({ key: keyArb, origin: fc.constantFrom('server', 'agent-x', 'agent-y'), del: fc.boolean(), fields: fc.dictionary(fc.constantFrom('p', 'q', 'r'), fc.oneof(fc.integer(), fc.string(), fc.constant(null)), { maxKeys: 3 }) });
    fc.assert(
      fc.property(fc.array(fc.array(opArb, { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 3 }), (pagesOps) => {
        const counters: Record<string, number> = {};
        const pages = pagesOps.map((ops) =>
          ops.map((o) => {
            counters[o.origin] = (counters[o.origin] ?? 0) + 1;
            return wire([change(o.origin, ref(o.key), o.del ? 'delete' : 'put', o.fields, { [o.origin]: counters[o.origin] as number })]);
          }),
        );
        expectSamePaths(pages);
      }),
      { numRuns: 40 },
    );
  });
});
