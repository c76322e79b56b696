/**
 * `fleetctl agents` and `status` see a host that pulls but cannot push: a real deployment (the four
 * services as processes, a private nats-server, PostgreSQL) and two real agents (SQLite stores, sync
 * managers over NATS). The push stream is set to refuse messages over 16 KiB, and one host writes a
 * 40 KB note: its every push is refused by JetStream while its pulls go on, so its outbox keeps its
 * change and its failed pushes add up; the other host syncs as usual. The stuck host's pulls report it
 * (protocol 2): the server scores it down with the reason, `agents` shows its figures, `status
 * --min-health-score` exits 1; once the stream takes the message again, it is healthy again.
 */
import { join } from 'node:path';
import { Fleet, FleetAgent, HARNESS_OPERATOR_TOKEN } from '@fleet/fleet-harness';
import { DEMO_STRATEGIES } from '@fleet/fleet-harness/src/scenario';
import { eventually } from '@fleet/fleet-harness/src/util';
import { main } from './main';

jest.setTimeout(180_000);

const DAY_MS = 86_400_000;
let fleet: Fleet;
let env: Record<string, string>;
let fine: FleetAgent;
let stuck: FleetAgent;
/** Added to the stuck host's store clock: the outbox's wait as the host measures it. */
let skewMs = 0;

beforeAll(async () => {
  fleet = await Fleet.start({ agents: 1, strategies: DEMO_STRATEGIES, collections: ['notes'] });
  env = { FLEET_OPERATOR_NATS_URL: fleet.natsUrl, FLEET_OPERATOR_NAMESPACE: fleet.s.ns, FLEET_OPERATOR_TIMEOUT: '30s', FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN };
  fine = fleet.agents[0]!;
  stuck = new FleetAgent({
    id: 'host-stuck',
    dataDir: join(fleet.dir, 'agents', 'host-stuck'),
    natsUrl: fleet.natsUrl,
    namespace: fleet.s.ns,
    strategies: fleet.config,
    collections: ['notes'],
    wire: fleet.wire,
    now: () => Date.now() + skewMs,
    // Retries every few hundred ms (the default backs off to 5 min), and each pull re-reads the report.
    sync: { connection: { backoff: { baseMs: 50, maxMs: 300 } }, pushHealthSampleMs: 0 },
  });
  fleet.agents.push(stuck); // closed with the fleet
  await fleet.bringOnline();
});

afterAll(async () => {
  await fleet?.close();
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The `agents list` row of an agent, by column name. */
async function agentRow(agentId: string): Promise<Record<string, string>> {
  const r = await run(['agents']);
  expect(r.code).toBe(0);
  const lines = r.out.split('\n');
  const header = lines[0]!;
  // Columns are padded to the widest cell; header names start each column.
  const starts = [...header.matchAll(/\S+(?: \S+)*/g)].map((m) => ({ name: m[0], at: m.index }));
  const line = lines.find((l) => l.startsWith(`${agentId} `));
  if (line === undefined) throw new Error(`no row for ${agentId} in\n${r.out}`);
  return Object.fromEntries(starts.map((c, i) => [c.name, line.slice(c.at, starts[i + 1]?.at ?? line.length).trim()]));
}

/** A pull by the stuck host carries its report as its store has it now (its pulls go on while its pushes fail). */
async function pullNow(a: FleetAgent): Promise<void> {
  const before = a.store.syncState().lastPullAt;
  a.manager!.syncNow();
  await eventually(() => a.store.syncState().lastPullAt !== before, 30_000, `a pull by ${a.id}`);
}

async function pushStreamMaxMsgSize(bytes: number): Promise<void> {
  const jsm = await fleet.bus.jsm();
  await jsm.streams.update(fleet.s.streams.push, { max_msg_size: bytes });
}

describe('fleetctl: the push side of each agent', () => {
  it('healthy fleet: both hosts push and pull, report an empty outbox, score 100', async () => {
    fine.put('notes', 'hello', { text: 'from the fine host' });
    stuck.put('notes', 'hello', { text: 'from the other host' });
    await fleet.waitConverged(60_000);
    for (const a of [fine, stuck]) await pullNow(a);
    for (const id of [fine.id, stuck.id]) {
      expect(await agentRow(id)).toMatchObject({ OUTBOX: '0', 'OLDEST UNSENT': '-', 'FAILED PUSHES': '0', SCORE: '100 healthy' });
    }
    const r = await run(['status', '--min-health-score', '95']);
    expect(r.out).toContain('sync health: 100 healthy (2 agent(s): 2 healthy, 0 degraded, 0 unhealthy)');
    expect(r.code).toBe(0);
  });

  it('a host whose pushes are refused while it pulls: scored down with the reason, shown by agents, caught by status --min-health-score', async () => {
    await pushStreamMaxMsgSize(16 * 1024);
    stuck.put('notes', 'big', { text: 'x'.repeat(40_000) });
    // Refused by JetStream (message size): every retry fails, the change stays in the outbox.
    await eventually(() => stuck.store.outboxStats().consecutiveFailures >= 20, 60_000, '20 refused pushes');
    expect(stuck.outboxSize()).toBe(1);
    // The other host keeps pushing and pulling as usual.
    fine.put('notes', 'still-fine', { text: 'small' });
    await eventually(() => fine.outboxSize() === 0, 30_000, 'the fine host pushed');
    await pullNow(stuck);
    await pullNow(fine);

    const row = await agentRow(stuck.id);
    expect(row['OUTBOX']).toBe('1');
    expect(row['OLDEST UNSENT']).toMatch(/^\d+(\.\d)?s$/);
    expect(Number(row['FAILED PUSHES'])).toBeGreaterThanOrEqual(20);
    expect(row['SCORE']).toMatch(/^8\d degraded$/);
    expect(await agentRow(fine.id)).toMatchObject({ OUTBOX: '0', 'FAILED PUSHES': '0', SCORE: '100 healthy' });

    const show = await run(['agents', 'show', stuck.id]);
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/push side: outbox 1 \(oldest unsent [\d.]+s, 1 waiting for a retry\), \d+ failed push\(es\) in a row \(reported /);
    expect(show.out).toMatch(/sync health: 8\d degraded\n\s+- \d+ failed pushes in a row \(-15\)/);
    expect(show.out).toContain('failed pushes in a row (>= 20): degraded at least');

    const status = await run(['status', '--min-health-score', '95']);
    expect(status.code).toBe(1);
    expect(status.out).toMatch(/sync health: 9\d degraded \(2 agent\(s\): 1 healthy, 1 degraded, 0 unhealthy\)/);
    expect(status.out).toMatch(new RegExp(`worst agents:\\n  ${stuck.id}  8\\d degraded  last pull \\S+  outbox 1 \\(oldest unsent [\\d.]+s, 1 waiting for a retry\\), \\d+ failed push\\(es\\) in a row  \\d+ failed pushes in a row`));
    expect(status.out).toMatch(/UNHEALTHY\n\s+- fleet sync-health score 9\d is below 95 \(0 unhealthy, 1 degraded of 2 agent\(s\)\)/);
  });

  it('days later (the host measures the wait on its own clock) the stuck host is unhealthy; once the stream takes it again, healthy', async () => {
    skewMs = 2 * DAY_MS; // its store's clock: the change has now waited two days
    await pullNow(stuck);
    const row = await agentRow(stuck.id);
    expect(row['OLDEST UNSENT']).toMatch(/^4[89]h$/);
    expect(row['SCORE']).toMatch(/ unhealthy$/);
    const show = await run(['agents', 'show', stuck.id]);
    expect(show.out).toMatch(/- oldest unsent change waiting 1728\d\d(\.\d+)?s, over the 300s target \(-30\)/);

    await pushStreamMaxMsgSize(-1);
    await eventually(() => stuck.outboxSize() === 0, 60_000, 'the stuck host pushed');
    await pullNow(stuck);
    expect(await agentRow(stuck.id)).toMatchObject({ OUTBOX: '0', 'OLDEST UNSENT': '-', 'FAILED PUSHES': '0', SCORE: '100 healthy' });
    const status = await run(['status', '--min-health-score', '95']);
    expect(status.code).toBe(0);
  });
});
