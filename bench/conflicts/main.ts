/**
 * `node -r ./scripts/register.js bench/conflicts/main.ts [conflicts]` (default 10,000): conflicts
 * detected and resolved per second through the real services, beside PouchDB 9 converging the same
 * number of conflicting documents by a two-way sync, in the same run.
 *
 * Ours: version-vector and conflict-resolver as child processes (their main.ts, one replica each, as
 * deployed; BENCH_IN_PROCESS=1 runs them in this process; BENCH_VV_BATCH sets version-vector's
 * BATCH_MESSAGES, default 20), real NATS and PostgreSQL (a fresh database and namespace). This process
 * plays the change log. N records are created and applied first (not timed). Then, timed: two agents'
 * edits of every record, made apart (2N concurrent changes), are appended through the change log's
 * append and event path in batches of 500; the clock stops when every conflict has been detected,
 * resolved (resolution change appended) and applied to the projection (no open conflict, every
 * record at its log head). The phases (appended, all detected, none open, at the log head) are printed.
 *
 * PouchDB: two in-memory databases; N documents written to A and replicated to B (not timed); each
 * document then edited on both sides; timed: `A.sync(B)` (both directions) until it completes, after
 * which every document on both sides has the same winning revision and lists the loser in
 * `_conflicts`: PouchDB's convergence (it keeps the losers for the application to resolve).
 */
import { cpus } from 'node:os';
import type { Change, StrategyConfig } from '@fleet/sync-core';
import { Agent, startHarness } from '../../apps/conflict-resolver/src/testing/harness';

const N = Number(process.argv[2] ?? 10_000);
const strategies: StrategyConfig = { default: 'lww' };

async function ours(): Promise<{ ms: number; detected: number; resolved: number }> {
  const inProcess = process.env['BENCH_IN_PROCESS'] === '1';
  const h = await startHarness(strategies, { batchMessages: Number(process.env['BENCH_VV_BATCH'] ?? 20), sweepInterval: '0', processes: !inProcess });
  try {
    const a = new Agent('bench-a', strategies);
    const b = new Agent('bench-b', strategies);
    const refs = Array.from({ length: N }, (_, i) => ({ scope: 'group.bench', collection: 'settings', key: `doc${i}` }));
    const base = refs.map((ref) => a.write(ref, { op: 'put', fields: { n: 0, name: 'base' } }));
    b.receive(base);
    await h.append(base);
    await h.quiesce(120_000);
    const edits: Change[] = [];
    for (const ref of refs) {
      edits.push(a.write(ref, { op: 'put', fields: { n: 1, by: 'a' } }));
      edits.push(b.write(ref, { op: 'put', fields: { n: 2, by: 'b' } }));
    }
    const t0 = performance.now();
    // Phases, polled every 10 ms with cheap counts (the harness's full quiescence check, a group-by
    // over the whole log, runs only once the counts say it can pass: polling it every 50 ms cost a
    // PostgreSQL core of its own).
    const phases: Record<string, number> = {};
    const count = async (sql: string): Promise<number> => ((await h.ds.query(sql)) as { n: number }[])[0]?.n ?? 0;
    const appending = h.append(edits).then(() => (phases['appended'] = performance.now() - t0));
    const deadline = t0 + 600_000;
    for (;;) {
      const detected = await count(`select count(*)::int as n from conflicts`);
      if (detected >= N && phases['detected'] === undefined) phases['detected'] = performance.now() - t0;
      if (detected >= N && (await count(`select count(*)::int as n from conflicts where status = 'open'`)) === 0) {
        phases['resolved'] ??= performance.now() - t0;
        const [lag] = (await h.ds.query(
          `select count(*)::int as n from (select scope, collection, key, max(seq) as m from change_log group by 1, 2, 3) l
             left join records r using (scope, collection, key) where r.last_seq is distinct from l.m`,
        )) as { n: number }[];
        if (lag?.n === 0) break;
      }
      if (performance.now() > deadline) throw new Error('not quiescent after 600 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    await appending;
    const ms = performance.now() - t0;
    const [d] = (await h.ds.query(`select count(*)::int as n from conflicts`)) as { n: number }[];
    const [r] = (await h.ds.query(`select count(*)::int as n from conflicts where status = 'auto-resolved'`)) as { n: number }[];
    const [txns] = (await h.ds.query(`select count(distinct resolution_change_id)::int as n from conflicts`)) as { n: number }[];
    console.log(
      `  phases (ms from the first append): appended ${phases['appended']?.toFixed(0)}, all detected ${phases['detected']?.toFixed(0)}, ` +
        `none open ${phases['resolved']?.toFixed(0)}, projection at the log head ${ms.toFixed(0)}; ${txns?.n} resolution changes`,
    );
    return { ms, detected: d?.n ?? 0, resolved: r?.n ?? 0 };
  } finally {
    await h.close();
  }
}

interface PouchDoc {
  _id: string;
  _rev?: string;
  _conflicts?: string[];
  n: number;
  by?: string;
}
interface PouchDb {
  bulkDocs(docs: PouchDoc[]): Promise<{ id: string; rev: string }[]>;
  allDocs(o: { include_docs: boolean; conflicts?: boolean }): Promise<{ rows: { doc: PouchDoc }[] }>;
  replicate: { to(db: PouchDb): Promise<unknown> };
  sync(db: PouchDb): Promise<unknown>;
  destroy(): Promise<unknown>;
}

async function pouch(): Promise<{ ms: number; conflicts: number }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- PouchDB ships no types; bench-only dev dependency
  const PouchDB = require('pouchdb').plugin(require('pouchdb-adapter-memory')) as new (name: string, o: { adapter: string }) => PouchDb;
  const A = new PouchDB(`a-${process.pid}`, { adapter: 'memory' });
  const B = new PouchDB(`b-${process.pid}`, { adapter: 'memory' });
  try {
    await A.bulkDocs(Array.from({ length: N }, (_, i) => ({ _id: `doc${i}`, n: 0 })));
    await A.replicate.to(B);
    for (const [db, n, by] of [[A, 1, 'a'], [B, 2, 'b']] as const) {
      const docs = (await db.allDocs({ include_docs: true })).rows.map((r) => ({ ...r.doc, n, by }));
      await db.bulkDocs(docs);
    }
    const t0 = performance.now();
    await A.sync(B);
    const ms = performance.now() - t0;
    const rows = (await A.allDocs({ include_docs: true, conflicts: true })).rows;
    return { ms, conflicts: rows.filter((r) => (r.doc._conflicts ?? []).length > 0).length };
  } finally {
    await A.destroy();
    await B.destroy();
  }
}

async function main(): Promise<void> {
  console.log(`conflicts benchmark: ${N} conflicting records, node ${process.version}, ${cpus().length} CPU(s)`);
  const p = process.env['BENCH_SKIP_POUCH'] ? { ms: NaN, conflicts: 0 } : await pouch();
  console.log(`PouchDB 9 (memory adapter), two-way sync of ${N} conflicting docs: ${p.ms.toFixed(0)} ms (${((N / p.ms) * 1000).toFixed(0)} conflicts/s), ${p.conflicts} docs left with _conflicts`);
  const o = await ours();
  console.log(
    `fleet-sync (change log -> version-vector -> conflict-resolver -> version-vector): ${o.ms.toFixed(0)} ms for ${o.detected} conflicts detected and ${o.resolved} resolved ` +
      `(${((o.detected / o.ms) * 1000).toFixed(0)} detected/s, ${((o.resolved / o.ms) * 1000).toFixed(0)} resolved and applied/s)`,
  );
  console.log(`ratio: PouchDB time / ours = ${(p.ms / o.ms).toFixed(2)} (target >= 4)`);
  process.exit(0);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
