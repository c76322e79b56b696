/**
 * The fleet scenario of `npm run demo` (and of the demo e2e test):
 * 1. agents register (group memberships) and sync their host inventory;
 * 2. the server publishes fleet-wide and group-wide desired configuration (operator API);
 * 3. a share of the agents go offline and keep editing, while the server and the online agents edit
 *    some of the same records: conflicts under every strategy (merge, lww, custom prefer-server,
 *    custom counter-sum, manual);
 * 4. the offline agents come back at once (a reconnect storm); the manual items are resolved
 *    through the operator API;
 * 5. every agent verifies with the server by Merkle exchange, and the checker compares every replica
 *    with sync-core's fold of the change log.
 * Every random choice comes from one seeded PRNG, drawn whatever the replicas hold at that moment, so
 * a seed replays the same scenario: the same edits of the same records, the same operator choices
 * (what an edit finds may still differ with timing: a delete of a record not yet pulled is a patch).
 * The report prints the draws' fingerprint (count and hash); the demo's e2e test runs a seed twice and
 * compares them.
 */
import { MAX_CRITICAL_AGENTS } from '@fleet/contracts';
import type { CriticalOperation } from '@fleet/contracts';
import { counterAdd } from '@fleet/sync-core';
import type { JsonValue, RecordRef } from '@fleet/sync-core';
import type { StrategyConfigJson } from '@fleet/config';
import type { FleetAgent } from './agent';
import { describeResult } from './checker';
import type { ConvergenceResult } from './checker';
import { Fleet } from './fleet';
import type { ConflictRow, HostEdit } from './fleet';
import { DrawTape, Prng, sleep } from './util';

export const DEMO_STRATEGIES: StrategyConfigJson = {
  default: 'lww',
  collections: {
    packages: { strategy: 'merge' },
    users: { strategy: 'lww' },
    hardware: { strategy: 'lww' },
    settings: { strategy: 'lww' },
    desired: { strategy: 'custom', rule: 'prefer-server' },
    counters: { strategy: 'custom', rule: 'counter-sum' },
    notes: { strategy: 'manual' },
  },
};
export const DEMO_COLLECTIONS = ['packages', 'users', 'hardware', 'settings', 'desired', 'counters', 'notes'] as const;
const GROUPS = ['web', 'db', 'cache'] as const;
const PACKAGES = ['openssl', 'nginx', 'curl', 'bash', 'systemd', 'openssh-server', 'postgresql-client', 'python3', 'chrony', 'rsyslog', 'git', 'vim'];
const USERS = ['root', 'deploy', 'ops', 'backup', 'monitor'];

export interface ScenarioOptions {
  readonly agents: number;
  readonly offlineShare: number;
  /** Edits per agent per edit phase. */
  readonly editRate: number;
  readonly seed: number;
  /** Progress lines (stderr in the demo). */
  readonly progress?: (line: string, redraw: boolean) => void;
  /** Run on a private nats-server (default true). */
  readonly privateNats?: boolean;
  readonly keep?: boolean;
}

export interface ScenarioReport {
  readonly ok: boolean;
  readonly text: string;
  readonly check: ConvergenceResult;
  readonly verifyViolations: number;
  readonly convergenceMs: number;
  readonly conflicts: readonly ConflictRow[];
}

interface Counters {
  phase: string;
  agentChanges: number;
  serverWrites: number;
  hostServerEdits: number;
  operatorResolutions: number;
  /** Rows written in SQL to `server_records` (captured from the WAL by conflict-resolver). */
  sqlWrites: number;
}

export async function runFleetScenario(o: ScenarioOptions): Promise<ScenarioReport> {
  const tape = new DrawTape();
  const rng = new Prng(o.seed, tape);
  // The agents' retry jitter: how many draws it takes depends on timing, so it is not on the tape.
  const jitter = rng.fork({ untaped: true });
  const t0 = performance.now();
  const counters: Counters = { phase: 'starting services', agentChanges: 0, serverWrites: 0, hostServerEdits: 0, operatorResolutions: 0, sqlWrites: 0 };
  const progress = o.progress ?? (() => undefined);
  const fleet = await Fleet.start({
    agents: o.agents,
    strategies: DEMO_STRATEGIES,
    collections: DEMO_COLLECTIONS,
    groupsOf: (i) => [GROUPS[i % GROUPS.length] as string],
    privateNats: o.privateNats ?? true,
    random: () => jitter.next(),
  });
  const startupMs = performance.now() - t0;
  let ticker: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  const tick = async (): Promise<void> => {
    const [r] = await fleet
      .sql<{ seq: number; open: number; pending: number; settled: number }>(
        `select coalesce((select max(seq) from change_log), 0)::int as seq,
                (select count(*)::int from conflicts where status = 'open') as open,
                (select count(*)::int from conflicts where status = 'pending') as pending,
                (select count(*)::int from conflicts where status in ('auto-resolved', 'resolved', 'superseded')) as settled`,
      )
      .catch(() => [undefined]);
    const online = fleet.agents.filter((a) => a.online).length;
    const outbox = fleet.agents.reduce((n, a) => n + a.outboxSize(), 0);
    const secs = ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
    progress(
      `[${secs}s] ${counters.phase.padEnd(28)} agents ${online}/${fleet.agents.length} online | changes made ${counters.agentChanges + counters.serverWrites} | logged ${r?.seq ?? '?'} | outbox ${outbox} | conflicts open ${r?.open ?? '?'} pending ${r?.pending ?? '?'} settled ${r?.settled ?? '?'} | wire ${kib(fleet.wire.bytesOut + fleet.wire.bytesIn)}`,
      true,
    );
  };
  ticker = setInterval(() => (ticking ??= tick().finally(() => (ticking = undefined))), 500);
  fleet.startSampling(250);
  const phaseTimes: [string, number][] = [];
  let last = performance.now();
  const phase = (name: string): void => {
    const now = performance.now();
    if (counters.phase !== 'starting services') phaseTimes.push([counters.phase, now - last]);
    else phaseTimes.push(['start 4 services + open agent stores', now - t0]);
    last = now;
    counters.phase = name;
  };
  const count = (c: unknown): void => void (c !== null && c !== undefined ? counters.agentChanges++ : undefined);

  try {
    // --- 1. register and sync inventory ------------------------------------------------------------
    phase('1 register + inventory');
    await fleet.registerGroups();
    await fleet.bringOnline();
    for (const a of fleet.agents) {
      const r = rng.fork();
      a.batch(() => {
        for (const p of r.shuffle(PACKAGES).slice(0, 6 + r.int(5))) count(a.put('packages', p, { version: `${1 + r.int(3)}.${r.int(20)}.${r.int(10)}`, arch: 'amd64', source: 'debian' }));
        for (const u of r.shuffle(USERS).slice(0, 2 + r.int(3))) count(a.put('users', u, { uid: 1000 + USERS.indexOf(u), shell: r.pick(['/bin/bash', '/bin/sh', '/usr/sbin/nologin']), groups: [r.pick(['sudo', 'adm', 'staff'])] }));
        count(a.put('hardware', 'host', { cpus: r.pick([2, 4, 8, 16]), memMb: r.pick([2048, 4096, 8192, 16384]), disks: 1 + r.int(3), model: r.pick(['r640', 'r650', 'm5.large', 'n2-standard-4']) }));
        count(a.put('settings', 'ntp', { server: 'pool.ntp.org', enabled: true }));
        count(a.put('settings', 'logging', { level: 'info', remote: false }));
        count(a.put('desired', 'agent-config', { interval: 60, mode: 'normal' }));
        count(a.put('counters', 'restarts', { n: counterAdd(undefined, a.id, 1) }));
        count(a.put('notes', 'owner', { text: `installed by ${a.id}`, team: r.pick(['infra', 'platform', 'data']) }));
      });
    }
    await fleet.waitConverged(120_000);

    // --- 2. desired configuration from the server --------------------------------------------------
    phase('2 fleet + group config');
    await fleet.serverPut({ scope: 'fleet', collection: 'settings', key: 'ntp' }, { server: 'ntp.corp.example', enabled: true });
    await fleet.serverPut({ scope: 'fleet', collection: 'desired', key: 'baseline' }, { minKernel: '6.1', autoUpdate: true, sshPasswordAuth: false });
    await fleet.serverPut({ scope: 'fleet', collection: 'packages', key: 'required' }, { list: ['openssl', 'chrony', 'rsyslog'] });
    counters.serverWrites += 3;
    for (const g of GROUPS) {
      await fleet.serverPut({ scope: `group.${g}`, collection: 'desired', key: 'role' }, { role: g, replicas: 1 + rng.int(5) });
      await fleet.serverPut({ scope: `group.${g}`, collection: 'settings', key: 'firewall' }, { open: g === 'web' ? [80, 443] : g === 'db' ? [5432] : [6379] });
      counters.serverWrites += 2;
    }
    // Plain SQL into server_records, captured from the WAL (docs/server-writes.md): an insert per scope, then an update.
    let sqlCaptured: number | undefined;
    if (fleet.captureSlot !== undefined) {
      await fleet.sql(`insert into server_records (scope, collection, key, fields) values ('fleet', 'settings', 'motd', $1::jsonb)`, [JSON.stringify({ text: 'managed by fleet-sync', seed: o.seed })]);
      for (const g of GROUPS) await fleet.sql(`insert into server_records (scope, collection, key, fields) values ($1, 'packages', 'pinned', $2::jsonb)`, [`group.${g}`, JSON.stringify({ list: [`${g}-agent`], channel: 'stable' })]);
      await fleet.sql(`update server_records set fields = fields || '{"channel":"lts"}'::jsonb where collection = 'packages' and key = 'pinned'`);
      counters.sqlWrites = 1 + 2 * GROUPS.length;
      const t0 = performance.now();
      for (;;) {
        const [row] = await fleet.sql<{ n: number }>(`select count(*)::int as n from change_log where origin = 'server' and ((collection = 'settings' and key = 'motd') or (collection = 'packages' and key = 'pinned'))`);
        sqlCaptured = row?.n ?? 0;
        if (sqlCaptured >= counters.sqlWrites || performance.now() - t0 > 30_000) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await fleet.waitConverged(120_000);

    // --- 2b. a critical operation: the fleet's TLS certificate, all or nothing ----------------------
    phase('2b certificate (2PC)');
    // A critical operation names at most MAX_CRITICAL_AGENTS hosts: a larger fleet rotates on its first ones.
    const certHosts = fleet.agents.slice(0, MAX_CRITICAL_AGENTS).map((a) => a.id);
    const [prepared] = await fleet.sql<{ max_prepared_transactions: string }>('show max_prepared_transactions');
    const criticalOn = prepared?.max_prepared_transactions !== '0';
    let t = performance.now();
    const rotated = criticalOn ? await fleet.beginCritical(fleetCertificate(o.seed, 1), certHosts) : undefined;
    const rotatedMs = performance.now() - t;
    if (rotated !== undefined && rotated.state !== 'committed') throw new Error(`the certificate rotation did not commit: ${rotated.state} (${rotated.reason ?? 'no reason given'})`);

    // --- 3. partition: a share offline, everyone keeps editing -------------------------------------
    phase('3 partition + edits');
    // At least one agent when the share is not 0 (a fleet of 2 with share 0.2 still partitions).
    const offlineN = o.offlineShare === 0 ? 0 : Math.max(o.agents > 1 ? 1 : 0, Math.round(o.agents * o.offlineShare));
    const offline = rng.shuffle(fleet.agents).slice(0, offlineN);
    const offlineIds = new Set(offline.map((a) => a.id));
    await fleet.takeOffline(offline);
    // A second rotation while hosts are offline cannot reach every host: it must abort, applied nowhere.
    t = performance.now();
    const blocked = offline.length === 0 || !criticalOn ? undefined : await fleet.beginCritical(fleetCertificate(o.seed, 2), certHosts, 2000);
    const blockedMs = performance.now() - t;
    if (blocked !== undefined && blocked.state !== 'aborted' && blocked.state !== 'aborting') throw new Error(`a certificate rotation with ${offline.length} hosts offline was not aborted: ${blocked.state}`);
    // The server edits some of the same host records (on every offline agent: those become
    // concurrent; on a sample of the online ones: those race with the agents' own edits).
    const serverTargets = fleet.agents.filter((a) => offlineIds.has(a.id) || rng.chance(0.3));
    const rounds = 2;
    for (let round = 0; round < rounds; round++) {
      for (const a of fleet.agents) {
        const r = rng.fork();
        a.batch(() => {
          for (let i = 0; i < o.editRate; i++) agentEdit(a, r, count);
        });
      }
      for (const a of serverTargets) {
        const r = rng.fork();
        const plan = { settings: r.pick(['ntp', 'logging']), pkg: r.pick(PACKAGES), note: r.chance(0.8) };
        // An offline agent edits the same fields of the same records meanwhile: every one of these
        // becomes a conflict under its collection's strategy when it reconnects.
        if (offlineIds.has(a.id)) a.batch(() => contestedAgentEdits(a, plan, round, count));
        for (const [ref, edit] of serverEdits(a, plan, round)) {
          await fleet.serverEditHost(ref, edit());
          counters.hostServerEdits++;
          counters.serverWrites++;
        }
      }
      await fleet.serverPut({ scope: 'fleet', collection: 'desired', key: 'baseline' }, { autoUpdate: round % 2 === 0, rolloutWave: round + 1 });
      await fleet.serverPut({ scope: `group.${rng.pick(GROUPS)}`, collection: 'desired', key: 'role' }, { replicas: 1 + rng.int(5) });
      counters.serverWrites += 2;
      await sleep(300);
    }
    // The online part of the fleet settles before the storm, so the storm is measured on its own.
    await fleet.waitConverged(120_000);

    // --- 4. reconnect storm ------------------------------------------------------------------------
    phase('4 reconnect storm');
    const storm0 = performance.now();
    await fleet.bringOnline(offline);
    const stormMs = await fleet.waitConverged(180_000);
    const convergenceMs = performance.now() - storm0;
    phase('4b operator resolves manual');
    const decisions: string[] = [];
    const operatorFailures: string[] = [];
    for (let pass = 0; pass < 20; pass++) {
      const pending = await fleet.pendingConflicts();
      if (pending.length === 0) break;
      for (const p of pending) {
        const origins = [...new Set(p.conflict.fields.flatMap((f) => f.sides.map((s) => s.origin)))].sort();
        const pick = new Prng(o.seed ^ hash32(`${p.ref.scope}/${p.ref.collection}/${p.ref.key}`)).pick(origins);
        const res = await fleet.resolveConflict(p.id, { take: pick });
        decisions.push(`${p.ref.scope}/${p.ref.collection}/${p.ref.key}: take ${pick} -> ${res.ok ? 'resolved' : `HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`}`);
        if (res.ok) counters.operatorResolutions++;
        // 409: superseded meanwhile (a later change settled it), as an operator may find it; anything else is a failure.
        else if (res.status !== 409) operatorFailures.push(decisions[decisions.length - 1] as string);
      }
      await fleet.waitConverged(120_000);
    }
    const totalConvergenceMs = performance.now() - storm0;

    // --- 5. verify -----------------------------------------------------------------------------------
    phase('5 Merkle verification');
    const verify = await fleet.verifyAll();
    phase('5b convergence check');
    await fleet.waitConverged(60_000);
    await fleet.stopSampling();
    await fleet.sample();
    const check = await fleet.check();
    const critical = rotated === undefined ? { problems: [], blockedState: '-' } : await checkCritical(fleet, certHosts, rotated.txid, blocked?.txid);
    phase('done');
    clearInterval(ticker);
    ticker = undefined;
    await ticking;

    const conflicts = await fleet.conflictStats();
    const [logStats] = await fleet.sql<{ total: number; agent: number; server: number }>(
      `select count(*)::int as total, count(*) filter (where origin <> 'server')::int as agent, count(*) filter (where origin = 'server')::int as server from change_log`,
    );
    const acked = fleet.agents.reduce((n, a) => n + a.acked.size, 0);
    const varz = await fleet.nats?.varz();
    const stillPending = (await fleet.pendingConflicts()).length;
    const ok =
      check.ok &&
      verify.violations === 0 &&
      verify.failed.length === 0 &&
      critical.problems.length === 0 &&
      operatorFailures.length === 0 &&
      stillPending === 0 &&
      (sqlCaptured === undefined || sqlCaptured === counters.sqlWrites);
    const lines: string[] = [];
    lines.push('', `fleet scenario report (seed ${o.seed}, ${o.agents} agents, ${offline.length} offline = ${(o.offlineShare * 100).toFixed(0)} %, ${o.editRate} edits per agent per round, ${rounds} rounds)`);
    lines.push(`  hosting: 4 services as child processes (change-log, version-vector, conflict-resolver, delta-calculator), ${o.agents} real agent stacks (SQLite file + SyncManager + own NATS connection each) in this process, ${fleet.nats ? `private nats-server ${fleet.natsUrl}` : `NATS ${fleet.natsUrl}`}, PostgreSQL database ${fleet.db.name}`);
    lines.push('', 'changes');
    lines.push(`  made on agents            ${counters.agentChanges}`);
    lines.push(`  acknowledged by JetStream ${acked} (PubAck, then removed from the outbox)`);
    lines.push(`  server writes             ${counters.serverWrites} (${counters.serverWrites - counters.hostServerEdits} desired config via PUT /records, ${counters.hostServerEdits} edits of host records via PUT/POST /records/host.*)`);
    lines.push(
      sqlCaptured === undefined
        ? '  SQL writes                skipped: PostgreSQL wal_level is not logical (scripts/setup.sh sets it on a cluster it manages; docs/server-writes.md)'
        : `  SQL writes                ${counters.sqlWrites} row writes in server_records (inserts, then an update), captured from the WAL as ${sqlCaptured} server changes${sqlCaptured === counters.sqlWrites ? ' (one each)' : ': NOT one each'}`,
    );
    lines.push(`  change log                ${logStats?.total ?? 0} rows: ${logStats?.agent ?? 0} from agents, ${logStats?.server ?? 0} from the server (writes + resolutions)`);
    lines.push('', 'conflicts (conflict log, by strategy and outcome)');
    const collections = [...new Set(conflicts.map((c) => c.collection))].sort();
    for (const col of collections) {
      const rows = conflicts.filter((c) => c.collection === col);
      const total = rows.reduce((n, c) => n + c.n, 0);
      lines.push(`  ${strategyLabel(col).padEnd(24)} ${col.padEnd(9)} ${String(total).padStart(5)}  ${rows.map((c) => `${c.status}${c.resolvedBy ? ` by ${c.resolvedBy}` : ''}: ${c.n}`).join(', ')}`);
    }
    const manualSample = decisions.slice(0, 3);
    if (manualSample.length > 0) lines.push(`  operator decisions (${decisions.length}), e.g.: ${manualSample.join('; ')}`);
    if (operatorFailures.length > 0) lines.push(`  operator resolutions that FAILED (${operatorFailures.length}): ${operatorFailures.slice(0, 5).join('; ')}`);
    lines.push(`  strategies that met a conflict: ${new Set(collections.map(strategyLabel)).size} of ${new Set(Object.keys(DEMO_STRATEGIES.collections ?? {}).map(strategyLabel)).size}; manual items still waiting: ${stillPending}`);
    lines.push('', 'critical operations (two-phase commit: change-log coordinator, PostgreSQL prepared transaction, SQLite staging on each host)');
    if (rotated === undefined) {
      lines.push('  skipped: PostgreSQL has max_prepared_transactions = 0 (scripts/setup.sh raises it on a cluster it manages; docs/critical-operations.md)');
    } else {
      lines.push(`  certificate ${rotated.name} rotated on ${certHosts.length} hosts + the server: committed in ${(rotatedMs / 1000).toFixed(2)} s (tx ${rotated.txid})`);
      if (blocked !== undefined) lines.push(`  a second rotation with ${offline.length} hosts offline: ${critical.blockedState} in ${(blockedMs / 1000).toFixed(2)} s, ${blocked.reason ?? ''}`);
      lines.push(`  every host and the server hold exactly the committed certificate, none in doubt, no prepared transaction left: ${critical.problems.length === 0 ? 'yes' : `NO: ${critical.problems.slice(0, 5).join('; ')}`}`);
    }
    lines.push('', 'timing');
    for (const [name, ms] of phaseTimes) lines.push(`  ${name.padEnd(36)} ${(ms / 1000).toFixed(1)} s`);
    lines.push(`  reconnect storm -> every agent holds every change of its scopes: ${(stormMs / 1000).toFixed(2)} s (${offline.length} agents at once; manual items provisional)`);
    lines.push(`  reconnect storm -> converged incl. operator resolutions:        ${(totalConvergenceMs / 1000).toFixed(2)} s`);
    lines.push(`  (startup ${(startupMs / 1000).toFixed(1)} s; storm wait measured from first reconnect to positions check, polled every 100 ms; convergence ${(convergenceMs / 1000).toFixed(2)} s)`);
    lines.push('', 'wire');
    lines.push(`  agents' payloads: ${kib(fleet.wire.bytesOut)} out (${fleet.wire.publishes} push publishes, ${fleet.wire.requests} pull/merkle requests), ${kib(fleet.wire.bytesIn)} in (replies), ${fleet.wire.nudges} nudges received`);
    if (varz !== undefined) lines.push(`  nats-server total (all clients incl. services, headers, JetStream acks): ${kib(varz.inBytes)} in, ${kib(varz.outBytes)} out, ${varz.inMsgs} msgs in, ${varz.outMsgs} msgs out`);
    lines.push('', 'queue peaks (sampled every 250 ms)');
    lines.push(`  outbox, whole fleet ${fleet.peaks.outboxTotal} changes; one agent ${fleet.peaks.outboxOneAgent}`);
    lines.push(`  push stream, not yet appended by change-log: ${fleet.peaks.pushPending} messages; log stream, not yet applied by version-vector: ${fleet.peaks.logPending} events`);
    lines.push(`  conflicts open or pending at once: ${fleet.peaks.conflictsWaiting}`);
    lines.push(`  agent sync failures reported (then retried with backoff): ${fleet.failures.length}${fleet.failures.length > 0 ? ` e.g. ${fleet.failures.slice(0, 3).join(' | ')}` : ''}`);
    lines.push('', 'verification');
    lines.push(`  Merkle exchange: ${verify.agents} agents, ${verify.targets} (scope, collection) trees, ${verify.roundTrips} round trips, ${verify.violations} violations`);
    for (const f of verify.failed.slice(0, 10)) lines.push(`    ${f}`);
    lines.push(`  ${describeResult(check).split('\n').join('\n  ')}`);
    lines.push('', `choices: ${tape.fingerprint} from seed ${o.seed} (the same seed makes the same choices)`);
    lines.push('', `VERDICT: ${ok ? 'PASS: every replica holds identical data for its scopes; no acknowledged change missing, none logged twice' : 'FAIL: replicas differ or changes are missing (details above)'}`);
    return { ok, text: lines.join('\n'), check, verifyViolations: verify.violations, convergenceMs: stormMs, conflicts };
  } catch (e) {
    const logs = [...fleet.stack.services.values()].map((s) => s.logFile).join(', ');
    throw new Error(`scenario failed in phase "${counters.phase}" (seed ${o.seed}): ${e instanceof Error ? e.message : String(e)}\n  service logs: ${logs}`, { cause: e });
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    await fleet.close(o.keep ? { keep: true } : {});
  }
}

/** A deterministic stand-in certificate for the scenario (the agents check its form and expiry, not a signature). */
function fleetCertificate(seed: number, n: number): CriticalOperation {
  const body = Buffer.from(`fleet-tls ${seed} ${n}`.padEnd(48, '.')).toString('base64');
  return { kind: 'certificate', name: 'fleet-tls', value: { pem: `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`, notAfter: '2036-01-01T00:00:00Z' } };
}

/**
 * After the storm: every host holds exactly the committed certificate (hosts that were offline during
 * the aborted rotation never saw it), none holds a transaction in doubt, the server's `critical_state`
 * agrees, and no prepared transaction is left (the aborted one included, once recovery finished it).
 */
async function checkCritical(fleet: Fleet, hosts: readonly string[], committed: string, aborted: string | undefined): Promise<{ problems: string[]; blockedState: string }> {
  let blockedState = '-';
  if (aborted !== undefined) {
    for (let i = 0; i < 100; i++) {
      const [row] = await fleet.sql<{ state: string }>('select state from critical_transactions where txid = $1', [aborted]);
      blockedState = row?.state ?? 'missing';
      if (blockedState === 'aborted') break;
      await sleep(100);
    }
  }
  const problems: string[] = [];
  if (aborted !== undefined && blockedState !== 'aborted') problems.push(`the aborted rotation is ${blockedState}`);
  const named = new Set(hosts);
  for (const a of fleet.agents) {
    const held = a.store.criticalEntries().map((e) => `${e.kind}/${e.name}@${e.txid}`);
    const expected = named.has(a.id) ? [`certificate/fleet-tls@${committed}`] : [];
    if (held.join() !== expected.join()) problems.push(`${a.id} holds [${held.join(', ')}]`);
    const inDoubt = a.store.criticalInDoubt();
    if (inDoubt.length > 0) problems.push(`${a.id} in doubt on ${inDoubt.map((d) => d.txid).join(', ')}`);
  }
  const server = await fleet.sql<{ agent_id: string; txid: string }>("select agent_id, txid::text from critical_state where kind = 'certificate' and name = 'fleet-tls'");
  const wrong = server.filter((r) => r.txid !== committed);
  if (server.length !== hosts.length || wrong.length > 0) problems.push(`the server holds ${server.length} rows, ${wrong.length} of another transaction`);
  const [prepared] = await fleet.sql<{ n: number }>('select count(*)::int as n from pg_prepared_xacts where database = current_database()');
  if ((prepared?.n ?? 0) > 0) problems.push(`${prepared?.n} prepared transaction(s) left in PostgreSQL`);
  return { problems, blockedState };
}

/** One random local edit on an agent's own host records. */
function agentEdit(a: FleetAgent, r: Prng, count: (c: unknown) => void): void {
  const kind = r.int(8);
  const pkg = r.pick(PACKAGES);
  switch (kind) {
    case 0:
    case 1: {
      // Drawn before the record is looked at (see the file comment).
      const remove = r.chance(0.2);
      const version = `${1 + r.int(3)}.${r.int(20)}.${r.int(10)}`;
      const cur = a.store.get({ scope: `host.${a.id}`, collection: 'packages', key: pkg });
      if (remove && cur?.status === 'live') count(a.delete('packages', pkg));
      else count(a.patch('packages', pkg, { version, arch: 'amd64' }));
      return;
    }
    case 2:
      count(a.patch('settings', r.pick(['ntp', 'logging']), { level: r.pick(['info', 'debug', 'warn']), enabled: r.chance(0.5) }));
      return;
    case 3:
      count(a.patch('desired', 'agent-config', { interval: r.pick([30, 60, 120, 300]) }));
      return;
    case 4: {
      const cur = a.store.get({ scope: `host.${a.id}`, collection: 'counters', key: 'restarts' });
      count(a.patch('counters', 'restarts', { n: counterAdd(cur?.fields?.['n'] as JsonValue | undefined, a.id, 1) }));
      return;
    }
    case 5:
      count(a.patch('notes', 'owner', { text: `edited on host ${a.id} #${r.int(1000)}` }));
      return;
    case 6:
      count(a.patch('users', r.pick(USERS), { shell: r.pick(['/bin/bash', '/bin/zsh']), lastLogin: 1_700_000_000 + r.int(1_000_000) }));
      return;
    default:
      count(a.patch('hardware', 'host', { memMb: r.pick([4096, 8192, 16384, 32768]) }));
  }
}

interface EditPlan {
  readonly settings: string;
  readonly pkg: string;
  readonly note: boolean;
}

/** What an offline agent does to the records the server also edits (same fields). */
function contestedAgentEdits(a: FleetAgent, plan: EditPlan, round: number, count: (c: unknown) => void): void {
  const host = (collection: string, key: string) => ({ scope: `host.${a.id}`, collection, key });
  count(a.patch('desired', 'agent-config', { interval: 45 + round }));
  const cur = a.store.get(host('counters', 'restarts'));
  count(a.patch('counters', 'restarts', { n: counterAdd(cur?.fields?.['n'] as JsonValue | undefined, a.id, 1) }));
  if (plan.note) count(a.patch('notes', 'owner', { text: `offline note from ${a.id} r${round}` }));
  count(a.patch('settings', plan.settings, { level: 'debug', enabled: false }));
  const pkg = a.store.get(host('packages', plan.pkg));
  if (pkg?.status === 'live' && round === 1) count(a.delete('packages', plan.pkg));
  else count(a.patch('packages', plan.pkg, { version: `0.${round}.1-local` }));
}

/**
 * The server's edits of one agent's host records in a round: the same fields the agent edits, so
 * each is a conflict when the agent edited concurrently (offline), under the collection's strategy.
 */
function serverEdits(a: FleetAgent, plan: EditPlan, round: number): [RecordRef, () => HostEdit][] {
  const host = (collection: string, key: string): RecordRef => ({ scope: `host.${a.id}`, collection, key });
  const out: [RecordRef, () => HostEdit][] = [];
  // custom prefer-server: the server's interval wins.
  out.push([host('desired', 'agent-config'), () => ({ op: 'put', fields: { interval: 15 * (round + 1), mode: 'managed' } })]);
  // custom counter-sum: both sides count.
  out.push([host('counters', 'restarts'), () => ({ op: 'increment', field: 'n', by: 1 })]);
  if (plan.note) out.push([host('notes', 'owner'), () => ({ op: 'put', fields: { text: `server note r${round}` } })]); // manual
  out.push([host('settings', plan.settings), () => ({ op: 'put', fields: { level: 'warn', enabled: true } })]); // lww
  // merge: the version field on both sides (the rule: lww); a delete on the agent vs this edit: edit wins.
  out.push([host('packages', plan.pkg), () => ({ op: 'put', fields: { version: `9.${round}.0`, pinned: true } })]);
  return out;
}

function strategyLabel(collection: string): string {
  const c = DEMO_STRATEGIES.collections?.[collection];
  if (c === undefined) return String(typeof DEMO_STRATEGIES.default === 'string' ? DEMO_STRATEGIES.default : DEMO_STRATEGIES.default.strategy);
  return c.rule === undefined ? c.strategy : `${c.strategy} (${c.rule})`;
}

function kib(n: number): string {
  return n >= 10 * 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

function hash32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
