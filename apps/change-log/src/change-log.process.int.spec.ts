/**
 * Process-level fault tests: the change-log runs as real child processes (main.ts, env config)
 * against real NATS and PostgreSQL. Each scenario has its own database and subject namespace;
 * everything (processes, streams, databases, the private nats-server) is cleaned up in afterAll.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamManager } from '@nats-io/jetstream';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import type { DataSource } from 'typeorm';
import type { Change, LoggedChange } from '@fleet/sync-core';
import { decodeAppendedEvent, encodeJson } from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, PrivateNatsServer, readStream, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import { createTestDatabase, testChange, testUuidV7 } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { ServiceProcess } from './testing/service-process';

jest.setTimeout(90_000);

const procs: ServiceProcess[] = [];
const dbs: TestDatabase[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  for (const c of cleanups.reverse()) await c().catch((e: unknown) => console.warn('cleanup:', e));
  await Promise.all(dbs.map((d) => d.drop().catch(() => undefined)));
});

async function start(name: string, db: TestDatabase, natsUrl: string, s: Subjects, extra: Record<string, string> = {}): Promise<ServiceProcess> {
  const p = await ServiceProcess.start(name, { databaseUrl: db.url, natsUrl, namespace: s.ns, extra: { FLEET_CHANGELOG_LOG_LEVEL: 'warn', ...extra } });
  procs.push(p);
  return p;
}

async function scenario(prefix: string, natsUrl: string): Promise<{ s: Subjects; db: TestDatabase; agent: Messaging; jsm: JetStreamManager; pg: Client }> {
  const s = testNamespace(prefix);
  const db = await createTestDatabase(`fleet_clproc_${prefix}`);
  dbs.push(db);
  const agent = await Messaging.connect({ servers: natsUrl, name: `test-agent-${prefix}`, reconnectTimeWaitMs: 100 }, s);
  const jsm = await jetstreamManager(agent.nc);
  const pg = new Client({ connectionString: db.url });
  await pg.connect();
  cleanups.push(async () => {
    await pg.end();
    await deleteNamespaceStreams(jsm, s).catch(() => undefined);
    await agent.drain();
  });
  return { s, db, agent, jsm, pg };
}

const pushBody = (agentId: string, changes: readonly Change[]) => ({ protocol: 1, batchId: testUuidV7(), agentId, changes });

/** Publishes a push batch, retrying (same msg id: JetStream dedupes) until JetStream stores it. */
async function publishPush(agent: Messaging, s: Subjects, agentId: string, changes: readonly Change[], msgId?: string): Promise<void> {
  const body = pushBody(agentId, changes);
  const id = msgId ?? body.batchId;
  for (let attempt = 0; ; attempt++) {
    try {
      await agent.publish(s.push(agentId), encodeJson(body), { msgId: id, timeoutMs: 2000 });
      return;
    } catch (e) {
      if (attempt > 100) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const num = async (pg: Client, sql: string): Promise<number> => Number(((await pg.query(sql)).rows[0] as { n: string | number }).n);

async function settled(jsm: JetStreamManager, s: Subjects): Promise<void> {
  await eventually(async () => {
    const info = await jsm.consumers.info(s.streams.push, `${s.ns}-change-log`);
    return info.num_pending === 0 && info.num_ack_pending === 0;
  }, 30_000, 'push consumer drained');
}

describe('change-log as processes', () => {
  it('SIGKILL between commit and ack: the redelivery appends nothing again and re-emits the appended events', async () => {
    const { s, db, agent, jsm, pg } = await scenario('kill', SHARED_NATS);
    const fast = { FLEET_CHANGELOG_ACK_WAIT: '2s' };
    // Published after the start (the service provisions the streams): the first group is committed, then the process dies.
    const doomed = await start('cl-kill-1', db, SHARED_NATS, s, { ...fast, FLEET_FAILPOINTS: 'change-log.after-commit=kill' });
    const changes = Array.from({ length: 60 }, (_, i) => testChange('agent-k', i + 1));
    await publishPush(agent, s, 'agent-k', changes);

    expect(await doomed.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(doomed.log).toContain('failpoint change-log.after-commit: SIGKILL');
    expect(await num(pg, 'select count(*) as n from change_log')).toBe(60); // committed
    expect((await readStream(jsm, s.streams.log)).length).toBe(0); // never announced
    expect((await jsm.consumers.info(s.streams.push, `${s.ns}-change-log`)).num_ack_pending).toBe(1); // never acked

    await start('cl-kill-2', db, SHARED_NATS, s, fast);
    await settled(jsm, s);
    const events = await eventually(async () => {
      const msgs = await readStream(jsm, s.streams.log);
      return msgs.length > 0 ? msgs.map((m) => decodeAppendedEvent(m.data)) : undefined;
    }, 15_000, 'appended event after redelivery');
    expect(await num(pg, 'select count(*) as n from change_log')).toBe(60);
    expect(await num(pg, `select changes_count as n from origin_progress where origin = 'agent-k'`)).toBe(60);
    const announced = events.flatMap((e) => e.changes);
    expect(announced.map((c) => c.changeId)).toEqual(changes.map((c) => c.changeId.toLowerCase()));
    expect(announced.map((c) => c.seq)).toEqual(changes.map((_, i) => i + 1));
  });

  it('NATS killed (-9) and restarted during ingest: every change appended exactly once', async () => {
    const nats = await PrivateNatsServer.start();
    cleanups.push(() => nats.stop());
    const { s, db, agent, jsm, pg } = await scenario('natsrs', nats.url);
    // One push per transaction, each held 200 ms after its commit: ingest of the first 15 pushes
    // takes over a second, so NATS dies in the middle of it, not after it.
    await start('cl-natsrs', db, nats.url, s, {
      FLEET_CHANGELOG_ACK_WAIT: '3s',
      FLEET_CHANGELOG_BATCH_MESSAGES: '1',
      FLEET_FAILPOINTS: 'change-log.after-commit=delay(200)',
    });
    const batches = Array.from({ length: 30 }, (_, b) => Array.from({ length: 50 }, (_, i) => testChange(`agent-n${b % 3}`, Math.floor(b / 3) * 50 + i + 1)));
    for (const [b, changes] of batches.slice(0, 15).entries()) await publishPush(agent, s, `agent-n${b % 3}`, changes);
    await eventually(async () => (await num(pg, 'select count(*) as n from change_log')) > 0, 15_000, 'ingest under way');

    await nats.kill();
    // Read after the kill (the count only grows): at the moment NATS died, some of the 750 changes
    // published so far were not appended yet; ingest was under way (some were).
    const atKill = await num(pg, 'select count(*) as n from change_log');
    await nats.startProcess(); // before asserting: a failure with NATS down would hang the clean-up
    expect(atKill).toBeGreaterThan(0);
    expect(atKill).toBeLessThan(15 * 50);
    for (const [b, changes] of batches.slice(15).entries()) await publishPush(agent, s, `agent-n${(b + 15) % 3}`, changes);

    await eventually(async () => (await num(pg, 'select count(*) as n from change_log')) >= 1500, 45_000, 'all 1500 changes');
    await settled(jsm, s);
    const all = batches.flat();
    expect(await num(pg, 'select count(*) as n from change_log')).toBe(all.length);
    expect(await num(pg, 'select count(distinct change_id) as n from change_log')).toBe(all.length);
    expect(await num(pg, 'select max(seq) as n from change_log')).toBe(all.length);
    const ids = new Set(((await pg.query('select change_id from change_log')).rows as Array<{ change_id: string }>).map((r) => r.change_id));
    for (const c of all) expect(ids.has(c.changeId.toLowerCase())).toBe(true);
  });

  it('two replicas on one durable: each change once, a polling cursor reader sees no gap; a replay days later adds nothing; SIGTERM drains', async () => {
    const { s, db, agent, jsm, pg } = await scenario('two', SHARED_NATS);
    const [r1, r2] = await Promise.all([start('cl-r1', db, SHARED_NATS, s), start('cl-r2', db, SHARED_NATS, s)]);

    // The reader: readSince in a tight loop during ingest, asserting seq == cursor + 1 for everything it reads.
    const ds: DataSource = await openServerDataSource({ url: db.url, poolSize: 1 });
    cleanups.push(() => ds.destroy());
    const reader = new PostgresChangeLog(ds);
    const total = 60 * 100;
    let cursor = 0;
    const read: LoggedChange[] = [];
    let gaps = 0;
    const readerDone = (async () => {
      const deadline = Date.now() + 60_000;
      while (cursor < total && Date.now() < deadline) {
        const page = await reader.readSince(cursor, { limit: 1000 });
        for (const c of page.changes) {
          if (c.seq !== cursor + 1) gaps++;
          cursor = c.seq;
          read.push(c);
        }
        if (page.changes.length === 0) await new Promise((r) => setTimeout(r, 5));
      }
    })();

    const batches = Array.from({ length: 60 }, (_, b) => Array.from({ length: 100 }, (_, i) => testChange(`agent-t${b % 6}`, Math.floor(b / 6) * 100 + i + 1)));
    for (let i = 0; i < batches.length; i += 10) {
      await Promise.all(batches.slice(i, i + 10).map((changes, j) => publishPush(agent, s, `agent-t${(i + j) % 6}`, changes)));
    }
    await readerDone;
    await settled(jsm, s);

    expect(gaps).toBe(0);
    expect(read.length).toBe(total);
    expect(new Set(read.map((c) => c.changeId)).size).toBe(total);
    expect(await num(pg, 'select count(*) as n from change_log')).toBe(total);
    expect(await num(pg, 'select count(distinct change_id) as n from change_log')).toBe(total);
    const [a1, a2] = [await r1.metric('fleet_sync_changes_appended_total'), await r2.metric('fleet_sync_changes_appended_total')];
    expect(a1 + a2).toBe(total); // the metric counts what each replica appended; together, everything once
    expect(await r1.metric('fleet_sync_change_log_append_duration_count')).toBeGreaterThan(0);

    // "A day later": the same changes pushed again under a new batch id and Nats-Msg-Id (JetStream's
    // dedupe window long gone): no new row, and the event is re-emitted with the seqs they already have.
    const replayed = batches[7] as Change[];
    const logBefore = (await jsm.streams.info(s.streams.log)).state.messages;
    await publishPush(agent, s, 'agent-t1', replayed, `replay-${testUuidV7()}`);
    await settled(jsm, s);
    expect(await num(pg, 'select count(*) as n from change_log')).toBe(total);
    expect(await num(pg, `select count(*) as n from change_log where change_id = '${replayed[0]!.changeId.toLowerCase()}'`)).toBe(1);
    const after = await eventually(async () => {
      const info = await jsm.streams.info(s.streams.log);
      return info.state.messages > logBefore ? info : undefined;
    }, 10_000, 'replay re-announced');
    const stored = await jsm.streams.getMessage(s.streams.log, { seq: after.state.last_seq });
    if (stored === null) throw new Error('last appended event not found');
    const last = decodeAppendedEvent(stored.data);
    expect(last.changes.map((c) => c.changeId)).toEqual(replayed.map((c) => c.changeId.toLowerCase()));
    expect(await r1.metric('fleet_sync_changes_ingested_total') + (await r2.metric('fleet_sync_changes_ingested_total'))).toBe(total + replayed.length);

    // SIGTERM: both drain and exit 0, nothing left unacked.
    r1.signal('SIGTERM');
    r2.signal('SIGTERM');
    expect(await r1.exited).toEqual({ code: 0, signal: null });
    expect(await r2.exited).toEqual({ code: 0, signal: null });
    expect(r1.log).toContain('drained, exiting');
    const info = await jsm.consumers.info(s.streams.push, `${s.ns}-change-log`);
    expect(info.num_ack_pending).toBe(0);
  });
});

describe('SIGTERM with work in hand', () => {
  it('lands mid-batch (after the commit, before the ack): the process finishes the batch, acks it, exits 0; a restart redelivers nothing', async () => {
    const { s, db, agent, jsm, pg } = await scenario('term', SHARED_NATS);
    // Every group is held 1.5 s between its commit and its ack: SIGTERM lands in that window.
    const p = await start('cl-term-1', db, SHARED_NATS, s, { FLEET_FAILPOINTS: 'change-log.after-commit=delay(1500)' });
    const pushes = Array.from({ length: 4 }, (_, b) => Array.from({ length: 25 }, (_, i) => testChange('agent-s', b * 25 + i + 1)));
    for (const changes of pushes) await publishPush(agent, s, 'agent-s', changes);
    const total = 100;
    const consumer = `${s.ns}-change-log`;
    // Committed (the rows are there) but not yet acked: the batch is in hand.
    await eventually(async () => (await num(pg, 'select count(*) as n from change_log')) === total, 15_000, 'the pushes committed');
    const inHand = await jsm.consumers.info(s.streams.push, consumer);
    expect(inHand.num_ack_pending).toBeGreaterThan(0);
    p.signal('SIGTERM');

    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.log).toContain('drained, exiting');
    const after = await jsm.consumers.info(s.streams.push, consumer);
    expect(after.num_ack_pending).toBe(0); // acked before the connection closed
    expect(after.num_pending).toBe(0);
    expect(after.num_redelivered).toBe(0);
    expect(after.ack_floor.stream_seq).toBe((await jsm.streams.info(s.streams.push)).state.last_seq);
    const announced = (await readStream(jsm, s.streams.log)).flatMap((m) => decodeAppendedEvent(m.data).changes);
    expect(new Set(announced.map((c) => c.seq)).size).toBe(total); // the events of the batch in hand were published too

    // A restart (ack wait 2 s) finds nothing to redeliver: no new row, no new delivery, no new event.
    const logBefore = (await jsm.streams.info(s.streams.log)).state.messages;
    const deliveredBefore = after.delivered.consumer_seq;
    await start('cl-term-2', db, SHARED_NATS, s, { FLEET_CHANGELOG_ACK_WAIT: '2s' });
    await new Promise((r) => setTimeout(r, 3000));
    const restarted = await jsm.consumers.info(s.streams.push, consumer);
    expect(restarted.delivered.consumer_seq).toBe(deliveredBefore);
    expect(restarted.num_ack_pending).toBe(0);
    expect((await jsm.streams.info(s.streams.log)).state.messages).toBe(logBefore);
    expect(await num(pg, 'select count(*) as n from change_log')).toBe(total);
    expect(await num(pg, 'select count(distinct change_id) as n from change_log')).toBe(total);
    expect(await num(pg, 'select max(seq) as n from change_log')).toBe(total);
  });
});

describe('a start with a bad configuration', () => {
  it('is refused before connecting to anything: exit 78, every bad variable named, the table printed, no secret echoed', async () => {
    const r = await ServiceProcess.runToExit({
      FLEET_CHANGELOG_BATCH_MESSAGES: 'abc',
      // malformed (no "://"), with a password that must not be echoed
      FLEET_CHANGELOG_DATABASE_URL: 'postgres//fleet:hunter2@127.0.0.1:5432/fleet',
      FLEET_CHANGELOG_ACK_WAIT: '10s', // a good one, not named
      FLEET_CHANGELOG_NATS_URL: 'nats://127.0.0.1:1', // nothing listens: a start that got that far would hang, not exit 78
    });
    expect(r).toMatchObject({ code: 78, signal: null });
    const problems = r.stderr.slice(0, r.stderr.indexOf('Configuration (environment variables)'));
    expect(problems).toContain('bad configuration');
    expect(problems).toContain('2 problem(s)');
    expect(problems).toMatch(/FLEET_CHANGELOG_BATCH_MESSAGES: expected an integer \(got "abc"\)/);
    expect(problems).toMatch(/FLEET_CHANGELOG_DATABASE_URL: expected a URL/);
    expect(problems).not.toContain('FLEET_CHANGELOG_ACK_WAIT');
    expect(r.stderr).toContain('| `FLEET_CHANGELOG_BATCH_MESSAGES` |'); // the option table follows
    expect(r.stderr + r.stdout).not.toContain('hunter2');
  });
});

describe('a harness that dies', () => {
  it('takes its service children with it: a SIGKILLed parent leaves no orphan change-log running', async () => {
    const { s, db } = await scenario('orph', SHARED_NATS);
    const env = { databaseUrl: db.url, natsUrl: SHARED_NATS, namespace: s.ns, extra: { FLEET_CHANGELOG_LOG_LEVEL: 'warn' } };
    const root = join(__dirname, '..', '..', '..');
    const parent = spawn(process.execPath, ['-r', './scripts/register.js', 'apps/change-log/src/testing/orphan-parent.ts', JSON.stringify(env)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const childPid = await eventually(() => Number(/child (\d+)/.exec(out)?.[1] ?? 0) || undefined, 60_000, 'the child started');
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    expect(alive(childPid)).toBe(true);
    parent.kill('SIGKILL');
    // the IPC channel closes with the parent: the child drains and exits
    await eventually(() => !alive(childPid), 30_000, 'the orphaned child to exit');
    expect(alive(childPid)).toBe(false);
  });
});
