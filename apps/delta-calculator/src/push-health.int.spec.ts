/**
 * The agent's push side in delta-calculator's pull facts, against the real NATS and PostgreSQL: the
 * whole app answers pull requests of protocol 2 carrying `health` and of protocol 1 without it; the
 * latest report per agent goes into `agent_pulls` with the pull facts, in the same upsert (migration
 * 1767225601500); the score of an agent that pulls but cannot push drops, with the reason, while one
 * that pushes (or reports nothing) does not; a report out of bounds fails the pull it rides on.
 */
import { gunzipSync } from 'node:zlib';
import type { INestApplication } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { loadConfig } from '@fleet/config';
import { AgentSyncResponseSchema, decodeWith, encodeJson, Headers } from '@fleet/contracts';
import type { PullCursor, PushHealth } from '@fleet/contracts';
import { buildPullRequest, decodePullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import type { PullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import { PullFacts, readAgentPulls } from '@fleet/delta';
import { appendInBatches, ServerChanges } from '@fleet/delta/src/testing/server-changes';
import { isFleetError } from '@fleet/errors';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { createTestDatabase } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { createDeltaApp } from './bootstrap';
import { deltaConfig } from './config';
import { agentSyncView } from './operator';

jest.setTimeout(120_000);

const s = testNamespace('dcph');
let db: TestDatabase;
let ds: DataSource;
let app: INestApplication;
let bus: Messaging;
const server = new ServerChanges();

const DAY_MS = 86_400_000;
const NOTHING_WAITS: PushHealth = { outbox: 0, oldestUnsentAgeMs: 0, retryQueue: 0, failedPushes: 0 };

/** One pull page from `cursor`, as the agent's wire code writes and reads it (with `health`: protocol 2). */
async function pull(agentId: string, health?: PushHealth, cursor: PullCursor = 0): Promise<PullWirePage> {
  const req = buildPullRequest(agentId, ['fleet'], cursor, 1000, undefined, health);
  const reply = await bus.request(s.pull(agentId), encodeJson(req), { timeoutMs: 30_000, headers: { [Headers.Protocol]: String(req.protocol) } });
  return decodePullWirePage(reply.headers?.get(Headers.Encoding) === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data);
}

/** A raw pull request body (to send what the agent's code never would). */
async function pullRaw(agentId: string, body: Record<string, unknown>): Promise<PullWirePage> {
  const reply = await bus.request(s.pull(agentId), encodeJson({ agentId, scopes: ['fleet'], cursor: 0, ...body }), { timeoutMs: 30_000 });
  return decodePullWirePage(reply.data);
}

async function view(agentId: string, protocol = 2) {
  await app.get(PullFacts).flush();
  const [row] = await readAgentPulls(ds, [agentId]);
  if (row === undefined) throw new Error(`no facts of ${agentId}`);
  return agentSyncView(row, Date.now(), protocol);
}

beforeAll(async () => {
  db = await createTestDatabase('fleet_delta_push_health');
  ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  bus = await Messaging.connect({ servers: [SHARED_NATS], name: 'delta-push-health-test' }, s);
  await bus.provision([{ name: s.streams.log, subjects: [s.appended] }], { deadLetter: false });
  // The timer never fires during these tests (10 min): every write below is a flush the test caused.
  app = await createDeltaApp(
    loadConfig(deltaConfig, { FLEET_DELTA_DATABASE_URL: db.url, FLEET_DELTA_NATS_URL: SHARED_NATS, FLEET_DELTA_NAMESPACE: s.ns, FLEET_DELTA_HTTP_PORT: '0', FLEET_DELTA_PULL_FACTS_EVERY: '10m' }),
    { default: 'lww' },
  );
  await appendInBatches(new PostgresChangeLog(ds), Array.from({ length: 20 }, (_, i) => server.change('ph', `k${i}`, { i })));
});

afterAll(async () => {
  await app?.close();
  await deleteNamespaceStreams(await bus.jsm(), s);
  await bus?.drain();
  await ds?.destroy();
  await db?.drop();
});

describe("the agent's push side in the pull facts", () => {
  it('an agent that pulls but cannot push is scored down and named; one that pushes, and one of protocol 1 that reports nothing, are healthy', async () => {
    // Every pull is answered the same whatever it reports: the report rides on the pull, it changes nothing in it.
    const stuck = await pull('ph-stuck', { outbox: 40, oldestUnsentAgeMs: 2 * DAY_MS, retryQueue: 40, failedPushes: 25 });
    const fine = await pull('ph-fine', NOTHING_WAITS);
    const old = await pull('ph-v1');
    const shape = (p: PullWirePage) => ({ records: p.records.map((r) => r.k), nextCursor: p.nextCursor, hasMore: p.hasMore });
    expect(shape(stuck).records).toHaveLength(20);
    expect(shape(fine)).toEqual(shape(stuck));
    expect(shape(old)).toEqual(shape(stuck));

    const rows = await ds.query(`select agent_id, extract(epoch from health_at) * 1000 as health_at, outbox, oldest_unsent_age_ms, retry_queue, failed_pushes from agent_pulls order by 1`);
    expect(rows).toHaveLength(0); // held in memory until a flush
    await app.get(PullFacts).flush();
    const stored = (await ds.query(`select agent_id, health_at is not null as reported, outbox, oldest_unsent_age_ms, retry_queue, failed_pushes from agent_pulls order by 1`)) as unknown[];
    expect(stored).toEqual([
      { agent_id: 'ph-fine', reported: true, outbox: 0, oldest_unsent_age_ms: '0', retry_queue: 0, failed_pushes: 0 },
      { agent_id: 'ph-stuck', reported: true, outbox: 40, oldest_unsent_age_ms: String(2 * DAY_MS), retry_queue: 40, failed_pushes: 25 },
      { agent_id: 'ph-v1', reported: false, outbox: null, oldest_unsent_age_ms: null, retry_queue: null, failed_pushes: null },
    ]);

    const v = await view('ph-stuck');
    expect(v.health.status).toBe('unhealthy');
    expect(v.health.score).toBeLessThan(70);
    expect(v.health.reasons).toEqual(
      expect.arrayContaining([expect.stringMatching(/^oldest unsent change waiting 172800s, over the 300s target/), expect.stringMatching(/^25 failed pushes in a row/)]),
    );
    expect(v.push).toMatchObject({ outbox: 40, oldestUnsentAgeMs: 2 * DAY_MS, retryQueue: 40, failedPushes: 25, stale: false });
    expect(await view('ph-fine')).toMatchObject({ health: { score: 100, status: 'healthy', reasons: [] }, push: { outbox: 0, failedPushes: 0, stale: false } });
    expect(await view('ph-v1')).toMatchObject({ health: { score: 100, status: 'healthy', reasons: [] }, push: null });
  });

  it('the agent sync view of a request of protocol 1 has no `push` (an older fleetctl decodes it), and is still scored with it', async () => {
    const v1 = await view('ph-stuck', 1);
    expect(v1).not.toHaveProperty('push');
    expect(v1.health.status).toBe('unhealthy');
    const at = new Date().toISOString();
    expect(decodeWith(AgentSyncResponseSchema, { protocol: 1, at, agents: { 'ph-stuck': v1 } }).agents['ph-stuck']?.health.status).toBe('unhealthy');
    // A reply of protocol 1 carrying `push` is refused by the schema: `push` is protocol 2.
    const v2 = await view('ph-stuck', 2);
    expect(() => decodeWith(AgentSyncResponseSchema, { protocol: 1, at, agents: { 'ph-stuck': v2 } })).toThrow(/agents\.ph-stuck\.push: needs protocol 2/);
    expect(decodeWith(AgentSyncResponseSchema, { protocol: 2, at, agents: { 'ph-stuck': v2 } }).agents['ph-stuck']?.push?.outbox).toBe(40);
  });

  it('keeps the latest report: pushes that go through again clear the score; a later pull without a report leaves the old one out of it (stale)', async () => {
    await pull('ph-recover', { outbox: 9, oldestUnsentAgeMs: 3 * DAY_MS, retryQueue: 9, failedPushes: 30 });
    expect((await view('ph-recover')).health.status).toBe('unhealthy');
    await pull('ph-recover', NOTHING_WAITS);
    expect(await view('ph-recover')).toMatchObject({ health: { score: 100, status: 'healthy' }, push: { outbox: 0, failedPushes: 0 } });

    // The agent went back to a build of protocol 1: its last report is kept but no longer scored.
    await pull('ph-downgraded', { outbox: 9, oldestUnsentAgeMs: 3 * DAY_MS, retryQueue: 9, failedPushes: 30 });
    expect((await view('ph-downgraded')).health.status).toBe('unhealthy');
    await new Promise((r) => setTimeout(r, 20)); // a later pull, by the replica's clock
    await pull('ph-downgraded');
    expect(await view('ph-downgraded')).toMatchObject({ health: { score: 100, status: 'healthy', reasons: [] }, push: { outbox: 9, stale: true } });
  });

  it('two replicas flushing one agent keep the later report, whatever the order of their flushes', async () => {
    let clock = Date.UTC(2030, 0, 1);
    const older = new PullFacts(ds, { flushEvery: 0, now: () => clock });
    const newer = new PullFacts(ds, { flushEvery: 0, now: () => clock });
    older.pulled('ph-r', { from: 0, to: 20, headSeq: 20, hasMore: false, health: { outbox: 5, oldestUnsentAgeMs: DAY_MS, retryQueue: 5, failedPushes: 12 } });
    clock += 1000;
    newer.pulled('ph-r', { from: 20, to: 20, headSeq: 20, hasMore: false, health: NOTHING_WAITS });
    clock += 1000;
    older.pulled('ph-r', { from: 20, to: 20, headSeq: 20, hasMore: false }); // the older replica's next pull carried none
    await newer.flush();
    await older.flush();
    const [r] = await readAgentPulls(ds, ['ph-r']);
    expect(r).toMatchObject({ pulls: 3, healthAt: Date.UTC(2030, 0, 1) + 1000, outbox: 0, oldestUnsentAgeMs: 0, retryQueue: 0, failedPushes: 0, pulledAt: Date.UTC(2030, 0, 1) + 2000 });
  });

  it('a report out of bounds, or one in a pull of protocol 1, fails the pull it rides on (FLEET_DECODE_002) and is not recorded', async () => {
    const refused = async (body: Record<string, unknown>) => {
      try {
        await pullRaw('ph-bad', body);
      } catch (e) {
        return isFleetError(e) && e.details?.['remote'] === true ? `${e.code}: ${e.message}` : String(e);
      }
      return 'answered';
    };
    expect(await refused({ protocol: 2, health: { ...NOTHING_WAITS, outbox: -1 } })).toMatch(/^FLEET_DECODE_002: .*health\.outbox: expected at least 0/);
    expect(await refused({ protocol: 2, health: { ...NOTHING_WAITS, oldestUnsentAgeMs: 1e15 } })).toMatch(/^FLEET_DECODE_002: .*health\.oldestUnsentAgeMs: expected at most/);
    expect(await refused({ protocol: 1, health: NOTHING_WAITS })).toMatch(/^FLEET_DECODE_002: .*health: needs protocol 2/);
    expect(await refused({ protocol: 3 })).toMatch(/^FLEET_DECODE_003: /);
    expect(await refused({ protocol: 2, health: NOTHING_WAITS })).toBe('answered');
    await app.get(PullFacts).flush();
    const [r] = await readAgentPulls(ds, ['ph-bad']);
    expect(r).toMatchObject({ pulls: 1, outbox: 0 });
  });
});
