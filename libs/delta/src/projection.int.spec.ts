/**
 * The record-states projection under concurrent callers (real PostgreSQL): pulls and Merkle answers
 * each ask for it before reading, so it must cover every change committed before each call while
 * sharing passes instead of queueing every caller on the cursor lock.
 */
import type { DataSource } from 'typeorm';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { encodeHlc } from '@fleet/sync-core';
import { DeltaStore } from './store';

let db: TestDatabase;
let ds: DataSource;
let log: PostgresChangeLog;

beforeAll(async () => {
  db = await createTestDatabase('fleet_delta_projection');
  ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  log = new PostgresChangeLog(ds);
});

afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

let n = 0;
const keys = new Set<string>();
function change(key: string) {
  n += 1;
  keys.add(key);
  return testChange('server', n, { scope: 'fleet', collection: 'c', key, fields: { n }, hlc: encodeHlc({ wallMs: 1_767_225_600_000 + n, counter: 0, node: 'server' }), vv: { server: n } });
}

async function head(): Promise<number> {
  const [r] = (await ds.query(`select coalesce(max(seq), 0) as h from change_log`)) as { h: string }[];
  return Number(r?.h ?? 0);
}

describe('record-states projection', () => {
  it('concurrent callers share passes, and each call covers every change committed before it', async () => {
    const store = new DeltaStore(ds, { default: 'lww' });
    await log.appendBatch(Array.from({ length: 50 }, (_, i) => change(`k${i % 20}`)));
    // 40 callers at once, while appends keep committing between them
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const before = await head();
      calls.push(
        store.project(7).then((cursor) => {
          expect(cursor).toBeGreaterThanOrEqual(before);
        }),
      );
      if (i % 10 === 0) await log.appendBatch([change(`k${i}`), change(`late${i}`)]);
    }
    await Promise.all(calls);
    // one pass running, one queued behind it at a time: far fewer locked passes than callers
    expect(store.lockedPasses).toBeLessThanOrEqual(10);
    expect(store.lockedPasses).toBeGreaterThanOrEqual(1);
    const [p] = (await ds.query(`select cursor from delta_progress where name = 'record_states'`)) as { cursor: string }[];
    expect(Number(p?.cursor)).toBe(await head());
    const [rows] = (await ds.query(`select count(*)::int as n, max(rev) as r from record_states`)) as { n: number; r: string }[];
    expect(rows?.n).toBe(keys.size);
    expect(Number(rows?.r)).toBe(await head());
  });

  it('at the log head a pass takes no lock; a change after it makes the next call fold it', async () => {
    const store = new DeltaStore(ds, { default: 'lww' });
    await store.project();
    const locked = store.lockedPasses;
    await Promise.all(Array.from({ length: 10 }, () => store.project()));
    expect(store.lockedPasses).toBe(locked);
    await log.appendBatch([change('after')]);
    expect(await store.project()).toBe(await head());
    expect(store.lockedPasses).toBe(locked + 1);
    const [r] = (await ds.query(`select rev from record_states where key = 'after'`)) as { rev: string }[];
    expect(Number(r?.rev)).toBe(await head());
  });
  it('projectUnlessBusy: runs a pass when none is running, returns at once while one is', async () => {
    const store = new DeltaStore(ds, { default: 'lww' });
    await log.appendBatch([change('idle-1')]);
    await store.projectUnlessBusy();
    const [p] = (await ds.query(`select cursor from delta_progress where name = 'record_states'`)) as { cursor: string }[];
    expect(Number(p?.cursor)).toBe(await head());
    await log.appendBatch(Array.from({ length: 30 }, (_, i) => change(`busy-${i}`)));
    const running = store.project(1); // a slow pass: one change per page
    let quick = false;
    await store.projectUnlessBusy().then(() => (quick = true));
    expect(quick).toBe(true);
    const [mid] = (await ds.query(`select cursor from delta_progress where name = 'record_states'`)) as { cursor: string }[];
    expect(Number(mid?.cursor)).toBeLessThan(await head()); // it did not wait for the running pass
    expect(await running).toBe(await head());
  });

  it('a change reusing a dot its record holds is left out (as every projection does), and the pass goes on past it', async () => {
    const store = new DeltaStore(ds, { default: 'lww' });
    await store.project();
    const first = change('forged-target');
    const forged = { ...first, changeId: `${first.changeId}-forged`, originSeq: first.originSeq + 10_000, fields: { n: -1 } };
    await log.appendBatch([first, forged, change('after-forged')]);
    expect(await store.project()).toBe(await head());
    const [s] = await store.statesOf([{ scope: 'fleet', collection: 'c', key: 'forged-target' }]);
    expect(s?.state.view.fields).toEqual(first.fields);
    const [after] = (await ds.query(`select count(*)::int as n from record_states where key = 'after-forged'`)) as { n: number }[];
    expect(after?.n).toBe(1);
  });
});
