/**
 * Pull facts (`agent_pulls`) against the real NATS and PostgreSQL: the whole delta-calculator app
 * records pulls and Merkle exchanges in memory, coalesced per agent, and writes them in one upsert
 * (on its timer, when the operator API asks, and on shutdown); two replicas' flushes keep the latest
 * by time; the operator API answers each agent's facts with its score, and the fleet's.
 */
import type { INestApplication } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { loadConfig } from '@fleet/config';
import { decodeAgentGroupsReply, decodeAgentSyncReply, decodeFleetHealthReply, decodeStatusReply, decodeVerifyReply, encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import { PullFacts } from '@fleet/delta';
import { AgentReplica } from '@fleet/delta/src/testing/agent-replica';
import { appendInBatches, ServerChanges } from '@fleet/delta/src/testing/server-changes';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { createTestDatabase } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import type { RecordState } from '@fleet/sync-core';
import { createDeltaApp } from './bootstrap';
import { deltaConfig } from './config';

jest.setTimeout(120_000);

const s = testNamespace('dcpf');
let db: TestDatabase;
let ds: DataSource;
let app: INestApplication;
let bus: Messaging;
let log: PostgresChangeLog;
const server = new ServerChanges();
const TOKEN = 'delta-operator-token-for-tests';
/** The operator API's request options: with the operator token unless told otherwise. */
const asOperator = (token: string | null = TOKEN) => ({ timeoutMs: 10_000, ...(token === null ? {} : { headers: { [Headers.Authorization]: `Bearer ${token}` } }) });

function config(extra: Record<string, string> = {}) {
  return loadConfig(deltaConfig, { FLEET_DELTA_DATABASE_URL: db.url, FLEET_DELTA_NATS_URL: SHARED_NATS, FLEET_DELTA_NAMESPACE: s.ns, FLEET_DELTA_HTTP_PORT: '0', FLEET_DELTA_OPERATOR_TOKEN: TOKEN, ...extra });
}

interface Row {
  agent_id: string;
  pulls: string;
  pull_from: string;
  pull_to: string;
  head_seq: string;
  behind: string;
  caught_up_at: Date | null;
  first_pulled_at: Date;
  pulled_at: Date;
  verified_at: Date | null;
  verify_diffs: number | null;
}
const rowOf = async (agentId: string): Promise<Row | undefined> => ((await ds.query(`select * from agent_pulls where agent_id = $1`, [agentId])) as Row[])[0];
const headSeq = async (): Promise<number> => Number(((await ds.query(`select coalesce(max(seq), 0) as h from change_log`)) as { h: string }[])[0]?.h);

beforeAll(async () => {
  db = await createTestDatabase('fleet_delta_pulls');
  ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  log = new PostgresChangeLog(ds);
  bus = await Messaging.connect({ servers: [SHARED_NATS], name: 'delta-pulls-test' }, s);
  await bus.provision([{ name: s.streams.log, subjects: [s.appended] }], { deadLetter: false });
  // The timer never fires during these tests (10 min): every write below is a flush the test caused.
  app = await createDeltaApp(config({ FLEET_DELTA_PULL_FACTS_EVERY: '10m' }), { default: 'lww' });
  await appendInBatches(log, Array.from({ length: 120 }, (_, i) => server.change('pf', `k${i}`, { i })));
});

afterAll(async () => {
  await app?.close();
  await deleteNamespaceStreams(await bus.jsm(), s);
  await bus?.drain();
  await ds?.destroy();
  await db?.drop();
});

describe('pull facts', () => {
  it('holds pulls in memory, coalesced per agent, and writes them in one upsert: last pull, cursors, lag, caught up', async () => {
    const facts = app.get(PullFacts);
    const head = await headSeq();
    const a = new AgentReplica('pf-a', ['fleet'], bus);
    // Pages of 25 from the log: every page but the last leaves it behind the head.
    const first = await a.pullPage({ limit: 25 });
    expect(first.response.hasMore).toBe(true);
    a.cursor = first.response.nextCursor;
    const b = new AgentReplica('pf-b', ['fleet'], bus);
    await b.pullAll({ limit: 40 });
    for (let i = 0; i < 5; i++) await b.pullPage({ limit: 40 }); // at the head: empty pages, still pulls
    // Nothing written per request: 2 agents held, no row yet.
    expect(facts.held).toBe(2);
    expect(await rowOf('pf-a')).toBeUndefined();
    expect(await rowOf('pf-b')).toBeUndefined();

    const before = facts.flushed;
    expect(await facts.flush()).toBe(2);
    expect(facts.flushed - before).toBe(2);
    expect(facts.held).toBe(0);
    const ra = await rowOf('pf-a');
    expect(ra).toMatchObject({ pulls: '1', pull_from: '0', pull_to: String(first.response.nextCursor), head_seq: String(head), caught_up_at: null });
    expect(Number(ra!.behind)).toBe(head - Number(first.response.nextCursor));
    expect(Number(ra!.behind)).toBeGreaterThan(0);
    const rb = await rowOf('pf-b');
    // pullAll in pages of 40 over 120 changes: 3 pages with more, the last one empty (or 4), plus 5 at the head.
    expect(Number(rb!.pulls)).toBeGreaterThanOrEqual(8);
    expect(rb).toMatchObject({ behind: '0', pull_from: String(head), pull_to: String(head) });
    expect(rb!.caught_up_at).not.toBeNull();

    // The agent catches up: its row moves to the end, caught up, pulls added to the stored ones.
    await a.pullAll({ limit: 1000 });
    await facts.flush();
    const ra2 = await rowOf('pf-a');
    expect(ra2).toMatchObject({ behind: '0', pull_to: String(head) });
    expect(Number(ra2!.pulls)).toBeGreaterThanOrEqual(2);
    expect(ra2!.caught_up_at).not.toBeNull();
    expect(ra2!.first_pulled_at.getTime()).toBe(ra!.first_pulled_at.getTime());
  });

  it('records the end of each Merkle exchange: the differing buckets, then 0 once equal', async () => {
    const facts = app.get(PullFacts);
    const a = new AgentReplica('pf-m', ['fleet'], bus);
    await a.pullAll();
    const id = 'fleet\u0000pf\u0000k3';
    const st = a.states.get(id) as RecordState;
    a.states.set(id, { ...st, view: { ...st.view, fields: { i: 'corrupt' } } });
    const r = await a.verifyAndRepair('fleet', 'pf');
    expect(r.diff.differing).toEqual(['k3']);
    await facts.flush();
    const found = await rowOf('pf-m');
    expect(found?.verify_diffs).toBeGreaterThan(0);
    expect(found?.verified_at).not.toBeNull();
    await a.verifyAndRepair('fleet', 'pf');
    await facts.flush();
    expect((await rowOf('pf-m'))?.verify_diffs).toBe(0);
  });

  it('two replicas flushing the same agent keep the latest by time, whatever the order of their flushes', async () => {
    let clock = 0;
    const older = new PullFacts(ds, { flushEvery: 0, now: () => clock });
    const newer = new PullFacts(ds, { flushEvery: 0, now: () => clock });
    const t = Date.UTC(2030, 0, 1);
    clock = t;
    older.pulled('pf-r', { from: 0, to: 10, headSeq: 100, hasMore: true });
    clock = t + 1000;
    newer.pulled('pf-r', { from: 10, to: 100, headSeq: 100, hasMore: false });
    newer.verified('pf-r', 2);
    // The newer replica flushes first; the older one's late flush must not take the row back.
    await newer.flush();
    await older.flush();
    const r = await rowOf('pf-r');
    expect(r).toMatchObject({ pulls: '2', pull_from: '10', pull_to: '100', behind: '0', verify_diffs: 2 });
    expect(r!.pulled_at.getTime()).toBe(t + 1000);
    expect(r!.first_pulled_at.getTime()).toBe(t);
    expect(r!.caught_up_at?.getTime()).toBe(t + 1000);
  });

  it('flushes on its timer, and on shutdown', async () => {
    const timed = new PullFacts(ds, { flushEvery: 200, now: Date.now });
    timed.start();
    timed.pulled('pf-t', { from: 0, to: 5, headSeq: 5, hasMore: false });
    await eventually(async () => (await rowOf('pf-t')) !== undefined, 10_000, 'the timed flush');
    await timed.stop();

    // A second replica (its own app) answers a pull, then shuts down before its timer (10 min) fires.
    const other = await createDeltaApp(config({ FLEET_DELTA_PULL_FACTS_EVERY: '10m', FLEET_DELTA_HTTP_PORT: '0' }), { default: 'lww' });
    const held = other.get(PullFacts);
    // Both apps answer in the queue group: pull until this replica has taken one.
    const c = new AgentReplica('pf-shutdown', ['fleet'], bus);
    await eventually(async () => (await c.pullPage(), held.held > 0), 20_000, 'a pull answered by the second replica');
    // One queue group: with both replicas listening, each request reaches one of them (one reply, not two).
    for (let i = 0; i < 5; i++) {
      const replies = await bus.nc.requestMany(s.pull('pf-queue'), encodeJson({ protocol: PROTOCOL_VERSION, agentId: 'pf-queue', scopes: ['fleet'], cursor: 0 }), { strategy: 'timer', maxWait: 1000 });
      let answers = 0;
      for await (const m of replies) if (m.data.byteLength > 0) answers++;
      expect(answers).toBe(1);
    }
    expect(await rowOf('pf-shutdown')).toBeUndefined();
    // (The first replica may hold some of its pulls too, unflushed: the row below can only come from the second's shutdown.)
    await other.close();
    const r = await rowOf('pf-shutdown');
    expect(Number(r?.pulls)).toBeGreaterThanOrEqual(1);
    expect(held.held).toBe(0);
  });

  it('answers each agent with its facts and score, and the fleet with its score and worst agents (the operator API)', async () => {
    // pf-old stopped pulling: its last caught-up pull was 30 hours ago (as if written then).
    await ds.query(`insert into agent_pulls (agent_id, first_pulled_at, pulled_at, pull_from, pull_to, head_seq, behind, caught_up_at, pulls) values ('pf-old', now() - interval '40 hours', now() - interval '30 hours', '0', '7', 7, 0, now() - interval '30 hours', 3)`);
    const fresh = new AgentReplica('pf-fresh', ['fleet'], bus);
    await fresh.pullAll();
    // The API flushes what the answering replica holds first: pf-fresh is there without waiting for the timer.
    const reply = decodeAgentSyncReply((await bus.request(s.agentSyncApi, encodeJson({ protocol: PROTOCOL_VERSION, agentIds: ['pf-fresh', 'pf-old', 'nobody'] }), asOperator())).data);
    if (!reply.ok) throw new Error(reply.error.message);
    const { agents } = reply.value;
    expect(Object.keys(agents).sort()).toEqual(['pf-fresh', 'pf-old']);
    expect(agents['pf-fresh']).toMatchObject({ behind: 0, lastPushAt: null, health: { score: 100, status: 'healthy', reasons: [] } });
    expect(agents['pf-fresh']!.lastPullAt).not.toBeNull();
    expect(agents['pf-old']!.health.status).toBe('unhealthy');
    expect(agents['pf-old']!.health.score).toBeLessThanOrEqual(70);
    expect(agents['pf-old']!.health.reasons[0]).toMatch(/^sync lag \d+(\.\d+)?s over the 300s target/);

    const h = decodeFleetHealthReply((await bus.request(s.fleetHealthApi, encodeJson({ protocol: PROTOCOL_VERSION, worst: 2 }), asOperator())).data);
    if (!h.ok) throw new Error(h.error.message);
    const ids = ((await ds.query(`select agent_id from agent_pulls order by 1`)) as { agent_id: string }[]).map((r) => r.agent_id);
    const all = decodeAgentSyncReply((await bus.request(s.agentSyncApi, encodeJson({ protocol: PROTOCOL_VERSION, agentIds: ids }), asOperator())).data);
    if (!all.ok) throw new Error(all.error.message);
    const scores = ids.map((id) => all.value.agents[id]!.health);
    expect(h.value.agents).toBe(ids.length);
    // pf-old (30 h without a caught-up pull) is unhealthy; pf-r (2 differing buckets at its last exchange) degraded.
    expect(h.value.byStatus).toEqual({ healthy: ids.length - 2, degraded: 1, unhealthy: 1 });
    expect(h.value.worst.map((a) => a.agentId)).toEqual(['pf-old', 'pf-r']);
    expect(h.value.score).toBe(Math.round(scores.reduce((n, x) => n + x.score, 0) / ids.length));
    expect(h.value.score).toBeLessThan(100);
  });

  it("refuses every operator request without the operator token or with a wrong one (FLEET_AUTH_004, HTTP 401); agents' pulls and the probes need none", async () => {
    const asks = [
      { subject: s.agentSyncApi, body: { agentIds: ['pf-fresh'] }, decode: decodeAgentSyncReply },
      { subject: s.fleetHealthApi, body: {}, decode: decodeFleetHealthReply },
      { subject: s.agentGroupsApi, body: { agentIds: ['pf-fresh'] }, decode: decodeAgentGroupsReply },
      { subject: s.verifyApi('delta-calculator'), body: {}, decode: decodeVerifyReply },
      { subject: s.statusApi('delta-calculator'), body: {}, decode: decodeStatusReply },
    ] as const;
    for (const a of asks) {
      const body = encodeJson({ protocol: PROTOCOL_VERSION, ...a.body });
      for (const token of [null, 'not-the-operator-token']) {
        const r = a.decode((await bus.request(a.subject, body, asOperator(token))).data);
        expect({ subject: a.subject, code: r.ok ? 'ok' : r.error.code }).toEqual({ subject: a.subject, code: 'FLEET_AUTH_004' });
        if (!r.ok) expect(r.error.message).toContain('FLEET_DELTA_OPERATOR_TOKEN');
      }
      const ok = a.decode((await bus.request(a.subject, body, asOperator())).data);
      expect({ subject: a.subject, ok: ok.ok }).toEqual({ subject: a.subject, ok: true });
    }

    const base = `http://127.0.0.1:${(app.getHttpServer() as { address(): { port: number } }).address().port}`;
    const http = (method: string, token: string | null, body?: unknown) =>
      fetch(`${base}/agents/pf-g/groups`, {
        method,
        headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    for (const token of [null, 'not-the-operator-token']) {
      for (const r of [await http('GET', token), await http('PUT', token, { groups: ['ops'] })]) {
        expect(r.status).toBe(401);
        expect(((await r.json()) as { error: { code: string } }).error.code).toBe('FLEET_AUTH_004');
      }
    }
    expect(await (await http('GET', TOKEN)).json()).toEqual({ agentId: 'pf-g', groups: [] }); // the refused PUT wrote nothing
    expect((await http('PUT', TOKEN, { groups: ['ops'] })).status).toBe(200);
    expect(await (await http('GET', TOKEN)).json()).toEqual({ agentId: 'pf-g', groups: ['ops'] });

    // What agents ask needs no operator token: a pull of a fresh agent is answered.
    const agent = new AgentReplica('pf-tokenless', ['fleet'], bus);
    expect((await agent.pullPage({ limit: 5 })).response.records.length).toBeGreaterThan(0);
    for (const probe of ['/health/live', '/health/ready']) expect((await fetch(`${base}${probe}`)).status).toBe(200);
  });
});
