/**
 * The coordinator killed (SIGKILL, a failpoint) in the middle of a critical operation, as a real
 * change-log process on a private PostgreSQL with max_prepared_transactions; agents in this process
 * (SQLite stores and their participants on NATS). After a restart, recovery finishes every transaction
 * the way the log says: after the decision, everyone commits; before it, everyone aborts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { CriticalParticipant, NatsSyncTransport } from '@fleet/agent-sync';
import { SqliteLocalStore } from '@fleet/agent-store';
import { encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { eventually, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { PrivatePostgres } from '@fleet/server-store/src/testing';
import { ServiceProcess } from './testing/service-process';
import { testCertificate as cert } from '@fleet/contracts/src/testing/critical';

jest.setTimeout(120_000);

const TOKEN = 'operator-token-for-crash-tests';

const s = testNamespace('tpcx');
let pgServer: PrivatePostgres;
let dbUrl: string;
let pg: Client;
let operator: Messaging;
const procs: ServiceProcess[] = [];
const agents: { store: SqliteLocalStore; transport: NatsSyncTransport; participant: CriticalParticipant; dir: string }[] = [];

beforeAll(async () => {
  pgServer = await PrivatePostgres.start({ max_prepared_transactions: 16 });
  dbUrl = pgServer.createDatabase('fleet_critical_crash');
  operator = await Messaging.connect({ servers: SHARED_NATS, name: 'tpcx-operator' }, s);
  for (const id of ['k1', 'k2']) {
    const dir = mkdtempSync(join(tmpdir(), `tpcx-${id}-`));
    const store = SqliteLocalStore.open({ dataDir: dir, agentId: id });
    const transport = new NatsSyncTransport({ servers: SHARED_NATS, name: `tpcx-${id}` }, s.ns);
    await transport.connect();
    const participant = new CriticalParticipant({ store, transport, namespace: s.ns, retryMs: 200 });
    participant.start();
    agents.push({ store, transport, participant, dir });
  }
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  for (const a of agents) {
    a.participant.stop();
    await a.transport.close();
    a.store.close();
    rmSync(a.dir, { recursive: true, force: true });
  }
  await operator?.drain();
  await pg?.end();
  pgServer?.stop();
});

async function service(name: string, failpoints?: string): Promise<ServiceProcess> {
  const p = await ServiceProcess.start(name, {
    databaseUrl: dbUrl,
    natsUrl: SHARED_NATS,
    namespace: s.ns,
    extra: {
      FLEET_CHANGELOG_LOG_LEVEL: 'warn',
      FLEET_CHANGELOG_OPERATOR_TOKEN: TOKEN,
      FLEET_CHANGELOG_CRITICAL_RETRY: '300ms',
      ...(failpoints === undefined ? {} : { FLEET_CHANGELOG_FAILPOINTS: failpoints }),
    },
  });
  procs.push(p);
  if (pg === undefined) {
    pg = new Client({ connectionString: dbUrl });
    await pg.connect();
  }
  return p;
}

/** Begins an operation on a coordinator that is about to die: no answer comes. */
async function beginOnDoomed(name: string, voteTimeoutMs: number): Promise<void> {
  const body = encodeJson({ protocol: PROTOCOL_VERSION, operation: cert(name), agents: ['k1', 'k2'], voteTimeoutMs });
  await expect(operator.request(s.criticalApi('begin'), body, { timeoutMs: 5000, headers: { [Headers.Authorization]: `Bearer ${TOKEN}` } })).rejects.toMatchObject({ code: 'FLEET_INFRA_001' });
}

const row = async (name: string) => (await pg.query<{ txid: string; state: string }>('select txid, state from critical_transactions where name = $1', [name])).rows[0];
const prepared = async () => (await pg.query<{ gid: string }>('select gid from pg_prepared_xacts')).rows.map((r) => r.gid);
const held = (name: string) => agents.map((a) => a.store.criticalEntries().filter((e) => e.name === name).map((e) => e.txid));

describe('the coordinator killed mid-transaction (SIGKILL), then restarted', () => {
  it('after the decision is logged, before anyone heard it: the restarted coordinator commits on the server and every host', async () => {
    const doomed = await service('cl-crash-decided', 'critical.after-decision=kill');
    await beginOnDoomed('after-decision', 5000);
    expect((await doomed.exited).signal).toBe('SIGKILL');
    const tx = await row('after-decision');
    expect(tx?.state).toBe('committing');
    expect(await prepared()).toEqual([`fleet_tpc_${tx!.txid}`]);
    for (const a of agents) expect(a.store.criticalInDoubt().map((d) => d.txid)).toEqual([tx!.txid]);

    await service('cl-crash-decided-2');
    await eventually(async () => (await row('after-decision'))?.state === 'committed', 20_000, 'recovery commits');
    expect(held('after-decision')).toEqual([[tx!.txid], [tx!.txid]]);
    for (const a of agents) expect(a.store.criticalInDoubt()).toEqual([]);
    expect(await prepared()).toEqual([]);
    const server = await pg.query('select agent_id from critical_state where name = $1 order by agent_id', ['after-decision']);
    expect(server.rows.map((r) => r.agent_id)).toEqual(['k1', 'k2']);
  });

  it('after every vote, before the decision: presumed abort once the deadline passed; nothing is applied anywhere', async () => {
    for (const p of procs) await p.kill();
    const doomed = await service('cl-crash-voted', 'critical.after-votes=kill');
    await beginOnDoomed('after-votes', 1000);
    expect((await doomed.exited).signal).toBe('SIGKILL');
    const tx = await row('after-votes');
    expect(tx?.state).toBe('preparing');
    expect(await prepared()).toEqual([`fleet_tpc_${tx!.txid}`]);
    for (const a of agents) expect(a.store.criticalInDoubt().map((d) => d.txid)).toEqual([tx!.txid]);

    const restarted = await service('cl-crash-voted-2');
    await eventually(async () => (await row('after-votes'))?.state === 'aborted', 20_000, 'recovery aborts');
    // Counted as a decision by recovery (the metric operators alert on).
    expect(await restarted.metric('fleet_sync_critical_decisions_total')).toBe(1);
    await eventually(() => agents.every((a) => a.store.criticalInDoubt().length === 0), 10_000, 'hosts drop their staging');
    expect(held('after-votes')).toEqual([[], []]);
    expect(await prepared()).toEqual([]);
    expect((await pg.query('select count(*)::int as n from critical_state where name = $1', ['after-votes'])).rows[0].n).toBe(0);
  });
});
