/**
 * The records projection against the real PostgreSQL: two concurrent appliers over random batch
 * cuts end in sync-core's single-threaded result; a rebuild (any page size) reproduces the live rows
 * byte for byte; `rev` follows commit order; the ServerWriter folds logged changes the projection
 * has not applied yet and never reuses a server dot.
 */
import type { DataSource } from 'typeorm';
import {
  applyChanges,
  emptyRecord,
  encodeHlc,
  encodeRecordState,
  recordHash,
  visibleFields,
  makeLocalChange,
  type Change,
  type LoggedChange,
  type RecordState,
  type StrategyConfig,
} from '@fleet/sync-core';
import { decodeChange, MAX_RECORD_STATE_BYTES } from '@fleet/contracts';
import { isFleetError } from '@fleet/errors';
import { openServerDataSource } from '../data-source';
import { APPEND_LOCK_SQL, PostgresChangeLog } from '../postgres-change-log';
import { rebuildProjections } from '../rebuild';
import { createTestDatabase, testUuidV7, type TestDatabase } from '../testing';
import { readProjectionCursor, readRecordState, RecordsProjection, SWEEP_TRY_LOCK_SQL } from './records.projection';
import { ServerWriter } from './server-writer';

jest.setTimeout(60_000);

const config: StrategyConfig = { default: 'lww', collections: { m: { strategy: 'merge' }, constructor: { strategy: 'merge' as const } } };
let db: TestDatabase;
let ds: DataSource;
let ds2: DataSource;
beforeAll(async () => {
  db = await createTestDatabase('fleet_records');
  ds = await openServerDataSource({ url: db.url });
  ds2 = await openServerDataSource({ url: db.url });
});
afterAll(async () => {
  await ds2?.destroy();
  await ds?.destroy();
  await db?.drop();
});

function rnd(seed: number): () => number {
  let a = seed;
  return () => ((a = (a * 1103515245 + 12345) % 2147483648) / 2147483648);
}

/** The names a workload uses: 4 origins, 3 fields, 2 collections (the second one `merge`), 10 keys. */
interface WorkloadNames {
  readonly origins: readonly string[];
  readonly fields: readonly string[];
  readonly collections: readonly [string, string];
  readonly keys: readonly string[];
}
const DEFAULT_NAMES: WorkloadNames = { origins: ['o1', 'o2', 'o3', 'o4'], fields: ['f0', 'f1', 'f2'], collections: ['l', 'm'], keys: Array.from({ length: 10 }, (_, i) => `k${i}`) };

/** Several origins writing 10 records, syncing now and then: causal and concurrent changes. */
function workload(n: number, seed: number, names: WorkloadNames = DEFAULT_NAMES): Change[] {
  const r = rnd(seed);
  const origins = names.origins;
  const seqs = new Map<string, number>();
  const replicas = new Map<string, RecordState>();
  const log = new Map<string, Change[]>();
  const out: Change[] = [];
  for (let i = 0; i < n; i++) {
    const o = origins[Math.floor(r() * origins.length)] as string;
    const ref = { scope: 'group.g', collection: names.collections[r() < 0.5 ? 0 : 1], key: names.keys[Math.floor(r() * 10)] as string };
    const rk = `${o}/${ref.collection}/${ref.key}`;
    let state = replicas.get(rk) ?? emptyRecord(ref);
    if (r() < 0.3) state = applyChanges(log.get(`${ref.collection}/${ref.key}`) ?? [], config, state);
    const seq = (seqs.get(o) ?? 0) + 1;
    seqs.set(o, seq);
    const edit = r() < 0.1 ? ({ op: 'delete' } as const) : ({ op: 'put', fields: { [names.fields[Math.floor(r() * 3)] as string]: i } } as const);
    const { change, state: next } = makeLocalChange(state, edit, { origin: o, originSeq: seq, changeId: testUuidV7(), hlc: encodeHlc({ wallMs: 1_767_225_600_000 + i, counter: 0, node: o }), protocol: 1 }, config);
    replicas.set(rk, next);
    log.set(`${ref.collection}/${ref.key}`, [...(log.get(`${ref.collection}/${ref.key}`) ?? []), change]);
    out.push(change);
  }
  return out;
}

async function snapshot(): Promise<string[]> {
  const rows = (await ds.query(`select scope, collection, key, state, fields, hash, vv, status, conflicted, last_seq from records order by scope, collection, key`)) as Record<string, unknown>[];
  return rows.map((r) => JSON.stringify({ ...r, state: encodeRecordState(r['state'] as RecordState) }));
}

it('two concurrent appliers, random batch cuts: rows equal the single-threaded fold; rebuild reproduces them; rev in commit order', async () => {
  const log = new PostgresChangeLog(ds);
  const appended: LoggedChange[] = [];
  const changes = workload(600, 7);
  for (let i = 0; i < changes.length; i += 40) appended.push(...(await log.appendBatch(changes.slice(i, i + 40))).appended);
  const p = new RecordsProjection(config);
  // two appliers, each given a shuffled half of the events in random cuts
  const r = rnd(3);
  const shuffled = [...appended].sort(() => r() - 0.5);
  const halves = [shuffled.filter((_, i) => i % 2 === 0), shuffled.filter((_, i) => i % 2 === 1)];
  const revs: number[] = [];
  await Promise.all(
    halves.map(async (h, w) => {
      for (let i = 0; i < h.length; ) {
        const n = 1 + Math.floor(r() * 30);
        const res = await p.applyLogged(w === 0 ? ds : ds2, h.slice(i, i + n));
        revs.push(...res.records.map((x) => x.rev));
        i += n;
      }
    }),
  );
  const byRecord = new Map<string, LoggedChange[]>();
  for (const c of appended) byRecord.set(`${c.collection}/${c.key}`, [...(byRecord.get(`${c.collection}/${c.key}`) ?? []), c]);
  for (const cs of byRecord.values()) {
    const first = cs[0] as LoggedChange;
    const server = await readRecordState(ds, first);
    const model = applyChanges(cs, config);
    expect(encodeRecordState(server!.state)).toBe(encodeRecordState(model));
    expect(server!.lastSeq).toBe(cs[cs.length - 1]!.seq);
    // The columns derived from the state (in SQL, from the state document) agree with sync-core's.
    const [row] = (await ds.query(`select fields, vv, status, conflicted, hash from records where scope = $1 and collection = $2 and key = $3`, [first.scope, first.collection, first.key])) as Record<string, unknown>[];
    expect(row).toEqual({ fields: visibleFields(model), vv: model.vv, status: model.view.status, conflicted: model.view.conflicted, hash: recordHash(model) });
  }
  expect(new Set(revs).size).toBe(revs.length); // each rev assigned once
  const live = await snapshot();
  for (const batchSize of [1, 7, 1000]) {
    await rebuildProjections(ds, [new RecordsProjection(config)], { batchSize });
    expect(await snapshot()).toEqual(live);
  }
});

it('names of Object.prototype members (origins, fields, collections, keys): decoded, logged, projected by concurrent appliers and rebuilt like any others', async () => {
  const names: WorkloadNames = {
    origins: ['toString', 'constructor', 'valueOf', 'hasOwnProperty'],
    fields: ['toString', 'constructor', 'hasOwnProperty'],
    collections: ['toString', 'constructor'],
    keys: ['__proto__', 'toString', 'constructor', 'valueOf', 'hasOwnProperty', 'isPrototypeOf', 'toJSON', '__defineGetter__', 'k8', 'k9'],
  };
  const log = new PostgresChangeLog(ds);
  // As the change log receives them: JSON on the wire, decoded by contracts.
  const changes = workload(300, 5, names).map((c) => decodeChange(JSON.parse(JSON.stringify(c))));
  const appended: LoggedChange[] = [];
  for (let i = 0; i < changes.length; i += 30) appended.push(...(await log.appendBatch(changes.slice(i, i + 30))).appended);
  expect(appended).toHaveLength(changes.length);
  const p = new RecordsProjection(config);
  const r = rnd(9);
  const halves = [appended.filter((_, i) => i % 2 === 0), appended.filter((_, i) => i % 2 === 1)];
  await Promise.all(
    halves.map(async (h, w) => {
      for (let i = 0; i < h.length; ) {
        const n = 1 + Math.floor(r() * 20);
        await p.applyLogged(w === 0 ? ds : ds2, h.slice(i, i + n));
        i += n;
      }
    }),
  );
  const byRecord = new Map<string, LoggedChange[]>();
  for (const c of appended) byRecord.set(`${c.collection}/${c.key}`, [...(byRecord.get(`${c.collection}/${c.key}`) ?? []), c]);
  expect(byRecord.size).toBeGreaterThan(10);
  for (const cs of byRecord.values()) {
    const server = await readRecordState(ds, cs[0]!);
    expect(encodeRecordState(server!.state)).toBe(encodeRecordState(applyChanges(cs, config)));
  }
  // A server write on one of them that adds a field its state does not hold yet.
  const ref = { scope: 'group.g', collection: 'constructor', key: '__proto__' };
  const writer = new ServerWriter(ds, { changeLog: log, config, node: 'server-proto' });
  const w = await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { valueOf: 'server', toString: 'server' } }));
  await p.applyLogged(ds, w.appended);
  const all = (await log.readSince(0, { limit: 10_000, scopes: ['group.g'] })).changes.filter((c) => c.collection === ref.collection && c.key === ref.key);
  expect(encodeRecordState((await readRecordState(ds, ref))!.state)).toBe(encodeRecordState(applyChanges(all, config)));
  expect((await readRecordState(ds, ref))!.state.view.fields).toMatchObject({ valueOf: 'server', toString: 'server' });
  const live = await snapshot();
  await rebuildProjections(ds, [new RecordsProjection(config)], { batchSize: 17 });
  expect(await snapshot()).toEqual(live);
});

it('a rebuild caught in a deadlock with a ServerWriter (records read, then the append lock) starts over and completes', async () => {
  const log = new PostgresChangeLog(ds);
  const appended = (await log.appendBatch(workload(40, 11))).appended;
  await new RecordsProjection(config).applyLogged(ds, appended);
  const [{ head }] = (await ds.query(`select max(seq)::int as head from change_log`)) as [{ head: number }];
  // A ServerWriter's transaction between its read of `records` and its request for the append lock.
  const writer = ds2.createQueryRunner();
  await writer.connect();
  await writer.startTransaction('READ COMMITTED');
  // The rebuild's deadlock check (1 s, the default) runs long before the writer's: the rebuild is the
  // one PostgreSQL aborts, however loaded the machine.
  await writer.query(`set local deadlock_timeout = '20s'`);
  await writer.query('select count(*) from records');
  const rebuilding = rebuildProjections(ds, [new RecordsProjection(config)]);
  // The rebuild holds the append lock and waits for `records` (its truncate).
  for (let i = 0; i < 200; i++) {
    const [w] = (await ds.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like 'truncate records%'`)) as { n: number }[];
    if ((w?.n ?? 0) > 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  let writerError: unknown;
  try {
    await writer.query(APPEND_LOCK_SQL); // the cycle: PostgreSQL aborts one side after deadlock_timeout
    await writer.commitTransaction();
  } catch (e) {
    writerError = e;
    await writer.rollbackTransaction();
  } finally {
    await writer.release();
  }
  const report = await rebuilding;
  expect(report.headSeq).toBe(head);
  // The writer commits, and the rebuild completes only because it started over.
  expect(writerError).toBeUndefined();
  expect(await readProjectionCursor(ds)).toBe(head);
});

it('ServerWriter: folds logged changes not applied yet, ticks the server once per write, never reuses a dot', async () => {
  const log = new PostgresChangeLog(ds);
  const ref = { scope: 'fleet', collection: 'l', key: 'w' };
  const writer = new ServerWriter(ds, { changeLog: log, config, node: 'server-t1' });
  const writer2 = new ServerWriter(ds2, { changeLog: new PostgresChangeLog(ds2), config, node: 'server-t2' });
  const first = await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { a: 1 } }));
  expect(first.appended[0]!.vv).toEqual({ server: 1 });
  // not applied to the projection: the next writes still see it (fold), from two writers at once
  const both = await Promise.all([
    writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { b: 2 } })),
    writer2.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { c: 3 } })),
  ]);
  const vvs = both.map((w) => w.appended[0]!.vv['server']).sort();
  expect(vvs).toEqual([2, 3]);
  const all = (await log.readSince(0, { limit: 10_000, scopes: ['fleet'] })).changes.filter((c) => c.key === 'w');
  expect(applyChanges(all, config).view.fields).toEqual({ a: 1, b: 2, c: 3 });
  await new RecordsProjection(config).applyLogged(ds, all);
  expect((await readRecordState(ds, ref))!.state.view.fields).toEqual({ a: 1, b: 2, c: 3 });
});

it('ServerWriter: refuses (FLEET_DECODE_004) a write that would grow a record past MAX_RECORD_STATE_BYTES; nothing is logged, the record stays writable', async () => {
  const log = new PostgresChangeLog(ds);
  const ref = { scope: 'fleet', collection: 'l', key: 'big' };
  const writer = new ServerWriter(ds, { changeLog: log, config, node: 'server-big' });
  const big = (i: number) => `${String(i)}${'x'.repeat(60 * 1024)}`; // each value under its own 64 KiB cap
  let n = 0;
  while ((n + 1) * 60 * 1024 < MAX_RECORD_STATE_BYTES - 8 * 1024) {
    await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { [`f${n}`]: big(n) } }));
    n++;
  }
  const logged = async () => (await log.readSince(0, { limit: 10_000, scopes: ['fleet'] })).changes.filter((c) => c.key === 'big').length;
  expect(await logged()).toBe(n);
  const refused = await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { extra: big(99), more: big(98) } })).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isFleetError(refused, 'FLEET_DECODE_004')).toBe(true);
  expect(await logged()).toBe(n);
  // A resolution is a server write too.
  const viaResolution = await writer.write([ref], (ctx) => ctx.resolve(ref, { fields: { extra: big(99), more: big(98) }, unset: [] })).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isFleetError(viaResolution, 'FLEET_DECODE_004')).toBe(true);
  await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: {}, unset: ['f0', 'f1'] }));
  await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { extra: big(99) } }));
  expect(await logged()).toBe(n + 2);
  // A record already past the cap (an agent's changes logged directly) may shrink or keep its size, not grow.
  const over = { scope: 'host.big-agent', collection: 'l', key: 'over' };
  const agentFields = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`a${i}`, big(i)]));
  const hlc = encodeHlc({ wallMs: 1_767_225_800_000, counter: 0, node: 'big-agent' });
  const appended = await log.appendBatch([makeLocalChange(emptyRecord(over), { op: 'put', fields: agentFields }, { origin: 'big-agent', originSeq: 1, changeId: testUuidV7(), hlc, protocol: 1 }, config).change]);
  expect(appended.appended).toHaveLength(1);
  await writer.write([over], (ctx) => ctx.edit(over, { op: 'put', fields: { a0: 'short' } }));
  const grow = await writer.write([over], (ctx) => ctx.edit(over, { op: 'put', fields: { b: big(1) } })).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isFleetError(grow, 'FLEET_DECODE_004')).toBe(true);
  await writer.write([over], (ctx) => ctx.edit(over, { op: 'put', fields: {}, unset: ['a1'] }));
});

it('ServerWriter optimistic: a change logged between the read and the append lock makes the callback run again on the caught-up state', async () => {
  const log = new PostgresChangeLog(ds);
  const ref = { scope: 'fleet', collection: 'l', key: 'opt' };
  const writer = new ServerWriter(ds, { changeLog: log, config, node: 'server-t3' });
  await writer.write([ref], (ctx) => ctx.edit(ref, { op: 'put', fields: { a: 1 } }));
  const [before] = (await log.readSince(0, { limit: 10_000, scopes: ['fleet'] })).changes.filter((c) => c.key === 'opt');
  // another origin's change, appended on another connection while the write is between its read and the append lock
  const agent = makeLocalChange(applyChanges([before!], config), { op: 'put', fields: { b: 2 } }, { origin: 'o9', originSeq: 1, changeId: testUuidV7(), hlc: encodeHlc({ wallMs: 1_767_225_700_000, counter: 0, node: 'o9' }), protocol: 1 }, config).change;
  const seen: (number | undefined)[] = [];
  const r = await writer.write(
    [ref],
    (ctx) => {
      seen.push(ctx.state(ref).vv['o9']);
      return ctx.edit(ref, { op: 'put', fields: { c: 3 } });
    },
    { optimistic: true, prepare: async () => void (await new PostgresChangeLog(ds2).appendBatch([agent])) },
  );
  expect(seen).toEqual([undefined, 1]); // ran before the lock, then again with the agent's change folded in
  expect(r.appended).toHaveLength(1);
  expect(r.appended[0]!.vv).toEqual({ server: 2, o9: 1 }); // derived from the head: causally after the agent's change
  const all = (await log.readSince(0, { limit: 10_000, scopes: ['fleet'] })).changes.filter((c) => c.key === 'opt');
  expect(applyChanges(all, config).view.fields).toEqual({ a: 1, b: 2, c: 3 });
});

it('log sweep: changes logged without any event are projected; two sweepers at once (no try-lock) and an event applier apply each change once; rebuild resets the cursor', async () => {
  const db2 = await createTestDatabase('fleet_sweep');
  const a = await openServerDataSource({ url: db2.url });
  const b = await openServerDataSource({ url: db2.url });
  try {
    const log = new PostgresChangeLog(a);
    const appended: LoggedChange[] = [];
    const changes = workload(500, 11);
    for (let i = 0; i < changes.length; i += 25) appended.push(...(await log.appendBatch(changes.slice(i, i + 25))).appended);
    expect(await readProjectionCursor(a)).toBe(0);
    const p = new RecordsProjection(config);
    const q = new RecordsProjection(config); // another replica (its own cache)
    let classified = 0;
    const reported: number[] = []; // conflict-log row ids, once per transaction that reported them
    const sweeper = async (proj: RecordsProjection, d: DataSource, limit: number): Promise<void> => {
      for (;;) {
        const r = await proj.sweep(d, { limit, tryLock: false });
        classified += r!.result.classified.length;
        for (const id of new Set(r!.result.conflicts.map((c) => c.id))) reported.push(id);
        if (!r!.hasMore) return;
      }
    };
    // an event applier on a third of the records at the same time (events are only wake-ups)
    const events = async (): Promise<void> => {
      for (let i = 0; i < appended.length; i += 60) {
        const r = await p.applyLogged(a, appended.slice(i, i + 60).filter((_, j) => j % 3 === 0));
        classified += r.classified.length;
        for (const id of new Set(r.conflicts.map((c) => c.id))) reported.push(id);
      }
    };
    await Promise.all([sweeper(p, a, 7), sweeper(q, b, 13), events()]);
    const head = appended[appended.length - 1]!.seq;
    expect(await readProjectionCursor(a)).toBe(head);
    expect(classified).toBe(appended.length); // each change applied exactly once across the three
    const [rows] = (await a.query(`select count(*)::int as n, count(distinct conflict_key)::int as k from conflicts`)) as { n: number; k: number }[];
    // every conflict row was inserted (and announced) by exactly one transaction
    expect(reported.length).toBe(rows!.n);
    expect(new Set(reported).size).toBe(rows!.n);
    expect(rows!.k).toBe(rows!.n);
    expect(rows!.n).toBeGreaterThan(0);
    const byRecord = new Map<string, LoggedChange[]>();
    for (const c of appended) byRecord.set(`${c.collection}/${c.key}`, [...(byRecord.get(`${c.collection}/${c.key}`) ?? []), c]);
    for (const cs of byRecord.values()) {
      const server = await readRecordState(a, cs[0]!);
      expect(encodeRecordState(server!.state)).toBe(encodeRecordState(applyChanges(cs, config)));
      expect(server!.lastSeq).toBe(cs[cs.length - 1]!.seq);
    }
    // caught up: a sweep scans nothing
    expect((await p.sweep(a))!.scanned).toBe(0);
    // the try-lock: while one sweep transaction holds it, another replica's sweep skips
    await a.transaction(async (tx) => {
      await tx.query(SWEEP_TRY_LOCK_SQL);
      expect(await q.sweep(b)).toBeUndefined();
    });

    // rebuild: resets H, replays, leaves H at the head and the rows byte-equal
    const rowsOf = async (): Promise<string[]> =>
      ((await a.query(`select scope, collection, key, state, hash, last_seq from records order by 1, 2, 3`)) as Record<string, unknown>[]).map((r) => JSON.stringify({ ...r, state: encodeRecordState(r['state'] as RecordState) }));
    const live = await rowsOf();
    const report = await rebuildProjections(a, [new RecordsProjection(config)], { batchSize: 50 });
    expect(report.headSeq).toBe(head);
    expect(await readProjectionCursor(a)).toBe(head);
    expect(await rowsOf()).toEqual(live);
    // then a silent change after the rebuild is swept from the reset cursor
    const more = workload(520, 11).slice(500);
    const extra = (await log.appendBatch(more)).appended;
    const r = await q.sweep(b);
    expect(r!.from).toBe(head);
    expect(r!.to).toBe(extra[extra.length - 1]!.seq);
    expect(r!.result.classified).toHaveLength(extra.length);
    expect(await readProjectionCursor(a)).toBe(extra[extra.length - 1]!.seq);
  } finally {
    await a.destroy();
    await b.destroy();
    await db2.drop();
  }
});
