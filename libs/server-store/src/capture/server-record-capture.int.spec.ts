import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import type { LoggedChange } from '@fleet/sync-core';
import { openServerDataSource } from '../data-source';
import { APPEND_LOCK_SQL, PostgresChangeLog } from '../postgres-change-log';
import { ServerWriter } from '../records/server-writer';
import { CHANGE_COLUMNS, rowToLoggedChange, type ChangeLogRow } from '../rows';
import { PrivatePostgres } from '../testing';
import { ServerRecordCapture, type CaptureState, type RejectedRow } from './server-record-capture';

jest.setTimeout(90_000);

// A cluster of its own: capture needs wal_level=logical, whatever the shared server is set to.
let pg: PrivatePostgres;
let url: string;
let ds: DataSource;
let writer: ServerWriter;

beforeAll(async () => {
  pg = await PrivatePostgres.start({ wal_level: 'logical', max_replication_slots: 16, max_wal_senders: 16, wal_sender_timeout: '4s' });
  url = pg.createDatabase('fleet_capture');
  ds = await openServerDataSource({ url, poolSize: 6 });
  writer = new ServerWriter(ds, { changeLog: new PostgresChangeLog(ds), config: { default: 'lww' }, node: 'server-capture-test' });
});

afterAll(async () => {
  await ds?.destroy();
  pg?.stop();
});

const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };

interface Run {
  readonly capture: ServerRecordCapture;
  readonly announced: LoggedChange[];
  readonly rejected: RejectedRow[];
  /** Per rejection: whether the append lock was free while it was dead-lettered (nothing is published under it). */
  readonly lockFreeAtReject: boolean[];
  readonly warnings: string[];
}

function startCapture(slot: string, opts: { partRecords?: number; reject?: (r: RejectedRow) => Promise<void> } = {}): Run {
  const announced: LoggedChange[] = [];
  const rejected: RejectedRow[] = [];
  const lockFreeAtReject: boolean[] = [];
  const warnings: string[] = [];
  const capture = new ServerRecordCapture(ds, {
    databaseUrl: url,
    slot,
    writer,
    retryMs: 200,
    ...(opts.partRecords === undefined ? {} : { partRecords: opts.partRecords }),
    announce: async (changes) => void announced.push(...changes),
    reject:
      opts.reject ??
      (async (r) => {
        const [free] = (await ds.query(`${APPEND_LOCK_SQL.replace('pg_advisory_xact_lock', 'pg_try_advisory_xact_lock')} as free`)) as { free: boolean }[];
        lockFreeAtReject.push(free?.free === true);
        rejected.push(r);
      }),
    logger: { ...quiet, warn: (m) => void warnings.push(m) },
  });
  capture.start();
  return { capture, announced, rejected, lockFreeAtReject, warnings };
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const waitState = (c: ServerRecordCapture, s: CaptureState) => until(`capture ${s}`, () => (c.state === s ? true : undefined));

async function serverChanges(collection: string): Promise<LoggedChange[]> {
  const rows: ChangeLogRow[] = await ds.query(`select ${CHANGE_COLUMNS} from change_log where origin = 'server' and collection = $1 order by seq`, [collection]);
  return rows.map(rowToLoggedChange);
}

const changesOf = (collection: string, n: number) => until(`${n} change(s) of ${collection}`, async () => {
  const c = await serverChanges(collection);
  return c.length >= n ? c : undefined;
});

describe('capture of server-side SQL writes (logical replication, pgoutput)', () => {
  let run: Run;
  beforeAll(async () => {
    run = startCapture('fleet_capture_main');
    await waitState(run.capture, 'streaming');
  });
  afterAll(async () => {
    await run.capture.stop();
  });

  it('an insert, an update and a delete become a put of the row, a put of what changed with the removed fields unset, and a delete', async () => {
    await ds.query(`insert into server_records (scope, collection, key, fields) values ('fleet', 'cfg', 'ntp', '{"server":"a","poll":64,"pool":true}')`);
    const [put] = await changesOf('cfg', 1);
    expect(put).toMatchObject({ origin: 'server', scope: 'fleet', collection: 'cfg', key: 'ntp', op: 'put', fields: { server: 'a', poll: 64, pool: true } });
    await ds.query(`update server_records set fields = '{"server":"b","poll":64}' where key = 'ntp'`);
    const [, update] = await changesOf('cfg', 2);
    expect(update).toMatchObject({ op: 'put', fields: { server: 'b' }, unset: ['pool'] });
    expect(update?.vv['server']).toBe((put?.vv['server'] ?? 0) + 1);
    await ds.query(`delete from server_records where key = 'ntp'`);
    const [, , del] = await changesOf('cfg', 3);
    expect(del).toMatchObject({ op: 'delete', key: 'ntp' });
    // Announced after each commit, in seq order.
    await until('announcements', () => (run.announced.filter((c) => c.collection === 'cfg').length === 3 ? true : undefined));
    expect(run.announced.filter((c) => c.collection === 'cfg').map((c) => c.seq)).toEqual([put?.seq, update?.seq, del?.seq]);
  });

  it('one SQL transaction becomes its net effect: one change per record, none for a row inserted and deleted, none for an unchanged update', async () => {
    await ds.transaction(async (tx) => {
      await tx.query(`insert into server_records values ('group.web', 'tx', 'a', '{"n":1}'), ('group.web', 'tx', 'b', '{"n":1}'), ('group.web', 'tx', 'gone', '{}')`);
      await tx.query(`update server_records set fields = '{"n":2,"m":true}' where collection = 'tx' and key = 'a'`);
      await tx.query(`delete from server_records where collection = 'tx' and key = 'gone'`);
      await tx.query(`update server_records set fields = fields where collection = 'tx' and key = 'b'`);
    });
    await ds.query(`update server_records set fields = '{"n":1}' where collection = 'tx' and key = 'b'`); // same value: no change
    await ds.query(`insert into server_records values ('group.web', 'tx', 'marker', '{}')`);
    const changes = await changesOf('tx', 3);
    expect(changes.map((c) => [c.key, c.op, c.fields])).toEqual([
      ['a', 'put', { m: true, n: 2 }],
      ['b', 'put', { n: 1 }],
      ['marker', 'put', {}],
    ]);
    // The first two came in one append (consecutive seqs).
    expect((changes[1]?.seq ?? 0) - (changes[0]?.seq ?? 0)).toBe(1);
  });

  it('an update that renames a row deletes the old record and writes the new one', async () => {
    await ds.query(`insert into server_records values ('fleet', 'mv', 'old', '{"v":1}')`);
    await changesOf('mv', 1);
    await ds.query(`update server_records set key = 'new' where collection = 'mv'`);
    const changes = await changesOf('mv', 3);
    expect(changes.slice(1).map((c) => [c.key, c.op, c.fields])).toEqual([
      ['old', 'delete', {}],
      ['new', 'put', { v: 1 }],
    ]);
  });

  it('a row that cannot become a change is dead-lettered with its reason; the rest of its transaction is appended', async () => {
    await ds.transaction(async (tx) => {
      await tx.query(`insert into server_records values ('host.server', 'bad', 'k1', '{"ok":1}')`); // 'server' is no agent id
      await tx.query(`insert into server_records values ('fleet', 'bad', 'k2', $1::jsonb)`, [JSON.stringify({ ['__proto__']: 1 })]);
      await tx.query(`insert into server_records values ('fleet', 'bad', 'k3', '{"fine":true}')`);
    });
    const [ok] = await changesOf('bad', 1);
    expect(ok).toMatchObject({ key: 'k3', fields: { fine: true } });
    await until('two rejections', () => (run.rejected.filter((r) => r.row.collection === 'bad').length === 2 ? true : undefined));
    const rejected = run.rejected.filter((r) => r.row.collection === 'bad');
    expect(rejected.map((r) => [r.row.key, r.error.code])).toEqual([
      ['k1', 'FLEET_DECODE_002'],
      ['k2', 'FLEET_DECODE_002'],
    ]);
    expect(rejected[0]?.error.message).toMatch(/scope/);
    expect(rejected[1]?.error.message).toMatch(/__proto__/);
    // Stable ids: one commit, two places.
    expect(rejected[0]?.commitLsn).toBe(rejected[1]?.commitLsn);
    expect(rejected.map((r) => r.index)).toEqual([0, 1]);
  });

  it('a row that would grow its record past MAX_RECORD_STATE_BYTES is dead-lettered alone (FLEET_DECODE_004); the other rows of its transaction are appended', async () => {
    const value = (i: number) => `${String(i)}${'x'.repeat(60 * 1024)}`; // each value under its own 64 KiB cap
    const big = { scope: 'fleet', collection: 'huge', key: 'big' };
    // The record already holds ~720 KiB, written by operators (12 fields, 3 at a time).
    for (let n = 0; n < 12; n += 3) await writer.write([big], (ctx) => ctx.edit(big, { op: 'put', fields: { [`g${n}`]: value(n), [`g${n + 1}`]: value(n + 1), [`g${n + 2}`]: value(n + 2) } }));
    // A row of ~240 KiB for it (under a change's cap) would make it ~960 KiB: refused; the other row is appended.
    const row = JSON.stringify(Object.fromEntries(Array.from({ length: 4 }, (_, i) => [`f${i}`, value(i)])));
    await ds.transaction(async (tx) => {
      await tx.query(`insert into server_records values ('fleet', 'huge', 'big', $1::jsonb)`, [row]);
      await tx.query(`insert into server_records values ('fleet', 'huge', 'small', '{"ok":true}')`);
    });
    const changes = await changesOf('huge', 5);
    expect(changes[4]).toMatchObject({ key: 'small', fields: { ok: true } });
    await until('the rejection', () => (run.rejected.some((r) => r.row.collection === 'huge') ? true : undefined));
    const rejected = run.rejected.filter((r) => r.row.collection === 'huge');
    expect(rejected.map((r) => [r.row.key, r.error.code])).toEqual([['big', 'FLEET_DECODE_004']]);
    expect(rejected[0]?.error.message).toMatch(/fleet\/huge\/big .* bytes as a whole/);
    expect(changes.filter((c) => c.key === 'big')).toHaveLength(4); // the operators' writes only
    expect(run.lockFreeAtReject.every((free) => free)).toBe(true); // dead-lettered outside the append
  });

  it('the table refuses what could never be a change at write time', async () => {
    await expect(ds.query(`insert into server_records values ('nowhere', 'c', 'k', '{}')`)).rejects.toThrow(/server_records_scope/);
    await expect(ds.query(`insert into server_records values ('fleet', 'c', 'k', '[1,2]')`)).rejects.toThrow(/server_records_fields/);
  });

  it('an idle capture lets the slot move past WAL written to other tables, so a quiet table does not hold the WAL back', async () => {
    await ds.query(`create table if not exists unrelated (n int)`);
    await ds.query(`insert into unrelated select generate_series(1, 1000)`);
    const [{ lsn }] = (await ds.query(`select pg_current_wal_lsn()::text as lsn`)) as [{ lsn: string }];
    // wal_sender_timeout is 4 s: the server asks for a reply within ~2 s of quiet.
    await until('the slot past the unrelated writes', async () => {
      const [row] = (await ds.query(`select confirmed_flush_lsn >= $1::pg_lsn as past from pg_replication_slots where slot_name = 'fleet_capture_main'`, [lsn])) as Array<{ past: boolean }>;
      return row?.past === true ? true : undefined;
    }, 15_000);
  });

  it('a second capture on the same slot waits as standby', async () => {
    const second = startCapture('fleet_capture_main');
    try {
      await waitState(second.capture, 'standby');
      expect(second.capture.error).toMatch(/active/);
    } finally {
      await second.capture.stop();
    }
  });
});

describe('exactly once across restarts and failures', () => {
  // A new slot copies the rows already in the table (the initial copy): start these from an empty one.
  beforeEach(async () => {
    await ds.query(`truncate server_records`);
  });

  it('a capture stopped and started again captures what was written meanwhile, and nothing twice', async () => {
    const first = startCapture('fleet_capture_restart');
    await waitState(first.capture, 'streaming');
    await ds.query(`insert into server_records values ('fleet', 'rs', 'a', '{"v":1}')`);
    await changesOf('rs', 1);
    await first.capture.stop();
    await ds.query(`insert into server_records values ('fleet', 'rs', 'b', '{"v":1}')`);
    await ds.query(`update server_records set fields = '{"v":2}' where collection = 'rs' and key = 'a'`);
    const second = startCapture('fleet_capture_restart');
    try {
      const changes = await changesOf('rs', 3);
      await new Promise((r) => setTimeout(r, 500));
      expect((await serverChanges('rs')).map((c) => [c.key, c.fields])).toEqual([
        ['a', { v: 1 }],
        ['b', { v: 1 }],
        ['a', { v: 2 }],
      ]);
      expect(changes).toHaveLength(3);
    } finally {
      await second.capture.stop();
    }
  });

  it('a transaction streamed again after some of its parts committed resumes at the next record, even with another part size', async () => {
    // Parts of 2 records: a,b and c,d commit; the third part (bad, f) fails before its commit because the
    // dead-letter sink is down, so the stream stops unacknowledged. A capture started again with parts of
    // 3 streams the whole transaction again, skips the 4 records appended, and goes on from `bad`.
    const first = startCapture('fleet_capture_parts', {
      partRecords: 2,
      reject: async () => {
        throw new Error('dead-letter sink down');
      },
    });
    await waitState(first.capture, 'streaming');
    await ds.transaction(async (tx) => {
      await tx.query(`insert into server_records values ('fleet', 'pt', 'a', '{}'), ('fleet', 'pt', 'b', '{}'), ('fleet', 'pt', 'c', '{}'), ('fleet', 'pt', 'd', '{}')`);
      await tx.query(`insert into server_records values ('host.server', 'pt', 'bad', '{}')`);
      await tx.query(`insert into server_records values ('fleet', 'pt', 'f', '{}')`);
    });
    await changesOf('pt', 4);
    await until('the failure', () => (first.warnings.some((w) => /dead-letter sink down/.test(w)) ? true : undefined));
    await first.capture.stop();
    const progressOf = async () => ((await ds.query(`select records from capture_progress where slot = 'fleet_capture_parts'`)) as Array<{ records: number }>)[0]?.records;
    expect(await progressOf()).toBe(4);
    expect((await serverChanges('pt')).map((c) => c.key)).toEqual(['a', 'b', 'c', 'd']);

    const second = startCapture('fleet_capture_parts', { partRecords: 3 });
    try {
      await changesOf('pt', 5);
      await until('the rejection', () => (second.rejected.length === 1 ? true : undefined));
      await new Promise((r) => setTimeout(r, 500));
      expect((await serverChanges('pt')).map((c) => c.key)).toEqual(['a', 'b', 'c', 'd', 'f']);
      expect(second.rejected.map((r) => [r.row.key, r.index])).toEqual([['bad', 4]]);
      expect(await progressOf()).toBe(6);
    } finally {
      await second.capture.stop();
    }
  });

  it('a wal_level other than logical is a clear failure, retried', async () => {
    const off = await PrivatePostgres.start({ wal_level: 'replica' });
    const offUrl = off.createDatabase('fleet_capture_off');
    const offDs = await openServerDataSource({ url: offUrl, poolSize: 2 });
    try {
      const warnings: string[] = [];
      const capture = new ServerRecordCapture(offDs, {
        databaseUrl: offUrl,
        slot: 'fleet_capture_off',
        writer: new ServerWriter(offDs, { changeLog: new PostgresChangeLog(offDs), config: { default: 'lww' }, node: 'server-off' }),
        retryMs: 100,
        announce: async () => undefined,
        reject: async () => undefined,
        logger: { ...quiet, warn: (m) => void warnings.push(m) },
      });
      capture.start();
      await waitState(capture, 'failed');
      expect(capture.error).toMatch(/^FLEET_CAPTURE_001: .*wal_level is replica; capturing SQL writes needs wal_level=logical/);
      await new Promise((r) => setTimeout(r, 400));
      expect(warnings).toHaveLength(1); // the same failure is logged once, not every retry
      await capture.stop();
    } finally {
      await offDs.destroy();
      off.stop();
    }
  });
});

describe('the initial copy: rows already in the table when the slot is made', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const copyRows = async (slot: string) => ((await ds.query(`select count(*)::int as n from capture_copy where slot = $1`, [slot])) as [{ n: number }])[0].n;

  beforeEach(async () => {
    await ds.query(`truncate server_records`);
  });

  it('are appended once each in key order (a bad one dead-lettered), and the writes after the slot are streamed', async () => {
    await ds.query(`insert into server_records values ('group.web', 'cp', 'c', '{"w":true}'), ('fleet', 'cp', 'b', '{"v":1}'), ('host.server', 'cp', 'bad', '{}'), ('fleet', 'cp', 'a', '{"v":1}')`);
    const run = startCapture('fleet_capture_copy');
    try {
      await waitState(run.capture, 'streaming');
      await ds.query(`update server_records set fields = '{"v":2}' where collection = 'cp' and key = 'a'`);
      await changesOf('cp', 4);
      await sleep(500);
      expect((await serverChanges('cp')).map((c) => [c.scope, c.key, c.op, c.fields])).toEqual([
        ['fleet', 'a', 'put', { v: 1 }],
        ['fleet', 'b', 'put', { v: 1 }],
        ['group.web', 'c', 'put', { w: true }],
        ['fleet', 'a', 'put', { v: 2 }],
      ]);
      expect(run.rejected.map((r) => [r.row.key, r.index, r.error.code])).toEqual([['bad', 3, 'FLEET_DECODE_002']]);
      expect(run.announced.filter((c) => c.collection === 'cp')).toHaveLength(4);
      expect(await copyRows('fleet_capture_copy')).toBe(0);
    } finally {
      await run.capture.stop();
    }
  });

  it('a copy interrupted after some parts resumes at its next row, with another part size, and copies nothing twice', async () => {
    await ds.query(`insert into server_records values ('fleet', 'cq', 'a', '{}'), ('fleet', 'cq', 'b', '{}'), ('fleet', 'cq', 'c', $1::jsonb), ('fleet', 'cq', 'd', '{}'), ('fleet', 'cq', 'e', '{}')`, [
      JSON.stringify({ ['__proto__']: 1 }),
    ]);
    const first = startCapture('fleet_capture_copy_resume', {
      partRecords: 2,
      reject: async () => {
        throw new Error('dead-letter sink down');
      },
    });
    await until('the failure', () => (first.warnings.some((w) => /dead-letter sink down/.test(w)) ? true : undefined));
    await first.capture.stop();
    expect((await serverChanges('cq')).map((c) => c.key)).toEqual(['a', 'b']);
    expect(await copyRows('fleet_capture_copy_resume')).toBe(5);
    // Written while the capture is down: after the slot's start, so streamed, not copied.
    await ds.query(`insert into server_records values ('fleet', 'cq', 'f', '{}')`);

    const second = startCapture('fleet_capture_copy_resume', { partRecords: 3 });
    try {
      await changesOf('cq', 5);
      await sleep(500);
      expect((await serverChanges('cq')).map((c) => c.key)).toEqual(['a', 'b', 'd', 'e', 'f']);
      expect(second.rejected.map((r) => [r.row.key, r.index])).toEqual([['c', 2]]);
      expect(await copyRows('fleet_capture_copy_resume')).toBe(0);
    } finally {
      await second.capture.stop();
    }
  });

  it('a slot made by hand (no progress: nothing was taken from it) is made again, and its rows are copied', async () => {
    await ds.query(`insert into server_records values ('fleet', 'ch', 'before', '{"n":1}')`);
    await ds.query(`select pg_create_logical_replication_slot('fleet_capture_byhand', 'pgoutput')`);
    await ds.query(`insert into server_records values ('fleet', 'ch', 'after', '{"n":2}')`);
    const run = startCapture('fleet_capture_byhand');
    try {
      await waitState(run.capture, 'streaming');
      await changesOf('ch', 2);
      await sleep(500);
      // Both copied, once each: the stream of the new slot starts after them.
      expect((await serverChanges('ch')).map((c) => [c.key, c.fields])).toEqual([
        ['after', { n: 2 }],
        ['before', { n: 1 }],
      ]);
    } finally {
      await run.capture.stop();
    }
  });

  it('two replicas starting together on a new slot copy every row once and stream after the copy', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `r${String(i).padStart(2, '0')}`);
    await ds.query(`insert into server_records select 'fleet', 'c2', k, jsonb_build_object('v', 1) from unnest($1::text[]) as k`, [keys]);
    const a = startCapture('fleet_capture_two', { partRecords: 4 });
    const b = startCapture('fleet_capture_two', { partRecords: 4 });
    try {
      await until('one replica streaming', () => (a.capture.state === 'streaming' || b.capture.state === 'streaming' ? true : undefined));
      await ds.query(`update server_records set fields = '{"v":2}' where collection = 'c2' and key = 'r00'`);
      await changesOf('c2', 31);
      await sleep(800);
      const changes = await serverChanges('c2');
      expect(changes.map((c) => c.key)).toEqual([...keys, 'r00']);
      expect(changes[30]?.fields).toEqual({ v: 2 });
      expect(await copyRows('fleet_capture_two')).toBe(0);
    } finally {
      await Promise.all([a.capture.stop(), b.capture.stop()]);
    }
  });

  it('a slot dropped after capturing is made again without a copy: the rows are not put again over later edits', async () => {
    await ds.query(`insert into server_records values ('fleet', 'cd', 'a', '{"v":1}')`);
    const first = startCapture('fleet_capture_dropped');
    await waitState(first.capture, 'streaming');
    await changesOf('cd', 1);
    await ds.query(`insert into server_records values ('fleet', 'cd', 'b', '{"v":1}')`);
    await changesOf('cd', 2);
    await first.capture.stop();
    await ds.query(`select pg_drop_replication_slot('fleet_capture_dropped')`);
    const second = startCapture('fleet_capture_dropped');
    try {
      await waitState(second.capture, 'streaming');
      await ds.query(`insert into server_records values ('fleet', 'cd', 'c', '{"v":1}')`);
      await changesOf('cd', 3);
      await sleep(500);
      expect((await serverChanges('cd')).map((c) => c.key)).toEqual(['a', 'b', 'c']);
      expect(second.warnings.some((w) => /made replication slot fleet_capture_dropped again/.test(w))).toBe(true);
    } finally {
      await second.capture.stop();
    }
  });

  it('a replica does not drop or make a slot while another holds its lock (making it and storing its copy)', async () => {
    await ds.query(`insert into server_records values ('fleet', 'cl', 'a', '{}')`);
    // Making a logical slot waits for every transaction with an id in the cluster to end: wait (bounded)
    // for those of the earlier tests' captures to finish, and name them if they do not, rather than hang.
    await until('no other transaction running in the cluster', async () => {
      const open = (await ds.query(`select pid, state, left(query, 80) as query from pg_stat_activity where backend_xid is not null and pid <> pg_backend_pid()`)) as unknown[];
      return open.length === 0 ? true : undefined;
    }, 30_000).catch(async (e: unknown) => {
      throw new Error(`${String(e)}: ${JSON.stringify(await ds.query(`select pid, application_name, state, left(query, 120) as query from pg_stat_activity where backend_xid is not null and pid <> pg_backend_pid()`))}`);
    });
    await ds.query(`select pg_create_logical_replication_slot('fleet_capture_locked', 'pgoutput')`);
    const holder = new Client({ connectionString: url });
    holder.on('error', () => undefined); // the cluster stopped under it (afterAll) must not fail another suite of this worker
    await holder.connect();
    try {
      await holder.query(`select pg_advisory_lock(hashtextextended('fleet.capture.slot:fleet_capture_locked', 0))`);
      const run = startCapture('fleet_capture_locked');
      try {
        await waitState(run.capture, 'standby');
        expect(run.capture.error).toMatch(/being made by another replica/);
        const [slot] = (await ds.query(`select restart_lsn::text as lsn from pg_replication_slots where slot_name = 'fleet_capture_locked'`)) as Array<{ lsn: string }>;
        expect(slot).toBeDefined(); // not dropped
        await holder.query(`select pg_advisory_unlock_all()`);
        // Once the lock is free, the replica makes the slot again with its copy.
        await changesOf('cl', 1);
      } finally {
        await run.capture.stop();
      }
    } finally {
      await holder.end();
    }
  });

  it('a pgoutput slot of another database is refused, not dropped', async () => {
    const other = pg.createDatabase('fleet_capture_other');
    const otherDs = await openServerDataSource({ url: other, poolSize: 1 });
    try {
      await otherDs.query(`select pg_create_logical_replication_slot('fleet_capture_elsewhere', 'pgoutput')`);
      const run = startCapture('fleet_capture_elsewhere');
      try {
        await waitState(run.capture, 'failed');
        expect(run.capture.error).toMatch(/^FLEET_CAPTURE_001: .*replication slot fleet_capture_elsewhere is a pgoutput slot of database fleet_capture_other/);
        const rows = (await ds.query(`select database from pg_replication_slots where slot_name = 'fleet_capture_elsewhere'`)) as Array<{ database: string }>;
        expect(rows).toEqual([{ database: 'fleet_capture_other' }]);
      } finally {
        await run.capture.stop();
      }
    } finally {
      await otherDs.query(`select pg_drop_replication_slot('fleet_capture_elsewhere')`);
      await otherDs.destroy();
    }
  });
});
