/**
 * Fleet benchmark: a reconnect storm and propagation latency, on the real services.
 *
 *   npm run bench:fleet -- [--agents 1000] [--changes 100] [--probes 40]
 *
 * Setup: a private nats-server, a fresh PostgreSQL database, the four services as child processes,
 * N real agent stacks in THIS process (each its own SQLite file, synchronous=NORMAL, its own
 * SyncManager and NATS connection).
 * 1. Storm: every agent makes `changes` changes to its host scope while offline (never connected),
 *    the server writes 10 fleet records meanwhile; then every agent connects at once. Measured: from
 *    the first connect to the moment every agent holds every change of its scopes (its outbox empty,
 *    its cursor at or past the last logged change of host.<id> and fleet, the server's projections
 *    at the log's head; polled every 100 ms), then checked record by record against sync-core's fold
 *    of the log.
 * 2. Propagation, both online, one change at a time, 10 x `probes` samples each:
 *    a. server -> agents: `probes` operator writes (PUT /records group.probe/...), each until every one
 *       of the 10 agents of group `probe` has it in SQLite (store watch event): a sample per (write, agent);
 *    b. agent -> server: 10 x `probes` agent writes, round-robin over the fleet, each until the server's
 *       records projection holds it (polled every 1 ms on one PostgreSQL connection; the time it reached
 *       the change log is printed too).
 *    Agent -> another agent in one scope does not exist in this design (an agent writes only its host
 *    scope, and only it reads it): the two legs are measured apart.
 */
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import { Client } from 'pg';
import { cpuByName, cpuSince, natsServerPid, procCpuSecs } from '../support/proc';
import { DEMO_COLLECTIONS, DEMO_STRATEGIES, describeResult, Fleet, percentile, Prng, sleep } from '@fleet/fleet-harness';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { agents: { type: 'string' }, changes: { type: 'string' }, probes: { type: 'string' }, 'no-capture': { type: 'boolean' } } });
  const N = Number(values.agents ?? 1000);
  const CHANGES = Number(values.changes ?? 100);
  const PROBES = Number(values.probes ?? 40);
  const rng = new Prng(1);
  const la = (): string => loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`fleet benchmark: node ${process.version}, ${cpus().length} cores, load average ${la()}; ${N} agents x ${CHANGES} offline changes`);
  const probeLat: number[] = [];
  const pending = new Map<string, number>(); // probe key -> written at
  const t0 = performance.now();
  const fleet = await Fleet.start({
    agents: N,
    strategies: DEMO_STRATEGIES,
    collections: DEMO_COLLECTIONS,
    groupsOf: (i) => (i < 10 ? ['probe'] : []),
    privateNats: true,
    // The capture of SQL writes (a logical replication slot) runs as deployed unless --no-capture:
    // its WAL sender decodes every write of the database, the storm's included.
    capture: values['no-capture'] !== true,
    synchronous: 'NORMAL',
    random: () => rng.next(),
    serviceEnv: { 'delta-calculator': { FLEET_DELTA_MAX_CONCURRENT: '32' } },
    onRemote: (_a, ref, at) => {
      const w = pending.get(ref.key);
      if (ref.scope === 'group.probe' && w !== undefined) probeLat.push(at - w);
    },
  });
  try {
    console.log(`  setup: services up and ${N} agent stores opened in ${((performance.now() - t0) / 1000).toFixed(1)} s; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
    await fleet.registerGroups();
    // --- 1. offline changes, then the storm -----------------------------------------------------------
    const w0 = performance.now();
    for (const a of fleet.agents) {
      a.batch(() => {
        for (let i = 0; i < CHANGES; i++) a.put(i % 2 === 0 ? 'packages' : 'settings', `k${i % 50}`, { v: i, at: 'offline', host: a.id });
      });
    }
    for (let i = 0; i < 10; i++) await fleet.serverPut({ scope: 'fleet', collection: 'desired', key: `baseline-${i}` }, { v: i });
    console.log(`  offline writes: ${N * CHANGES} changes in ${((performance.now() - w0) / 1000).toFixed(1)} s (one SQLite transaction per agent)`);
    fleet.startSampling(250);
    const pids = new Map<string, number>([...fleet.stack.services].flatMap(([name, p]) => (p.pid === undefined ? [] : [[name, p.pid] as [string, number]])));
    const natsPid = natsServerPid(fleet.natsUrl);
    if (natsPid !== undefined) pids.set('nats-server', natsPid);
    const cpu0 = new Map([...pids].map(([name, pid]) => [name, procCpuSecs(pid)]));
    const pg0 = cpuByName(['postgres']);
    const self0 = process.cpuUsage();
    const s0 = performance.now();
    await fleet.bringOnline();
    let lastPrint = 0;
    const stormMs = await fleet.waitConverged(600_000, () => {
      if (performance.now() - lastPrint > 5000) {
        lastPrint = performance.now();
        const outbox = fleet.agents.reduce((n, a) => n + a.outboxSize(), 0);
        const drained = fleet.agents.filter((a) => a.outboxSize() === 0).length;
        // The outbox figures are of the tick; the server's counts are of the query's answer, which waits behind
        // whatever keeps this thread busy (seconds, in a storm): both times are printed.
        const at = ((performance.now() - s0) / 1000).toFixed(0);
        void fleet
          .sql<{ logged: number; records: number }>(`select (select count(*)::int from change_log) as logged, (select count(*)::int from records) as records`)
          .then(([r]) => {
            const answered = ((performance.now() - s0) / 1000).toFixed(0);
            console.log(`    ${at} s: outbox ${outbox} changes left, ${drained}/${N} agents drained; at ${answered} s: ${r?.logged} changes logged, ${r?.records} records projected`);
          });
      }
    });
    await fleet.stopSampling();
    const stormTotal = performance.now() - s0;
    const self = process.cpuUsage(self0);
    const cpu = [...pids].map(([name, pid]) => `${name} ${(procCpuSecs(pid) - (cpu0.get(name) ?? 0)).toFixed(1)}`);
    cpu.push(`postgres (all backends) ${cpuSince(pg0, cpuByName(['postgres'])).toFixed(1)}`, `agents (this process) ${((self.user + self.system) / 1e6).toFixed(1)}`);
    const check = await fleet.check();
    const [stats] = await fleet.sql<{ n: number }>(`select count(*)::int as n from change_log`);
    console.log(`  reconnect storm: ${N} agents x ${CHANGES} changes, all connecting at once -> every agent holds every change of its scopes: ${(stormMs / 1000).toFixed(2)} s (${(stormTotal / 1000).toFixed(2)} s incl. the last poll)`);
    console.log(`    ${stats?.n ?? 0} changes logged; ${((stats?.n ?? 0) / (stormMs / 1000)).toFixed(0)} changes/s; peaks: push stream pending ${fleet.peaks.pushPending} msgs, log stream pending ${fleet.peaks.logPending} events; agent sync failures ${fleet.failures.length}${fleet.failures.length > 0 ? ` (e.g. ${fleet.failures[0]})` : ''}`);
    console.log(`    cpu seconds during the storm: ${cpu.join(', ')}`);
    console.log(`    wire (agents' payloads): ${(fleet.wire.bytesOut / 2 ** 20).toFixed(1)} MiB out, ${(fleet.wire.bytesIn / 2 ** 20).toFixed(1)} MiB in; ${fleet.wire.publishes} publishes, ${fleet.wire.requests} requests`);
    console.log(`    ${describeResult(check).split('\n').join('\n    ')}`);
    console.log(`    target: < 20 s -> ${stormMs < 20_000 ? 'MET' : 'NOT MET'}`);

    // --- 2a. server -> agents -------------------------------------------------------------------------------
    for (let i = 0; i < PROBES; i++) {
      const key = `probe-${i}`;
      pending.set(key, Date.now());
      await fleet.serverPut({ scope: 'group.probe', collection: 'desired', key }, { i });
      await sleep(150);
    }
    await sleep(2000);
    const sorted = [...probeLat].sort((a, b) => a - b);
    console.log(`  propagation server -> agent (PUT /records group.probe, until in each of the 10 member agents' SQLite): ${sorted.length}/${PROBES * 10} samples, p50 ${percentile(sorted, 50).toFixed(0)} ms, p99 ${percentile(sorted, 99).toFixed(0)} ms, max ${sorted[sorted.length - 1] ?? NaN} ms (target p50 < 50, p99 < 250)`);

    // --- 2b. agent -> server --------------------------------------------------------------------------------
    // One connection for the polls (a connection per poll would add its own ~5 ms to every sample).
    const pg = new Client({ connectionString: fleet.db.url });
    await pg.connect();
    const lat: number[] = [];
    const logged: number[] = [];
    try {
      // As many samples as the server -> agent direction (PROBES writes x 10 agents): PROBES x 10 writes,
      // round-robin over the fleet, so both p99s are read off the same number of samples.
      for (let i = 0; i < PROBES * 10; i++) {
        const a = fleet.agents[i % fleet.agents.length];
        if (a === undefined) break;
        const start = performance.now();
        const c = a.put('settings', `probe-${i}`, { i });
        if (c === null) continue;
        let inLog: number | undefined;
        for (;;) {
          const r = await pg.query<{ l: boolean; r: boolean }>(
            `select exists (select 1 from change_log where change_id = $3) as l,
                    exists (select 1 from records where scope = $1 and collection = 'settings' and key = $2) as r`,
            [`host.${a.id}`, `probe-${i}`, c.changeId],
          );
          const row = r.rows[0];
          if (row?.l === true) inLog ??= performance.now() - start;
          if (row?.r === true) break;
          await sleep(1);
        }
        lat.push(performance.now() - start);
        if (inLog !== undefined) logged.push(inLog);
        await sleep(20);
      }
    } finally {
      await pg.end();
    }
    lat.sort((a, b) => a - b);
    logged.sort((a, b) => a - b);
    console.log(
      `  propagation agent -> server (local write until in the server's records projection; includes the 5 ms push linger): p50 ${percentile(lat, 50).toFixed(0)} ms, p99 ${percentile(lat, 99).toFixed(0)} ms (${lat.length} samples); ` +
        `of which until in the change log: p50 ${percentile(logged, 50).toFixed(0)} ms, p99 ${percentile(logged, 99).toFixed(0)} ms`,
    );
    console.log('  (no agent -> agent figure: an agent writes only its own host scope and no other agent reads it; the two legs above are the halves of any path between hosts)');
    console.log(`  load average now ${la()}; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
    process.exitCode = check.ok ? 0 : 1;
  } finally {
    await fleet.close();
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
