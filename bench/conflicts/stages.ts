/**
 * `node -r ./scripts/register.js bench/conflicts/stages.ts [conflicts] [txn size]`: the conflicts
 * benchmark's work, stage by stage, one after the other, without NATS and in one process: what each
 * stage costs on its own (PostgreSQL + JavaScript), i.e. the floor of the end-to-end figure when
 * nothing overlaps. Stages: append the 2N edits (change log, batches of 500), classify them
 * (RecordsProjection, transactions of [txn size] changes), resolve the N conflicts (ConflictDesk +
 * ServerWriter, transactions of [txn size] conflicts), apply the N resolutions (RecordsProjection).
 * Then the floor: the durable writes those stages owe, replayed by PostgreSQL alone (see `floor`).
 */
import { cpus, loadavg } from 'node:os';
import type { Change, LoggedChange, StrategyConfig } from '@fleet/sync-core';
import { ConflictDesk, openServerDataSource, PostgresChangeLog, RecordsProjection, ServerWriter } from '@fleet/server-store';
import { createTestDatabase } from '@fleet/server-store/src/testing';
import type { DataSource } from 'typeorm';
import { Agent } from '../../apps/conflict-resolver/src/testing/harness';

const N = Number(process.argv[2] ?? 10_000);
const TXN = Number(process.argv[3] ?? 1000);
const strategies: StrategyConfig = { default: 'lww' };

async function main(): Promise<void> {
  console.log(`conflict stages: ${N} conflicts, transactions of ${TXN}, node ${process.version}, ${cpus().length} CPU(s), load ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const db = await createTestDatabase('fleet_stages');
  const ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  try {
    const log = new PostgresChangeLog(ds);
    const projection = new RecordsProjection(strategies);
    const a = new Agent('bench-a', strategies);
    const b = new Agent('bench-b', strategies);
    const refs = Array.from({ length: N }, (_, i) => ({ scope: 'group.bench', collection: 'settings', key: `doc${i}` }));
    const base = refs.map((ref) => a.write(ref, { op: 'put', fields: { n: 0, name: 'base' } }));
    b.receive(base);
    const baseLogged: LoggedChange[] = [];
    for (let i = 0; i < base.length; i += 500) baseLogged.push(...(await log.appendBatch(base.slice(i, i + 500))).appended);
    for (let i = 0; i < baseLogged.length; i += TXN) await projection.applyLogged(ds, baseLogged.slice(i, i + TXN));
    const edits: Change[] = [];
    for (const ref of refs) {
      edits.push(a.write(ref, { op: 'put', fields: { n: 1, by: 'a' } }));
      edits.push(b.write(ref, { op: 'put', fields: { n: 2, by: 'b' } }));
    }
    const time = async <T>(what: string, n: number, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const r = await fn();
      const ms = performance.now() - t0;
      console.log(`  ${what.padEnd(52)} ${ms.toFixed(0).padStart(6)} ms  (${((n / ms) * 1000).toFixed(0)}/s)`);
      return r;
    };
    const t0 = performance.now();
    const logged = await time(`append ${edits.length} edits (batches of 500)`, edits.length, async () => {
      const out: LoggedChange[] = [];
      for (let i = 0; i < edits.length; i += 500) out.push(...(await log.appendBatch(edits.slice(i, i + 500))).appended);
      return out;
    });
    const ids = await time(`classify ${logged.length} edits`, logged.length, async () => {
      const out: number[] = [];
      for (let i = 0; i < logged.length; i += TXN) out.push(...(await projection.applyLogged(ds, logged.slice(i, i + TXN))).conflicts.map((c) => c.id));
      return out;
    });
    const desk = new ConflictDesk(ds, new ServerWriter(ds, { changeLog: log, config: strategies, node: 'server-stages' }));
    const resolutions = await time(`resolve ${ids.length} conflicts`, ids.length, async () => {
      const out: LoggedChange[] = [];
      for (let i = 0; i < ids.length; i += TXN) out.push(...(await desk.resolveOpen(ids.slice(i, i + TXN))).appended);
      return out;
    });
    await time(`apply ${resolutions.length} resolutions`, resolutions.length, async () => {
      for (let i = 0; i < resolutions.length; i += TXN) await projection.applyLogged(ds, resolutions.slice(i, i + TXN));
    });
    const ms = performance.now() - t0;
    console.log(`  total, stages in sequence: ${ms.toFixed(0)} ms (${((N / ms) * 1000).toFixed(0)} conflicts/s); load now ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    await floor(ds, baseLogged.length);
  } finally {
    await ds.destroy();
    await db.drop();
  }
}

/**
 * The floor: only the durable writes the design owes for those N conflicts, replayed by PostgreSQL
 * itself from the rows the stages wrote (`insert ... select`, `update ... from`: no client, no
 * parsing, no reads, no locks, no JavaScript), into scratch copies of the tables with the same
 * indexes, one transaction (and commit) per statement, in sequence on one connection. Owed: 3N log
 * rows (2N edits, N resolutions: the log is event-sourced), 2 writes of each record's projection row
 * (the concurrent edit is folded in when detected; the resolution is a change applied like any
 * other), and each conflict recorded with both sides, then marked resolved. No implementation of this
 * design can do less work in PostgreSQL; 2 cores could at best halve the sum.
 */
async function floor(ds: DataSource, baseRows: number): Promise<void> {
  const q = (sql: string): Promise<unknown> => ds.query(sql);
  await q(`create table f_log (like change_log including all)`);
  await q(`create table f_records (like records including all)`);
  await q(`insert into f_records select * from records`);
  await q(`create table f_conflicts (like conflicts including all)`);
  await q(`analyze f_records`);
  const steps: [string, string][] = [
    ['log rows (edits and resolutions)', `insert into f_log select * from change_log where seq > ${baseRows}`],
    ['records, first write (conflict folded in)', `update f_records r set state = s.state, vv = s.vv, hash = s.hash, last_seq = s.last_seq, rev = r.rev + 1000000, updated_at = now() from records s where (s.scope, s.collection, s.key) = (r.scope, r.collection, r.key)`],
    ['conflicts recorded with both sides', `insert into f_conflicts overriding system value select id, conflict_key, scope, collection, key, seq, strategy, sides, null, 'open', null, null, detected_at, null from conflicts`],
    ['records, second write (resolution applied)', `update f_records r set state = s.state, vv = s.vv, hash = s.hash, last_seq = s.last_seq, rev = r.rev + 1000000, updated_at = now() from records s where (s.scope, s.collection, s.key) = (r.scope, r.collection, r.key)`],
    ['conflicts marked resolved', `update f_conflicts f set status = c.status, outcome = c.outcome, resolved_by = c.resolved_by, resolution_change_id = c.resolution_change_id, resolved_at = c.resolved_at from conflicts c where c.id = f.id`],
  ];
  console.log(`floor: the same rows written by PostgreSQL alone (server-side insert/update from the stages' tables, no client, no reads), one transaction each`);
  let sum = 0;
  for (const [what, sql] of steps) {
    const t0 = performance.now();
    await q(sql);
    const ms = performance.now() - t0;
    sum += ms;
    console.log(`  ${what.padEnd(52)} ${ms.toFixed(0).padStart(6)} ms`);
  }
  console.log(`  floor, in sequence: ${sum.toFixed(0)} ms; on 2 cores at best ${(sum / 2).toFixed(0)} ms`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
