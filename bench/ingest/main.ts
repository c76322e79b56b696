/**
 * Ingest benchmark: `node -r ./scripts/register.js bench/ingest/main.ts` from the repository root
 * (NATS on 127.0.0.1:4222 and PostgreSQL on 127.0.0.1:5432, as `npm run setup` starts them).
 *
 * Changes per second from the first publish to the last committed row, through the real
 * change-log running as a CHILD PROCESS (main.ts, as deployed: its own event loop, so the
 * publisher does not steal its CPU time), for push batches of 1, 100, 500 and 1000 changes, beside
 * two references measured in the same run: the raw JetStream publish rate of one nats.js client
 * with the same payloads, and the raw PostgreSQL multi-row insert and COPY rates into a copy of change_log.
 * Uses its own database and subject namespace, and removes them at the end.
 */
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Change } from '@fleet/sync-core';
import { encodeJson, MAX_CHANGES_PER_PUSH, subjects } from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, SHARED_NATS } from '@fleet/messaging/src/test-support';
import { openServerDataSource } from '@fleet/server-store';
import { createTestDatabase, testChange, testUuidV7 } from '@fleet/server-store/src/testing';
import { ServiceProcess } from '../../apps/change-log/src/testing/service-process';
import { natsServerPid, procCpuSecs } from '../support/proc';

const AGENTS = 8;
/** Publishes awaiting their PubAck at once (one client, pipelined). */
const WINDOW = 128;

interface Push {
  readonly subject: string;
  readonly msgId: string;
  readonly bytes: Uint8Array;
  readonly changes: number;
}

/** Pre-encoded pushes of `size` changes, `total` changes in all, round-robin over the agents. */
function makePushes(s: Subjects, size: number, total: number, seqBase: Map<string, number>): Push[] {
  const out: Push[] = [];
  for (let n = 0, i = 0; n < total; n += size, i++) {
    const agentId = `bench-${i % AGENTS}`;
    const base = seqBase.get(agentId) ?? 0;
    const changes: Change[] = Array.from({ length: size }, (_, k) => testChange(agentId, base + k + 1));
    seqBase.set(agentId, base + size);
    const batchId = testUuidV7();
    out.push({ subject: s.push(agentId), msgId: batchId, bytes: encodeJson({ protocol: 1, batchId, agentId, changes }), changes: size });
  }
  return out;
}

/** Publishes with WINDOW PubAcks outstanding; resolves when every one is stored. */
async function publishAll(m: Messaging, pushes: readonly Push[], subjectOf: (p: Push) => string = (p) => p.subject): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < pushes.length) {
      const p = pushes[next++] as Push;
      await m.publish(subjectOf(p), p.bytes, { msgId: p.msgId, timeoutMs: 30_000 });
    }
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, pushes.length) }, worker));
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const secs = (t0: number) => (performance.now() - t0) / 1000;

/**
 * CPU used by each part of the pipeline, to say where the ceiling is: the bench's publisher (this
 * process), the change-log process, nats-server, the PostgreSQL backends connected to the bench's
 * database, and PostgreSQL's WAL writer (shared with anything else running on the server).
 */
class CpuMeter {
  constructor(
    private readonly pg: Client,
    private readonly dbName: string,
    private readonly natsPid: number | undefined,
  ) {}

  async sample(servicePids: readonly number[]): Promise<Record<string, number>> {
    const r = await this.pg.query<{ pid: number; kind: string }>(
      `select pid, case when datname = $1 and pid <> pg_backend_pid() then 'postgres' else 'wal writer' end as kind
         from pg_stat_activity where (datname = $1 and pid <> pg_backend_pid()) or backend_type = 'walwriter'`,
      [this.dbName],
    );
    const out: Record<string, number> = { bench: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 };
    out['change-log'] = servicePids.reduce((a, pid) => a + procCpuSecs(pid), 0);
    out['nats-server'] = this.natsPid === undefined ? 0 : procCpuSecs(this.natsPid);
    out['postgres'] = 0;
    out['wal writer'] = 0;
    for (const { pid, kind } of r.rows) out[kind] = (out[kind] ?? 0) + procCpuSecs(pid);
    return out;
  }
}

/** `change-log 41 µs, postgres 30 µs, ...` per change, and the sum. */
function cpuLine(before: Record<string, number>, after: Record<string, number>, changes: number, wallSecs: number): string {
  const parts = Object.keys(after).map((k) => [k, ((after[k] ?? 0) - (before[k] ?? 0)) / changes] as const);
  const total = parts.reduce((a, [, v]) => a + v, 0);
  return `cpu per change: ${parts.map(([k, v]) => `${k} ${(v * 1e6).toFixed(1)} µs`).join(', ')}; total ${(total * 1e6).toFixed(1)} µs (= ${((total * changes) / wallSecs).toFixed(2)} cores busy)`;
}

async function waitForRows(pg: Client, target: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await pg.query('select coalesce(max(seq), 0)::bigint as n from change_log');
    if (Number((r.rows[0] as { n: string }).n) >= target) return;
    if (Date.now() > deadline) throw new Error(`timed out at ${String((r.rows[0] as { n: string }).n)} of ${target} rows`);
    await new Promise((res) => setTimeout(res, 2));
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const os = await import('node:os');
  console.log(`ingest benchmark: node ${process.version}, ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, NATS ${SHARED_NATS}`);
  const s = subjects(`bench${testUuidV7().slice(-8)}`);
  const rawNs = subjects(`${s.ns}raw`);
  const db = await createTestDatabase('fleet_bench_ingest');
  // Migrate once here, so the service start and the raw-insert table do not race on it.
  await (await openServerDataSource({ url: db.url, poolSize: 1 })).destroy();
  const pg = new Client({ connectionString: db.url });
  await pg.connect();
  const agent = await Messaging.connect({ servers: SHARED_NATS, name: 'bench-agent' }, s);
  const cpu = new CpuMeter(pg, db.name, natsServerPid(SHARED_NATS));
  // BENCH_PROFILE_DIR=dir: the service runs with --cpu-prof and is stopped with SIGTERM (so the profile is written).
  const profileDir = process.env['BENCH_PROFILE_DIR'];
  const procs: ServiceProcess[] = [];
  let replicaNo = 0;
  const startService = async (batchMessages: number, concurrency = 2) => {
    const p = await ServiceProcess.start(`bench-cl-${batchMessages}-${concurrency}-${++replicaNo}`, {
      databaseUrl: db.url,
      natsUrl: SHARED_NATS,
      namespace: s.ns,
      extra: {
        FLEET_CHANGELOG_LOG_LEVEL: 'warn',
        FLEET_CHANGELOG_BATCH_MESSAGES: String(batchMessages),
        FLEET_CHANGELOG_BATCH_CONCURRENCY: String(concurrency),
      },
      ...(profileDir === undefined ? {} : { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] }),
    });
    procs.push(p);
    return p;
  };
  const stopService = async (p: ServiceProcess) => {
    if (profileDir === undefined) return p.kill(); // the rows are committed; nothing pending
    p.signal('SIGTERM');
    await p.exited;
  };
  const lines: string[] = [];
  const report = (line: string) => {
    console.log(line);
    lines.push(line);
  };
  try {
    const seqBase = new Map<string, number>();
    let rows = 0;
    let svcs: ServiceProcess[] = [];
    const metric = async (series: string) => (await Promise.all(svcs.map((p) => p.metric(series)))).reduce((a, b) => a + b, 0);
    const pids = () => svcs.map((p) => p.pid).filter((pid): pid is number => pid !== undefined);
    const only = process.env['BENCH_ONLY']; // e.g. BENCH_ONLY=100: only the end-to-end runs of that batch size
    const run = async (label: string, size: number, total: number, pushesPerMessage = 1) => {
      if (only !== undefined && only !== String(size * pushesPerMessage)) return;
      const pushes = makePushes(s, size, total, seqBase);
      const before = { n: await metric('fleet_sync_change_log_append_duration_count'), t: await metric('fleet_sync_change_log_append_duration_sum') };
      const cpu0 = await cpu.sample(pids());
      const t0 = performance.now();
      await publishAll(agent, pushes);
      const tPub = secs(t0);
      rows += total;
      await waitForRows(pg, rows);
      const t = secs(t0);
      await new Promise((r) => setTimeout(r, 1200)); // one metrics collection after the last append
      const cpu1 = await cpu.sample(pids()); // after the pause: includes the events and acks after the last commit
      const txns = (await metric('fleet_sync_change_log_append_duration_count')) - before.n;
      const txnSecs = (await metric('fleet_sync_change_log_append_duration_sum')) - before.t;
      report(
        `  ${label.padEnd(44)} ${fmt(total / t).padStart(8)} changes/s  (${fmt(total)} changes in ${fmt(pushes.length / pushesPerMessage)} x ${pushesPerMessage > 1 ? `${pushesPerMessage}x` : ''}${size}, ${t.toFixed(2)} s; publishing took ${tPub.toFixed(2)} s; ${fmt(txns)} append txns, ${fmt(total / Math.max(1, txns))} changes and ${((txnSecs / Math.max(1, txns)) * 1000).toFixed(1)} ms each incl. lock wait, sum ${Math.round((txnSecs / t) * 100)} % of the wall time)`,
      );
      report(`      ${cpuLine(cpu0, cpu1, total, t)}`);
    };

    console.log('\nchange-log end to end: first publish -> last row committed (max(seq) polled every 2 ms), one nats.js client, 128 PubAcks in flight');
    console.log('  cpu per change: CPU seconds (from /proc) of each process over the run, divided by the changes: the bench (publisher and');
    console.log('  poller), the change-log, nats-server, the PostgreSQL backends of the bench database, and the WAL writer');
    console.log('  service: a child process (main.ts); the consumer takes up to FLEET_CHANGELOG_BATCH_MESSAGES pushes per transaction,');
    console.log('  FLEET_CHANGELOG_BATCH_CONCURRENCY (default 2) such groups in flight (appends serialised by the append lock)');
    const svc1 = await startService(1);
    svcs = [svc1];
    await run('batch 100, BATCH_MESSAGES=1 (txn per push)', 100, 10_000);
    await stopService(svc1);
    const svcSerial = await startService(20, 1);
    svcs = [svcSerial];
    await run('batch 100, BATCH_MESSAGES=20, CONCURRENCY=1', 100, 50_000);
    await stopService(svcSerial);
    // Two replicas sharing the durable consumer, as k8s/services/change-log.yaml deploys it.
    const pair = [await startService(20), await startService(20)];
    svcs = pair;
    await run('batch 100, BATCH_MESSAGES=20, 2 replicas', 100, 50_000);
    await Promise.all(pair.map((p) => stopService(p)));
    svcs = [await startService(20)];
    await run('batch 1, BATCH_MESSAGES=20', 1, 2_000);
    await run('batch 100, BATCH_MESSAGES=20', 100, 50_000);
    await run(`batch ${MAX_CHANGES_PER_PUSH}, BATCH_MESSAGES=20`, MAX_CHANGES_PER_PUSH, 50_000);
    // 1000 exceeds MAX_CHANGES_PER_PUSH (500): an agent sends it as 2 pushes of 500 back to back.
    await run(`batch 1000 (2 x ${MAX_CHANGES_PER_PUSH}), BATCH_MESSAGES=20`, MAX_CHANGES_PER_PUSH, 50_000, 2);

    if (only !== undefined) return;
    console.log('\nraw JetStream publish: the same pre-encoded payloads into a file stream with no consumer, one nats.js client, 128 PubAcks in flight');
    const raw = await Messaging.connect({ servers: SHARED_NATS, name: 'bench-raw' }, rawNs);
    await raw.provision([{ name: rawNs.streams.push, subjects: [rawNs.pushAll] }], { deadLetter: false });
    const rawSeq = new Map<string, number>();
    for (const [size, total] of [[1, 2_000], [100, 50_000], [MAX_CHANGES_PER_PUSH, 50_000]] as const) {
      const pushes = makePushes(s, size, total, rawSeq);
      const t0 = performance.now();
      await publishAll(raw, pushes, (p) => p.subject.replace(`${s.ns}.`, `${rawNs.ns}.`));
      const t = secs(t0);
      report(`  raw publish, batch ${String(size).padEnd(30)} ${fmt(total / t).padStart(8)} changes/s  (${fmt(pushes.length / t)} msgs/s, ${fmt(pushes.reduce((a, p) => a + p.bytes.length, 0) / t / 1024 / 1024)} MiB/s)`);
    }
    await deleteNamespaceStreams(await raw.jsm(), rawNs);
    await raw.drain();

    console.log('\nraw PostgreSQL insert: a plain insert of unnest(14 arrays), then COPY FROM STDIN of the same rows, into a copy of change_log (same indexes), one connection, one statement per transaction');
    await pg.query('create table raw_insert (like change_log including defaults including constraints including indexes)');
    // Another connection inserts: the backend that created a table stays ~2x slower at inserting into it.
    const ins = new Client({ connectionString: db.url });
    await ins.connect();
    const insPid = (await ins.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid ?? 0;
    for (const [rowsPerInsert, total] of [[100, 20_000], [2_000, 50_000]] as const) {
      const batches: Change[][] = [];
      const rawPg = new Map<string, number>();
      for (let n = 0; n < total; n += rowsPerInsert) batches.push(Array.from({ length: rowsPerInsert }, (_, k) => testChange(`raw-${n % 7}`, (rawPg.get('x') ?? 0) + n + k + 1)));
      await pg.query('truncate raw_insert');
      let seq = 0;
      const cpu0 = procCpuSecs(insPid);
      const t0 = performance.now();
      for (const b of batches) {
        const seqs = b.map(() => ++seq);
        await ins.query(
          `insert into raw_insert (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
           select * from unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[],
                                $9::jsonb[], $10::jsonb[], $11::text[], $12::jsonb[], $13::text[], $14::int[])`,
          [
            seqs,
            b.map((c) => c.changeId),
            b.map((c) => c.origin),
            b.map((c) => c.originSeq),
            b.map((c) => c.scope),
            b.map((c) => c.collection),
            b.map((c) => c.key),
            b.map((c) => c.op),
            b.map((c) => JSON.stringify(c.fields)),
            b.map(() => null),
            b.map((c) => c.hlc),
            b.map((c) => JSON.stringify(c.vv)),
            b.map((c) => c.hash),
            b.map((c) => c.protocol),
          ],
        );
      }
      const t = secs(t0);
      report(
        `  raw insert, ${String(rowsPerInsert).padEnd(5)} rows per statement${' '.repeat(20)} ${fmt(total / t).padStart(8)} changes/s  (${fmt(total)} rows, ${t.toFixed(2)} s; postgres ${(((procCpuSecs(insPid) - cpu0) / total) * 1e6).toFixed(1)} µs CPU per row)`,
      );
      // The same rows through COPY FROM STDIN (what the change log appends with), same table and connection.
      await pg.query('truncate raw_insert');
      seq = 0;
      const copyCpu0 = procCpuSecs(insPid);
      const tc = performance.now();
      for (const b of batches) {
        const text = b
          .map((c) => [++seq, c.changeId, c.origin, c.originSeq, c.scope, c.collection, c.key, c.op, JSON.stringify(c.fields), '\\N', c.hlc, JSON.stringify(c.vv), c.hash, c.protocol].join('\t'))
          .join('\n');
        await new Promise<void>((resolve, reject) => {
          const stream = ins.query(copyFrom('copy raw_insert (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol) from stdin'));
          stream.on('error', reject);
          stream.on('finish', resolve);
          stream.end(`${text}\n`);
        });
      }
      const tcs = secs(tc);
      report(
        `  raw COPY, ${String(rowsPerInsert).padEnd(5)} rows per statement${' '.repeat(22)} ${fmt(total / tcs).padStart(8)} changes/s  (${fmt(total)} rows, ${tcs.toFixed(2)} s; postgres ${(((procCpuSecs(insPid) - copyCpu0) / total) * 1e6).toFixed(1)} µs CPU per row)`,
      );
    }
    await ins.end();
  } finally {
    await Promise.all(procs.map((p) => stopService(p)));
    await deleteNamespaceStreams(await agent.jsm(), s).catch(() => undefined);
    await agent.drain();
    await pg.end();
    await db.drop();
  }
  console.log(`\ntotal ${secs(started).toFixed(1)} s; load average now ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
