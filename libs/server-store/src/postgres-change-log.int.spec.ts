import fc from 'fast-check';
import type { DataSource } from 'typeorm';
import { changeArb } from '@fleet/contracts/src/testing/arbitraries';
import type { Change, LoggedChange } from '@fleet/sync-core';
import { isFleetError } from '@fleet/errors';
import { openServerDataSource } from './data-source';
import { PostgresChangeLog } from './postgres-change-log';
import { OriginsProjection } from './projections/origins.projection';
import type { Projection } from './projections/projection';
import type { AppendResult } from './change-log.port';
import { rebuildProjections } from './rebuild';
import { createTestDatabase, testChange } from './testing';
import type { TestDatabase } from './testing';

// The project-level testTimeout of jest.config.js is not applied by jest 30 here (5 s default seen): set it per file.
jest.setTimeout(60_000);

let db: TestDatabase;
let ds: DataSource;
let log: PostgresChangeLog;

beforeAll(async () => {
  db = await createTestDatabase('fleet_store');
  ds = await openServerDataSource({ url: db.url });
  log = new PostgresChangeLog(ds);
});

afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

beforeEach(async () => {
  await ds.query('truncate change_log, origin_progress');
});

async function count(): Promise<number> {
  const [r] = (await ds.query('select count(*)::int as n from change_log')) as Array<{ n: number }>;
  return r?.n ?? -1;
}

async function readAll(from = 0, limit = 500): Promise<LoggedChange[]> {
  const out: LoggedChange[] = [];
  let cursor = from;
  for (;;) {
    const page = await log.readSince(cursor, { limit });
    out.push(...page.changes);
    cursor = page.nextCursor;
    if (!page.hasMore) return out;
  }
}

function strip(c: LoggedChange): Change {
  const { seq: _seq, ...rest } = c;
  return rest;
}

describe('PostgresChangeLog.appendBatch: idempotency', () => {
  it('logs the same change twice as one row, and returns the second as a duplicate with its seq', async () => {
    const c = testChange('a1', 1, { unset: ['old'] });
    const first = await log.appendBatch([c]);
    expect(first.appended).toHaveLength(1);
    expect(first.duplicates).toHaveLength(0);
    const second = await log.appendBatch([c]);
    expect(second.appended).toHaveLength(0);
    expect(second.duplicates).toEqual(first.appended);
    expect(strip(second.duplicates[0] as LoggedChange)).toEqual(c);
    expect(await count()).toBe(1);
  });

  it('round-trips every field (absent unset stays absent)', async () => {
    const c = testChange('a1', 1, { op: 'delete', fields: {} });
    const { appended } = await log.appendBatch([c]);
    expect(appended).toEqual([{ ...c, seq: 1 }]);
    const [read] = (await log.readSince(0, { limit: 10 })).changes;
    expect(read).toEqual({ ...c, seq: 1 });
    expect(read && 'unset' in read).toBe(false);
  });

  it('treats a repeat inside one batch as a duplicate of the first', async () => {
    const c = testChange('a1', 1);
    const r = await log.appendBatch([c, c]);
    expect(r.appended.map((x) => x.seq)).toEqual([1]);
    expect(r.duplicates.map((x) => x.seq)).toEqual([1]);
  });

  it('replays of the same change days later (after other appends) keep one row and the old seq', async () => {
    const old = Array.from({ length: 5 }, (_, i) => testChange('a1', i + 1));
    const first = await log.appendBatch(old);
    for (let i = 0; i < 10; i++) await log.appendBatch([testChange('b2', i + 1), testChange('c3', i + 1)]);
    // The agent lost its PubAcks and replays everything, plus one new change.
    const fresh = testChange('a1', 6);
    const replay = await log.appendBatch([...old, fresh]);
    expect(replay.duplicates).toEqual(first.appended);
    expect(replay.appended).toHaveLength(1);
    expect(replay.appended[0]?.seq).toBe(5 + 20 + 1);
    expect(await count()).toBe(26);
  });

  it('refuses the same changeId with different content (FLEET_LOG_001), appending the rest', async () => {
    const c = testChange('a1', 1);
    await log.appendBatch([c]);
    const tampered = { ...c, fields: { n: 999 } };
    const other = testChange('a1', 2);
    const r = await log.appendBatch([tampered, other]);
    expect(r.appended.map((x) => x.changeId)).toEqual([other.changeId]);
    expect(r.rejected).toHaveLength(1);
    expect(r.rejected[0]?.change).toBe(tampered);
    expect(isFleetError(r.rejected[0]?.error, 'FLEET_LOG_001')).toBe(true);
    expect(r.rejected[0]?.error.message).toMatch(/different fields/);
  });

  it('refuses the same (origin, originSeq) under another changeId (FLEET_LOG_001), in the log or in the batch', async () => {
    const c = testChange('a1', 1);
    await log.appendBatch([c]);
    const regenerated = testChange('a1', 1);
    const twinA = testChange('a1', 2);
    const twinB = testChange('a1', 2);
    const r = await log.appendBatch([regenerated, twinA, twinB]);
    expect(r.appended.map((x) => x.changeId)).toEqual([twinA.changeId]);
    expect(r.rejected.map((x) => x.change)).toEqual([regenerated, twinB]);
    expect(r.rejected.every((x) => isFleetError(x.error, 'FLEET_LOG_001'))).toBe(true);
    expect(r.rejected[0]?.error.message).toContain(c.changeId);
    expect(await count()).toBe(2);
  });

  it('refuses alone a change the database cannot store (not a UUID, NUL in jsonb)', async () => {
    const bad1 = testChange('a1', 1, { changeId: 'not-a-uuid' });
    const bad2 = testChange('a1', 2, { fields: { s: 'a\u0000b' } });
    const good = testChange('a1', 3);
    const r = await log.appendBatch([bad1, bad2, good]);
    expect(r.appended.map((x) => x.changeId)).toEqual([good.changeId]);
    expect(r.rejected.map((x) => x.error.code)).toEqual(['FLEET_DECODE_002', 'FLEET_DECODE_002']);
  });

  it('treats an upper-case changeId as the same id', async () => {
    const c = testChange('a1', 1);
    await log.appendBatch([c]);
    const r = await log.appendBatch([{ ...c, changeId: c.changeId.toUpperCase() }]);
    expect(r.duplicates).toHaveLength(1);
    expect(r.rejected).toHaveLength(0);
  });
});

describe('PostgresChangeLog: text that means something to COPY', () => {
  it('round-trips backslashes, tabs, line breaks, \\N and \\. in keys, names and values', async () => {
    const odd = ['\\N', '\\.', 'a\tb', 'line\nbreak', 'cr\rlf\r\n', 'back\\slash', '"quoted"', 'C:\\temp\\new', 'ünï\u2028cødé 🚀'];
    const changes = odd.map((s, i) =>
      testChange('copy-agent', i + 1, { key: s, collection: `c${i}`, fields: { [s]: s, nested: { list: [s, `${s}${s}`] } }, unset: [`${s}-gone`] }),
    );
    const first = await log.appendBatch(changes);
    expect(first.rejected).toEqual([]);
    expect(first.appended.map(strip)).toEqual(changes);
    expect((await readAll()).map(strip)).toEqual(changes);
    // And the log's own lookup sees them as logged: a resend is a duplicate, not a conflict.
    const again = await log.appendBatch(changes);
    expect(again.rejected).toEqual([]);
    expect(again.duplicates).toEqual(first.appended);
    expect(await count()).toBe(odd.length);
  });
});

describe('PostgresChangeLog: any valid wire change', () => {
  it('round-trips exactly, and a resend is a duplicate (never a false identity conflict after jsonb normalisation)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(changeArb, { minLength: 1, maxLength: 5, selector: (c) => `${c.origin}/${c.originSeq}` }), async (changes) => {
        await ds.query('delete from change_log; delete from origin_progress');
        const first = await log.appendBatch(changes);
        expect(first.rejected).toEqual([]);
        expect(first.appended.map(strip)).toEqual(changes);
        expect((await log.readSince(0, { limit: 10 })).changes).toEqual(first.appended);
        const again = await log.appendBatch([...changes].reverse());
        expect(again.rejected).toEqual([]);
        expect(again.appended).toEqual([]);
        expect(again.duplicates).toEqual([...first.appended].reverse());
      }),
      { numRuns: 50 },
    );
  }, 60_000);
});

describe('PostgresChangeLog.readSince', () => {
  it('pages in seq order with nextCursor and hasMore, and filters by scope', async () => {
    for (let i = 1; i <= 10; i++) await log.appendBatch([testChange('a1', i), testChange('b2', i)]);
    const p1 = await log.readSince(0, { limit: 4 });
    expect(p1.changes.map((c) => c.seq)).toEqual([1, 2, 3, 4]);
    expect(p1).toMatchObject({ nextCursor: 4, hasMore: true });
    const scoped = await log.readSince(4, { limit: 100, scopes: ['host.b2'] });
    expect(scoped.changes.map((c) => c.seq)).toEqual([6, 8, 10, 12, 14, 16, 18, 20]);
    expect(scoped.changes.every((c) => c.scope === 'host.b2')).toBe(true);
    expect(scoped).toMatchObject({ nextCursor: 20, hasMore: false });
    const end = await log.readSince(20, { limit: 5 });
    expect(end).toEqual({ changes: [], nextCursor: 20, hasMore: false });
    await expect(log.readSince(0, { limit: 0 })).rejects.toThrow(RangeError);
  });
});

/** A projection that blocks inside the append transaction until released: holds the transaction (and its lock) open. */
class Gate implements Projection {
  readonly name = 'gate';
  private waiting: Array<() => void> = [];
  entered = 0;
  private armed = true;
  async apply(): Promise<void> {
    if (!this.armed) return;
    this.entered++;
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  async reset(): Promise<void> {}
  releaseOne(): void {
    this.waiting.shift()?.();
  }
  disarm(): void {
    this.armed = false;
    for (const w of this.waiting.splice(0)) w();
  }
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function lockWaiters(): Promise<number> {
  const [r] = (await ds.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`)) as Array<{ n: number }>;
  return r?.n ?? 0;
}

describe('cursor safety under concurrent appends', () => {
  it('control: with a plain sequence and no lock, a polling reader skips a change for ever', async () => {
    // Demonstrates the hazard the append lock removes, with the same reader as below.
    await ds.query('create table if not exists naive_log (seq bigint primary key)');
    await ds.query('truncate naive_log');
    const runnerA = ds.createQueryRunner();
    const runnerB = ds.createQueryRunner();
    try {
      await runnerA.query('create sequence if not exists naive_seq2');
      await runnerA.startTransaction();
      await runnerA.query(`insert into naive_log values (nextval('naive_seq2'))`); // gets the lower seq, stays open
      await runnerB.startTransaction();
      await runnerB.query(`insert into naive_log values (nextval('naive_seq2'))`); // higher seq
      await runnerB.commitTransaction();
      const [firstSeen] = (await ds.query('select max(seq)::int as c from naive_log')) as Array<{ c: number }>;
      const cursor = firstSeen?.c ?? 0; // the reader advances past B's seq
      await runnerA.commitTransaction();
      const after = (await ds.query('select seq::int from naive_log where seq > $1', [cursor])) as unknown[];
      const all = (await ds.query('select seq::int from naive_log')) as unknown[];
      expect(all).toHaveLength(2);
      expect(after).toHaveLength(0); // A's change is below the cursor: skipped for ever
    } finally {
      await runnerA.release();
      await runnerB.release();
      await ds.query('drop table naive_log');
      await ds.query('drop sequence if exists naive_seq2');
    }
  });

  it('a reader polling while two appends overlap (one held open) never sees a gap that later fills', async () => {
    await log.appendBatch([testChange('seed', 1), testChange('seed', 2)]); // seqs 1, 2
    const gate = new Gate();
    const gated = new PostgresChangeLog(ds, { projections: [new OriginsProjection(), gate] });

    const seen: number[] = [];
    let cursor = 0;
    const poll = async () => {
      const page = await log.readSince(cursor, { limit: 1000 });
      for (const c of page.changes) {
        // The invariant: each change read is exactly the one after the cursor. A skipped seq
        // could never be read later, since later reads start after the cursor.
        expect(c.seq).toBe(cursor + 1);
        seen.push(c.seq);
        cursor = c.seq;
      }
    };

    const a = gated.appendBatch([testChange('a1', 1), testChange('a1', 2), testChange('a1', 3)]); // will get 3..5
    await until(() => gate.entered === 1, 'A inside its transaction');
    await poll();
    expect(seen).toEqual([1, 2]); // A's rows are inserted but not committed

    const b = gated.appendBatch([testChange('b1', 1), testChange('b1', 2)]); // must wait for A's lock
    await until(async () => (await lockWaiters()) === 1, 'B waiting on the append lock');
    // A plain (non-gated) appender queues too.
    const c = log.appendBatch([testChange('c1', 1)]);
    await until(async () => (await lockWaiters()) === 2, 'C waiting on the append lock');
    for (let i = 0; i < 5; i++) await poll();
    expect(seen).toEqual([1, 2]);

    gate.releaseOne(); // A commits; B (or C) takes the lock next
    const ra = await a;
    expect(ra.appended.map((x) => x.seq)).toEqual([3, 4, 5]);
    await until(() => gate.entered === 2 || seen.length > 5, 'the next appender');
    await poll();
    // Now either B is held open with seqs assigned (and C waits), or C committed and B is held.
    for (let i = 0; i < 5; i++) await poll();
    expect(seen).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));

    gate.disarm();
    const [rb, rc] = await Promise.all([b, c]);
    await poll();
    const all = [...ra.appended, ...rb.appended, ...rc.appended].map((x) => x.seq).sort((x, y) => x - y);
    expect(all).toEqual([3, 4, 5, 6, 7, 8]);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('a reader polling in a loop during many concurrent appends only ever moves through a gapless prefix', async () => {
    const other = await openServerDataSource({ url: db.url, poolSize: 4 });
    try {
      const logB = new PostgresChangeLog(other);
      let done = false;
      let cursor = 0;
      let reads = 0;
      const reader = (async () => {
        while (!done || (await log.readSince(cursor, { limit: 1 })).changes.length > 0) {
          const page = await log.readSince(cursor, { limit: 37 });
          for (const c of page.changes) {
            if (c.seq !== cursor + 1) throw new Error(`gap: cursor ${cursor}, read ${c.seq}`);
            cursor = c.seq;
          }
          reads++;
        }
      })();
      const writer = (l: PostgresChangeLog, origin: string) => async () => {
        for (let i = 0; i < 30; i++) await l.appendBatch(Array.from({ length: 5 }, (_, j) => testChange(origin, i * 5 + j + 1)));
      };
      await Promise.all([writer(log, 'w1')(), writer(logB, 'w2')(), writer(log, 'w3')(), writer(logB, 'w4')()]);
      done = true;
      await reader;
      expect(cursor).toBe(600);
      expect(reads).toBeGreaterThan(1);
    } finally {
      await other.destroy();
    }
  });
});

describe('two appenders in parallel', () => {
  it('append 2,000 changes (with overlaps) each exactly once; readSince(0) sees seqs 1..N without gaps', async () => {
    const dsB = await openServerDataSource({ url: db.url, poolSize: 5 });
    try {
      const logA = new PostgresChangeLog(ds);
      const logB = new PostgresChangeLog(dsB);
      const all = Array.from({ length: 2000 }, (_, i) => testChange(`agent${i % 8}`, Math.floor(i / 8) + 1));
      const batches: Change[][] = [];
      for (let i = 0; i < all.length; i += 40) batches.push(all.slice(i, i + 40));
      // A appends the even batches and B the odd ones, and each also re-sends a batch of the
      // other's (as a redelivery would), concurrently, 4 batches in flight per appender.
      const planA = batches.flatMap((b, i) => (i % 2 === 0 ? [b] : i % 5 === 0 ? [b] : []));
      const planB = batches.flatMap((b, i) => (i % 2 === 1 ? [b] : i % 5 === 0 ? [b] : []));
      const run = async (l: PostgresChangeLog, plan: Change[][]) => {
        const results: AppendResult[] = [];
        const queue = [...plan];
        const lanes = Array.from({ length: 4 }, async () => {
          for (let b = queue.shift(); b !== undefined; b = queue.shift()) results.push(await l.appendBatch(b));
        });
        await Promise.all(lanes);
        return results;
      };
      const [ra, rb] = await Promise.all([run(logA, planA), run(logB, planB)]);
      const results = [...ra, ...rb];
      expect(results.flatMap((r) => r.rejected)).toEqual([]);
      const appendedIds = results.flatMap((r) => r.appended.map((c) => c.changeId));
      expect(appendedIds).toHaveLength(2000);
      expect(new Set(appendedIds).size).toBe(2000);

      const read = await readAll(0, 333);
      expect(read.map((c) => c.seq)).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
      expect(new Set(read.map((c) => c.changeId))).toEqual(new Set(all.map((c) => c.changeId)));
      const bySeq = new Map(results.flatMap((r) => [...r.appended, ...r.duplicates]).map((c) => [c.changeId, c.seq]));
      for (const c of read) expect(bySeq.get(c.changeId)).toBe(c.seq); // duplicates report the real seq
    } finally {
      await dsB.destroy();
    }
  });
});

describe('projections', () => {
  const snapshot = async (table: string, order: string) =>
    (await ds.query(`select to_jsonb(t)::text as row from ${table} t order by ${order}`)) as Array<{ row: string }>;

  it('maintains origin_progress live, and a rebuild (any page size) reproduces it exactly', async () => {
    // Out-of-order originSeqs, duplicates, rejections and several origins, in batches of varied size.
    await log.appendBatch([testChange('a1', 3), testChange('a1', 1), testChange('b2', 1)]);
    await new Promise((r) => setTimeout(r, 5));
    await log.appendBatch([testChange('a1', 2), testChange('server', 1)]);
    for (let i = 0; i < 40; i++) {
      await log.appendBatch(Array.from({ length: (i % 4) + 1 }, (_, j) => testChange(`o${(i + j) % 5}`, i * 4 + j + 1)));
    }
    const dup = testChange('b2', 2);
    await log.appendBatch([dup, dup]);
    await log.appendBatch([dup, testChange('b2', 2)]);

    const live = await snapshot('origin_progress', 'origin');
    const a1 = (await ds.query(`select last_origin_seq::int, last_hlc, changes_count::int, last_seq::int from origin_progress where origin = 'a1'`)) as unknown[];
    expect(a1).toEqual([{ last_origin_seq: 3, last_hlc: testChange('a1', 3).hlc, changes_count: 3, last_seq: 4 }]);
    const b2 = (await ds.query(`select changes_count::int from origin_progress where origin = 'b2'`)) as unknown[];
    expect(b2).toEqual([{ changes_count: 2 }]);

    for (const batchSize of [1, 7, 1000]) {
      const report = await rebuildProjections(ds, [new OriginsProjection()], { batchSize });
      expect(report.replayed).toBe(await count());
      expect(await snapshot('origin_progress', 'origin')).toEqual(live);
    }
    // And after a rebuild, live maintenance carries on from it.
    await log.appendBatch([testChange('a1', 4)]);
    const [row] = (await ds.query(`select last_origin_seq::int as s from origin_progress where origin = 'a1'`)) as Array<{ s: number }>;
    expect(row?.s).toBe(4);
  });

  it('a failing projection rolls back the whole append', async () => {
    const failing: Projection = {
      name: 'failing',
      apply: async () => {
        throw new Error('boom');
      },
      reset: async () => {},
    };
    const l = new PostgresChangeLog(ds, { projections: [new OriginsProjection(), failing] });
    await expect(l.appendBatch([testChange('a1', 1)])).rejects.toThrow('boom');
    expect(await count()).toBe(0);
    expect(await snapshot('origin_progress', 'origin')).toEqual([]);
  });
});

describe('schema', () => {
  it('the entities match the migrations (no drift)', async () => {
    const sql = await ds.driver.createSchemaBuilder().log();
    expect(sql.upQueries.map((q) => q.query)).toEqual([]);
  });
});
