/**
 * The agent's proofs, end to end: the four services as processes, a private nats-server, a fresh
 * PostgreSQL database and namespace (one deployment for the file; each proof has its own agents),
 * real SQLite stores.
 *
 * 1. A simulated week offline (2,000 edits, store clock injected so HLC wall times span 7 days),
 *    the agent restarted twice while offline: on reconnect every change is logged exactly once, in
 *    originSeq order per record, and the outbox empties.
 * 2. `agent run` as a real process, SIGKILLed during a push batch and during a pull batch: nothing
 *    lost or doubled, and after each kill the stored cursor is never ahead of what was applied.
 * 3. Clock skew of 6 hours (behind and ahead): changes accepted and ordered causally.
 * 4. Backup repair: backup, later damage, restore: the agent re-verifies (Merkle) instead of
 *    trusting the old cursor and ends identical to the server.
 * 5. A reinstalled host: the same agent id with an empty data directory writes offline, before it has
 *    seen its old records: every change of both stores is logged, the old records come back, and its
 *    new writes follow the old ones (what it writes replaces, what it does not write is kept).
 * 6. The same with the reinstalled host's clock 25 years behind (an RTC reset before NTP): its store's
 *    numbers, read off that clock, fall below the old store's; before its first sync it learns the log's
 *    highest number of its id and renumbers its offline changes above it, so the outcome is proof 5's.
 *
 * Replay: FLEET_E2E_SEED=<seed> npx jest test/agent.e2e.spec.ts (the seed is printed on failure).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { restoreSqliteStore } from '@fleet/agent-store';
import { decodeHlc, recordHash } from '@fleet/sync-core';
import type { Change } from '@fleet/sync-core';
import { checkConvergence, DEMO_COLLECTIONS, DEMO_STRATEGIES, describeResult, eventually, expectedStates, Fleet, FleetAgent, pool, Prng, readLog, REPO_ROOT, sleep } from '@fleet/fleet-harness';
import type { ConvergenceResult } from '@fleet/fleet-harness';

jest.setTimeout(170_000);

// A new seed each run unless FLEET_E2E_SEED names one (`random`, as for the convergence e2e, is a new one too).
const SEED_ENV = process.env['FLEET_E2E_SEED'];
const SEED = SEED_ENV === undefined || SEED_ENV === 'random' ? Math.floor(Math.random() * 2 ** 31) : SEED_ENV.trim() === '' ? NaN : Number(SEED_ENV);
if (!Number.isSafeInteger(SEED)) throw new Error(`FLEET_E2E_SEED must be an integer or "random", not ${JSON.stringify(SEED_ENV)}`);
const DAY = 24 * 3600_000;
const HOUR = 3600_000;

let fleet: Fleet | undefined;
let failed = false;

beforeAll(async () => {
  fleet = await Fleet.start({ agents: 0, strategies: DEMO_STRATEGIES, collections: DEMO_COLLECTIONS, privateNats: true });
});

afterAll(async () => {
  // On failure the database, agent files and service logs are kept.
  await fleet?.close({ keep: failed });
});

/** Runs a proof; on failure prints the seed and where the logs are. */
async function proof(name: string, fn: (f: Fleet, rng: Prng) => Promise<void>): Promise<void> {
  const f = fleet as Fleet;
  try {
    await fn(f, new Prng(SEED ^ hashName(name)));
  } catch (e) {
    failed = true;
    throw new Error(`FAILED with seed ${SEED} (replay: FLEET_E2E_SEED=${SEED} npx jest test/agent.e2e.spec.ts -t '${name}'); files kept in ${f.dir}\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
}

function hashName(s: string): number {
  let h = 0;
  for (const ch of s) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  return h;
}

function newAgent(f: Fleet, id: string, now?: () => number): FleetAgent {
  const a = new FleetAgent({
    id,
    dataDir: join(f.dir, 'agents', id),
    natsUrl: f.natsUrl,
    namespace: f.s.ns,
    strategies: f.config,
    collections: DEMO_COLLECTIONS,
    wire: f.wire,
    ...(now === undefined ? {} : { now }),
    onFailure: (ag, e) => void f.failures.push(`${ag.id} ${e}`),
  });
  f.agents.push(a); // closed by fleet.close()
  return a;
}

async function check(f: Fleet, agents: readonly FleetAgent[]): Promise<ConvergenceResult> {
  const r = await checkConvergence({ databaseUrl: f.db.url, agents, config: f.config, collections: DEMO_COLLECTIONS });
  if (!r.ok) throw new Error(describeResult(r));
  expect(r.duplicated).toEqual([]);
  expect(r.ackedMissing).toEqual([]);
  expect(r.madeMissing).toEqual([]);
  expect(r.outboxNotEmpty).toEqual([]);
  return r;
}

/** Until the given online agents hold every change of their scopes (and the server is quiet). */
async function converged(f: Fleet, agents: readonly FleetAgent[], timeoutMs = 90_000): Promise<void> {
  await eventually(() => f.converged(agents), timeoutMs, `${agents.map((a) => a.id).join(', ')} converged`, 100);
}

/**
 * Proofs 5 and 6: `a` installs and syncs 40 changes; its host is reinstalled (data directory gone; `atReinstall`
 * may set its clock) and writes 15 changes offline, some to old records, before it has seen them; it
 * reconnects. Checks what both proofs expect: all 55 changes logged once, the checker's fold, the old
 * records back, the new writes over the old ones, no sync failure.
 */
async function reinstallScenario(f: Fleet, a: FleetAgent, atReinstall?: () => void): Promise<{ logged: Change[]; firstOwnFrom: number; ownFromAtReinstall: number }> {
  a.goOnline();
  a.batch(() => {
    for (let i = 0; i < 30; i++) a.put('settings', `s${i}`, { v: i, by: 'first install' });
    for (let i = 0; i < 10; i++) a.put('packages', `p${i}`, { first: i });
  });
  await converged(f, [a]);
  const firstOwnFrom = a.store.syncState().ownFrom;
  atReinstall?.();
  await a.reopen(() => rmSync(a.o.dataDir, { recursive: true, force: true }));
  expect(a.store.syncState()).toMatchObject({ cursor: null, needsVerification: false, originSettled: false });
  const ownFromAtReinstall = a.store.syncState().ownFrom;
  expect(a.store.get({ scope: `host.${a.id}`, collection: 'settings', key: 's0' })).toBeNull();
  a.batch(() => {
    for (let i = 0; i < 5; i++) a.put('settings', `s${i}`, { v: 100 + i, by: 'reinstall' });
    for (let i = 0; i < 5; i++) a.put('packages', `p${i}`, { second: i });
    for (let i = 30; i < 35; i++) a.put('settings', `s${i}`, { v: i, by: 'reinstall' });
  });
  a.goOnline();
  await converged(f, [a]);
  expect(a.store.syncState().originSettled).toBe(true);
  // Nothing refused: both stores' changes are in the log, each once (the checker: nothing acked missing).
  const logged = (await readLog(f.db.url)).filter((c) => c.origin === a.id);
  expect(logged).toHaveLength(40 + 15);
  await check(f, [a]);
  const get = (collection: string, key: string) => a.store.get({ scope: `host.${a.id}`, collection, key })?.fields;
  expect(get('settings', 's20')).toEqual({ v: 20, by: 'first install' }); // came back by the pull
  expect(get('settings', 's0')).toEqual({ v: 100, by: 'reinstall' }); // the new write replaces what it writes
  expect(get('packages', 'p0')).toEqual({ first: 0, second: 0 }); // and keeps the fields it did not write
  expect(get('settings', 's30')).toEqual({ v: 30, by: 'reinstall' });
  expect(f.failures.filter((e) => e.startsWith(a.id))).toEqual([]);
  return { logged, firstOwnFrom, ownFromAtReinstall };
}

/** Per record, the agent's changes appear in the log in originSeq order. */
async function assertLoggedInOrder(f: Fleet, origin: string): Promise<number> {
  const log = (await readLog(f.db.url)).filter((c) => c.origin === origin);
  const last = new Map<string, number>();
  for (const c of log) {
    const k = `${c.scope}/${c.collection}/${c.key}`;
    const prev = last.get(k) ?? -1;
    if (c.originSeq <= prev) throw new Error(`${k}: originSeq ${c.originSeq} logged at seq ${c.seq} after originSeq ${prev}`);
    last.set(k, c.originSeq);
  }
  return log.length;
}

describe(`agent proofs (seed ${SEED})`, () => {
  it('1. a simulated week offline, 2,000 edits, two restarts: every change logged once, in order per record, outbox empty', async () => {
    await proof('1.', async (f, rng) => {
      const EDITS = 2000;
      const end = Date.now();
      // The store's clock: a week ago (simulated, advanced by each edit) until the week is over,
      // then real time. The first online sync also runs in the past, so HLCs start a week ago.
      let simNow: number | undefined = end - 7 * DAY - HOUR;
      const a = newAgent(f, 'week-1', () => simNow ?? Date.now());
      // Online first so the agent has a cursor, then the week offline.
      a.goOnline();
      a.put('settings', 'hello', { v: 0 });
      await converged(f, [a]);
      await a.goOffline();
      simNow = end - 7 * DAY;
      const keys = Array.from({ length: 150 }, (_, i) => `k${i}`);
      const colls = ['settings', 'notes', 'packages', 'hardware'] as const;
      const restartsAt = new Set([700, 1400]);
      let made = 0;
      for (let i = 0; i < EDITS; ) {
        // an hour of edits per transaction (one fsync)
        a.batch(() => {
          for (let j = 0; j < 25 && i < EDITS; j++, i++) {
            simNow = (simNow ?? 0) + Math.floor((7 * DAY) / EDITS);
            const c = rng.pick(colls);
            const k = rng.pick(keys);
            const roll = rng.next();
            const ch = roll < 0.45 ? a.put(c, k, { v: i, day: Math.floor(((simNow ?? end) - (end - 7 * DAY)) / DAY) }) : roll < 0.9 ? a.patch(c, k, { w: i }, rng.chance(0.2) ? ['v'] : []) : a.delete(c, k);
            if (ch !== null) made++;
          }
        });
        if (restartsAt.has(i)) {
          const before = a.outboxSize();
          await a.reopen();
          expect(a.outboxSize()).toBe(before);
          expect(a.online).toBe(false);
        }
      }
      expect(made).toBeGreaterThan(1500);
      const week = a.made.slice(1);
      expect(a.outboxSize()).toBe(week.length);
      const walls = week.map((c: Change) => decodeHlc(c.hlc).wallMs);
      expect(Math.max(...walls) - Math.min(...walls)).toBeGreaterThan(6.9 * DAY);
      simNow = undefined; // the week is over: back to real time
      a.goOnline();
      await converged(f, [a], 120_000);
      expect(a.outboxSize()).toBe(0);
      const r = await check(f, [a]);
      expect(a.acked.size).toBeGreaterThanOrEqual(week.length);
      const logged = await assertLoggedInOrder(f, a.id);
      expect(logged).toBe(a.made.length);
      console.log(`proof 1: ${week.length} changes over a simulated week, 2 restarts offline; log ${r.logRows} rows, ${logged} from the agent`);
    });
  });

  it('2. `agent run` SIGKILLed during a push batch and during a pull batch: nothing lost or doubled, cursor never ahead of what was applied', async () => {
    await proof('2.', async (f, rng) => {
      const id = 'proc-1';
      const a = newAgent(f, id);
      const dbFile = join(a.o.dataDir, 'agent.db');
      // A large outbox, written offline (in-process, recorded as made), before the process runs.
      const PUSH = 6000;
      const pad = 'x'.repeat(400);
      for (let i = 0; i < PUSH; i += 500) a.batch(() => {
        for (let j = i; j < i + 500; j++) a.put('notes', `n${j % 4000}`, { i: j, pad, r: rng.int(1000) });
      });
      expect(a.outboxSize()).toBe(PUSH);
      const env = {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '/tmp',
        FLEET_AGENT_ID: id,
        FLEET_AGENT_DATA_DIR: a.o.dataDir,
        FLEET_AGENT_NATS_URL: f.natsUrl,
        FLEET_AGENT_NAMESPACE: f.s.ns,
        FLEET_AGENT_STRATEGIES: JSON.stringify(DEMO_STRATEGIES),
        FLEET_AGENT_LOG_LEVEL: 'warn',
      };
      const runs: { p: ChildProcess; out: string; exited: Promise<void> }[] = [];
      const startRun = (): { p: ChildProcess; out: string; exited: Promise<void> } => {
        const p = spawn(process.execPath, ['-r', './scripts/register.js', 'apps/agent/src/main.ts', 'run'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
        const r = { p, out: '', exited: new Promise<void>((res) => p.once('exit', () => res())) };
        p.stdout?.on('data', (d: Buffer) => (r.out = (r.out + d.toString()).slice(-4000)));
        p.stderr?.on('data', (d: Buffer) => (r.out = (r.out + d.toString()).slice(-4000)));
        runs.push(r);
        return r;
      };
      const ro = (): Database.Database => {
        const db = new Database(dbFile, { readonly: true, fileMustExist: true });
        db.pragma('busy_timeout = 5000');
        return db;
      };
      const outboxCount = (db: Database.Database): number => (db.prepare('select count(*) as n from outbox').get() as { n: number }).n;
      const cursorOf = (db: Database.Database): number => {
        const raw = (db.prepare(`select v from meta where k = 'sync_state'`).get() as { v: string } | undefined)?.v;
        const c = raw === undefined ? null : (JSON.parse(raw) as { cursor: unknown }).cursor;
        return typeof c === 'number' ? c : 0;
      };
      /** Polls until `when` holds, then SIGKILLs the run; returns what `when` saw. */
      const killWhen = async (r: { p: ChildProcess; out: string; exited: Promise<void> }, when: (db: Database.Database) => boolean, what: string): Promise<void> => {
        const db = ro();
        try {
          const t0 = Date.now();
          for (;;) {
            if (r.p.exitCode !== null) throw new Error(`agent run exited (${String(r.p.exitCode)}) before ${what}:\n${r.out}`);
            if (when(db)) break;
            if (Date.now() - t0 > 60_000) throw new Error(`no ${what} within 60 s:\n${r.out}`);
            await sleep(2);
          }
          r.p.kill('SIGKILL');
          await r.exited;
        } finally {
          db.close();
        }
      };
      const stopRun = async (r: { p: ChildProcess; exited: Promise<void>; out: string }): Promise<void> => {
        r.p.kill('SIGTERM');
        await r.exited;
        if (r.p.exitCode !== 0) throw new Error(`agent run exited ${String(r.p.exitCode)} on SIGTERM:\n${r.out}`);
      };

      let killedAtOutbox = -1;
      let pullCheck = '';
      const t0 = Date.now();
      const phases: string[] = [];
      const phase = (name: string): void => void phases.push(`${name} ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      try {
      await a.reopen(async () => {
        // --- SIGKILL during the push --------------------------------------------------------------
        let r = startRun();
        await killWhen(r, (db) => {
          const n = outboxCount(db);
          if (n > 0 && n < PUSH) killedAtOutbox = n;
          return killedAtOutbox > 0;
        }, 'partial push');
        const afterKill = ro();
        const left = outboxCount(afterKill);
        afterKill.close();
        expect(left).toBeGreaterThan(0);
        expect(left).toBeLessThan(PUSH);
        r = startRun();
        // drained, logged, and pulled back (the cursor past the agent's own changes)
        await eventually(async () => {
          const [h] = await f.sql<{ n: number; m: string | null }>(`select count(*)::int as n, max(seq) as m from change_log where origin = $1`, [id]);
          const db = ro();
          try {
            return outboxCount(db) === 0 && h?.n === PUSH && cursorOf(db) >= Number(h.m);
          } finally {
            db.close();
          }
        }, 90_000, 'outbox drained, logged and pulled back after the restart');
        await stopRun(r);
        phase('push+restart');

        // --- SIGKILL during the pull --------------------------------------------------------------
        const blob = 'y'.repeat(16_000);
        const keys = Array.from({ length: 300 }, (_, i) => `big${String(i).padStart(4, '0')}`);
        await pool(keys, 8, async (k) => void (await f.serverPut({ scope: 'fleet', collection: 'settings', key: k }, { blob, k })));
        const [mx] = await f.sql<{ m: string; fmin: string }>(`select max(seq) as m, min(seq) filter (where scope = 'fleet') as fmin from change_log where scope = any($1::text[])`, [[`host.${id}`, 'fleet']]);
        const maxSeq = Number(mx?.m);
        const fleetMin = Number(mx?.fmin);
        phase('server writes');
        const db0 = ro();
        const startCursor = cursorOf(db0);
        db0.close();
        expect(startCursor).toBeLessThan(maxSeq);
        r = startRun();
        let seenCursor = -1;
        await killWhen(r, (db) => {
          const c = cursorOf(db);
          if (c > startCursor && c >= fleetMin && c < maxSeq) seenCursor = c;
          return seenCursor > 0;
        }, 'partial pull');
        // Cursor never ahead of what was applied: every change at or below the stored cursor is in
        // the store (fleet records written once each: the fold of the log up to the cursor).
        const log = await readLog(f.db.url);
        const expected = expectedStates(log.filter((c) => c.scope === 'fleet'), f.config);
        const db = ro();
        const cursor = cursorOf(db);
        const hashOf = db.prepare('select hash from records where scope = ? and collection = ? and key = ?');
        let below = 0;
        let above = 0;
        const lagging: string[] = [];
        for (const c of log) {
          if (c.scope !== 'fleet') continue;
          const e = expected.get(`${c.scope}\u0000${c.collection}\u0000${c.key}`);
          const row = hashOf.get(c.scope, c.collection, c.key) as { hash: string } | undefined;
          if (c.seq <= cursor) {
            below++;
            if (row === undefined || e === undefined || row.hash !== recordHash(e)) lagging.push(`${c.key}@${c.seq}`);
          } else above++;
        }
        db.close();
        pullCheck = `killed with cursor ${cursor} of ${maxSeq}: ${below} fleet changes at or below it all applied, ${above} above`;
        expect(lagging).toEqual([]);
        expect(below).toBeGreaterThan(0);
        expect(above).toBeGreaterThan(0);
        r = startRun();
        await eventually(async () => {
          const d = ro();
          try {
            return cursorOf(d) >= maxSeq && outboxCount(d) === 0;
          } finally {
            d.close();
          }
        }, 60_000, 'pull finished after the restart');
        await stopRun(r);
        phase('pull+restart');
      });
      } finally {
        // a failed run leaves no agent process behind
        for (const r of runs) if (r.p.exitCode === null && r.p.signalCode === null) r.p.kill('SIGKILL');
      }
      // The process is gone; the in-process stack opens the same file for the checker.
      await eventually(() => f.serverQuiet(), 60_000, 'server quiet');
      const res = await check(f, [a]);
      const logged = await assertLoggedInOrder(f, id);
      expect(logged).toBe(PUSH);
      expect(a.cursor()).toBeGreaterThan(0);
      console.log(`proof 2: push killed with ${killedAtOutbox}/${PUSH} left; pull ${pullCheck}; ${res.recordsCompared} records compared; ${runs.length} runs; ${phases.join(', ')}`);
    });
  });

  it('3. clocks 6 hours behind and ahead: changes accepted and ordered causally (HLC), the checker converges', async () => {
    await proof('3.', async (f) => {
      const behind = newAgent(f, 'skew-behind', () => Date.now() - 6 * HOUR);
      const ahead = newAgent(f, 'skew-ahead', () => Date.now() + 6 * HOUR);
      const agents = [behind, ahead];
      for (const a of agents) a.goOnline();
      const failuresBefore = f.failures.length;
      for (const a of agents) {
        a.put('settings', 'ntp', { v: 1 });
        a.put('settings', 'own', { v: 1 });
      }
      await converged(f, agents);
      for (const a of agents) {
        // the agent's own later edit wins over its earlier one
        a.patch('settings', 'own', { v: 2 });
        // the server edits the record after it saw the agent's write (causally later)
        await f.serverEditHost({ scope: `host.${a.id}`, collection: 'settings', key: 'ntp' }, () => ({ op: 'put', fields: { v: 2, by: 'server' } }));
      }
      await converged(f, agents);
      for (const a of agents) {
        expect(a.store.get({ scope: `host.${a.id}`, collection: 'settings', key: 'ntp' })?.fields).toEqual({ v: 2, by: 'server' });
        // a later causal edit from the skewed agent, after it pulled the server's
        a.put('settings', 'ntp', { v: 3 });
      }
      await converged(f, agents);
      await check(f, agents);
      const rows = await f.sql<{ scope: string; key: string; fields: unknown }>(`select scope, key, state from records where scope = any($1::text[])`, [agents.map((a) => `host.${a.id}`)]);
      expect(rows.length).toBe(4);
      for (const a of agents) {
        expect(a.store.get({ scope: `host.${a.id}`, collection: 'settings', key: 'ntp' })?.fields).toEqual({ v: 3 });
        expect(a.store.get({ scope: `host.${a.id}`, collection: 'settings', key: 'own' })?.fields).toEqual({ v: 2 });
        const walls = a.made.map((c) => decodeHlc(c.hlc).wallMs - Date.now());
        // the skew is really in the stamps
        if (a === behind) expect(Math.max(...walls)).toBeLessThan(-5 * HOUR);
        else expect(Math.min(...walls)).toBeGreaterThan(5 * HOUR);
      }
      expect(f.failures.slice(failuresBefore).filter((x) => x.startsWith('skew-'))).toEqual([]);
      const v = await Promise.all(agents.map((a) => a.verify()));
      expect(v.map((x) => x.violations)).toEqual([0, 0]);
    });
  });

  it('4. backup, damage, restore: re-verifies by Merkle exchange instead of trusting the old cursor, ends identical to the server', async () => {
    await proof('4.', async (f, rng) => {
      const a = newAgent(f, 'restore-1');
      a.goOnline();
      a.batch(() => {
        for (let i = 0; i < 60; i++) a.put(rng.pick(['settings', 'hardware']), `r${i}`, { v: i });
      });
      await converged(f, [a]);
      const info = a.store.backup({ full: true });
      // after the backup: more writes, pushed (the server has them, the backup does not)
      a.batch(() => {
        for (let i = 40; i < 90; i++) a.patch('notes', `r${i}`, { after: i });
        a.delete('settings', 'r1');
        a.delete('hardware', 'r1');
      });
      await converged(f, [a]);
      const cursorBefore = a.cursor();
      expect(cursorBefore).toBeGreaterThan(0);
      await a.reopen(() => {
        // damage: a row rewritten with garbage that still parses, then the restore
        const db = new Database(join(a.o.dataDir, 'agent.db'));
        const n = db.prepare(`update records set fields = '{"garbage":true}', hash = 'x' where key in ('r2', 'r3')`).run().changes;
        db.close();
        expect(n).toBeGreaterThan(0);
        restoreSqliteStore(info.dir, a.o.dataDir, { agentId: a.id });
      });
      const st = a.store.syncState();
      expect(st.needsVerification).toBe(true);
      expect(st.cursor).toBeNull();
      let held: unknown;
      try {
        a.put('settings', 'held', { v: 1 });
      } catch (e) {
        held = e;
      }
      expect((held as { code?: string } | undefined)?.code).toBe('FLEET_AGENT_004');
      a.lastVerify = undefined;
      a.goOnline();
      await eventually(() => a.lastVerify !== undefined && !a.store.syncState().needsVerification, 60_000, 'verification after the restore');
      const firstVerify = a.lastVerify as { violations: number; reports: unknown[] } | undefined;
      expect(firstVerify?.reports.length).toBe(a.verifyTargets().length);
      await converged(f, [a]);
      // writes work again, with origin sequences past any the lost writes used
      const c = a.put('settings', 'after-restore', { v: 1 });
      expect(c?.originSeq).toBeGreaterThan(1_000_000_000);
      await converged(f, [a]);
      await check(f, [a]);
      const v = await a.verify();
      expect(v.violations).toBe(0);
      expect(v.reports.every((r) => r.missingHere + r.missingThere + r.differing === 0)).toBe(true);
      console.log(`proof 4: restored (cursor was ${cursorBefore}), the verification it ran before clearing needsVerification found ${String(firstVerify?.violations)} violation(s) after the re-pull from an unknown cursor; a later one 0`);
    });
  });
  it('5. a reinstalled host (same agent id, empty data directory) writes offline: every change logged, the old records come back', async () => {
    await proof('5.', async (f) => {
      const a = newAgent(f, 'reinstalled-1');
      const { logged, firstOwnFrom, ownFromAtReinstall } = await reinstallScenario(f, a);
      expect(ownFromAtReinstall).toBeGreaterThan(firstOwnFrom);
      expect(new Set(logged.map((c) => c.originSeq)).size).toBe(55);
    });
  });
  it('6. a host reinstalled with its clock 25 years behind renumbers its offline changes above the old store\'s before it syncs: same outcome as 5', async () => {
    await proof('6.', async (f) => {
      let skewMs = 0;
      const a = newAgent(f, 'reinstalled-2', () => Date.now() + skewMs);
      const { logged, firstOwnFrom, ownFromAtReinstall } = await reinstallScenario(f, a, () => (skewMs = -25 * 365 * DAY));
      expect(ownFromAtReinstall).toBeLessThan(firstOwnFrom); // read off the wrong clock
      const [oldMax, newMin] = [Math.max(...logged.slice(0, 40).map((c) => c.originSeq)), Math.min(...logged.slice(40).map((c) => c.originSeq))];
      expect(newMin).toBeGreaterThan(oldMax); // renumbered above the old store's
      expect(a.store.syncState().ownFrom).toBeGreaterThan(oldMax);
    });
  });
});
