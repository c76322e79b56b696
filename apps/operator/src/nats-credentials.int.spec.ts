/**
 * NATS credentials end to end: a nats-server in operator mode configured by `initAuthority`, the four
 * services connecting with `service.creds`, real agents (SQLite store, sync manager) with their own
 * credentials; what an agent's credentials do not allow; a revocation applied by a reload.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Pool } from 'pg';
import { agentConnectOptions, CriticalParticipant, NatsSyncTransport, SyncManager } from '@fleet/agent-sync';
import { SqliteLocalStore } from '@fleet/agent-store';
import { parseStrategyConfig } from '@fleet/config';
import { agentInboxPrefix, subjects } from '@fleet/contracts';
import { HARNESS_COORDINATOR_KEYS, HARNESS_OPERATOR_TOKEN, SERVICE_NAMES, ServerStack } from '@fleet/fleet-harness';
import { connectNats } from '@fleet/messaging';
import { eventually, PrivateNatsServer } from '@fleet/messaging/src/test-support';
import { createTestDatabase, type TestDatabase } from '@fleet/server-store/src/testing';
import { main } from './main';
import { AUTHORITY_FILES, initAuthority, issueAgentCreds, revokeAgent } from './nats-credentials';

jest.setTimeout(180_000);

const strategy = parseStrategyConfig({ default: 'lww' });
const ns = `cr${Date.now().toString(36)}`;
const s = subjects(ns);
let dir: string;
let auth: string;
let nats: PrivateNatsServer;
let db: TestDatabase;
let pg: Pool;
let stack: ServerStack;
const stores: SqliteLocalStore[] = [];
const syncs: SyncManager[] = [];
const participants: CriticalParticipant[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleet-creds-'));
  auth = join(dir, 'auth');
  await initAuthority(auth, ns);
  for (const id of ['host-a', 'host-b']) await issueAgentCreds(auth, id, ns);
  nats = await PrivateNatsServer.start({ include: readFileSync(join(auth, AUTHORITY_FILES.serverConfig), 'utf8') });
  db = await createTestDatabase('fleet_creds');
  pg = new Pool({ connectionString: db.url, max: 2 });
  // As deployed: change-log (the coordinator) with its own user, the other three with service.creds.
  const creds = (n: string) => ({ FLEET_NATS_CREDS_FILE: join(auth, n === 'change-log' ? AUTHORITY_FILES.coordinatorCreds : AUTHORITY_FILES.serviceCreds) });
  stack = await ServerStack.create({ databaseUrl: db.url, natsUrl: nats.url, namespace: ns, strategies: { default: 'lww' }, logDir: dir }, Object.fromEntries(SERVICE_NAMES.map((n) => [n, creds(n)])));
  await stack.start();
});

afterAll(async () => {
  for (const p of participants) p.stop();
  for (const x of syncs) await x.stop();
  for (const st of stores) st.close();
  await stack?.stop();
  await pg?.end();
  await db?.drop();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function agent(id: string): SqliteLocalStore {
  const store = SqliteLocalStore.open({ dataDir: join(dir, id), agentId: id, strategies: strategy });
  stores.push(store);
  // The agent's own wiring (apps/agent sync-runner): its connect options, the NATS transport, the sync manager.
  const transport = new NatsSyncTransport(agentConnectOptions({ servers: nats.url, agentId: id, credentialsFile: join(auth, AUTHORITY_FILES.agents, `${id}.creds`) }), ns);
  const manager = new SyncManager({ store, transport, strategy, scopes: [`host.${id}`, 'fleet'], namespace: ns });
  manager.start();
  syncs.push(manager);
  // And its part in critical operations, on the same connection, as `agent run` wires it.
  const critical = new CriticalParticipant({ store, transport, namespace: ns, coordinatorKey: HARNESS_COORDINATOR_KEYS.publicKey });
  critical.start();
  participants.push(critical);
  return store;
}

const loggedFrom = async (origin: string): Promise<number> => ((await pg.query<{ n: number }>(`select count(*)::int as n from change_log where origin = $1`, [origin])).rows[0]?.n ?? 0);

describe('NATS credentials (operator mode)', () => {
  it('writes secrets 0600 and refuses to make a second authority over the first', async () => {
    expect(statSync(join(auth, AUTHORITY_FILES.fleetSeed)).mode & 0o777).toBe(0o600);
    expect(statSync(join(auth, AUTHORITY_FILES.hostsSeed)).mode & 0o777).toBe(0o600);
    expect(statSync(join(auth, AUTHORITY_FILES.agents, 'host-a.creds')).mode & 0o777).toBe(0o600);
    await expect(initAuthority(auth, ns)).rejects.toThrow(/already holds a NATS authority/);
  });

  it('refuses a connection without credentials', async () => {
    await expect(connectNats({ servers: nats.url, name: 'anonymous', waitOnFirstConnect: false })).rejects.toThrow(/cannot connect/);
  });

  it('agents with their own credentials sync through the services: a host write is logged, a server write reaches both', async () => {
    const a = agent('host-a');
    const b = agent('host-b');
    a.put({ scope: 'host.host-a', collection: 'inventory', key: 'kernel' }, { version: '6.1' });
    await eventually(async () => (await loggedFrom('host-a')) === 1, 30_000, 'host-a change logged');
    // host-b has written nothing: the server knows it holds the fleet scope from its pulls (agent_pulls),
    // and nudges it when a fleet record changes.
    await eventually(async () => (await pg.query(`select 1 from agent_pulls where agent_id = 'host-b'`)).rowCount === 1, 30_000, "host-b's pull facts");
    const r = await fetch(`${stack.operatorUrl}/records/fleet/config/motd`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${HARNESS_OPERATOR_TOKEN}` },
      body: JSON.stringify({ fields: { text: 'hello' } }),
    });
    expect(r.status).toBeLessThan(300);
    for (const st of [a, b]) await eventually(() => st.get({ scope: 'fleet', collection: 'config', key: 'motd' })?.fields?.['text'] === 'hello', 30_000, `${st.agentId} pulled the server write`);
  });

  it('a critical operation commits on both hosts: fleetctl (its user) -> change-log (the coordinator) -> hosts across the import, votes and decisions back', async () => {
    const out: string[] = [];
    const env = { FLEET_OPERATOR_NATS_URL: nats.url, FLEET_OPERATOR_NAMESPACE: ns, FLEET_OPERATOR_CREDS_FILE: join(auth, AUTHORITY_FILES.operatorCreds), FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN };
    const code = await main(['critical', 'credential', 'ops', '--user', 'ops', '--hash', '$6$salt$hashvalue', '--agents', 'host-a,host-b'], env, { out: (l) => void out.push(l), err: (l) => void out.push(l) });
    expect({ code, out }).toMatchObject({ code: 0, out: [expect.stringMatching(/\tcommitted\t/)] });
    const txid = out[0]?.split('\t')[0];
    for (const st of stores) await eventually(() => st.criticalEntries().some((e) => e.txid === txid && e.name === 'ops'), 15_000, `${st.agentId} holds the credential`);
  });

  it("an agent's credentials allow its own subjects only: it cannot push, pull, listen or read replies as another", async () => {
    const nc = await connectNats({ servers: nats.url, name: 'impostor', credentialsFile: join(auth, AUTHORITY_FILES.agents, 'host-a.creds'), inboxPrefix: agentInboxPrefix('host-a'), waitOnFirstConnect: false });
    const errors: string[] = [];
    void (async () => {
      for await (const st of nc.status()) if (st.type === 'error') errors.push(String((st as { error?: Error }).error?.message));
    })();
    try {
      const js = jetstream(nc);
      await expect(js.publish(s.push('host-b'), new TextEncoder().encode('{}'), { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
      await expect(nc.request(s.pull('host-b'), '{}', { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
      nc.subscribe(s.notify('host-b'));
      nc.subscribe('_INBOX.>');
      await eventually(() => errors.some((e) => e.includes(`Subscription to "${s.notify('host-b')}"`)) && errors.some((e) => e.includes('Subscription to "_INBOX.>"')), 5000, 'both subscriptions refused');
      expect(await loggedFrom('host-b')).toBe(0);
    } finally {
      await nc.close();
    }
    // Without its inbox prefix, an agent cannot receive even its own replies.
    const plain = await connectNats({ servers: nats.url, name: 'no-prefix', credentialsFile: join(auth, AUTHORITY_FILES.agents, 'host-a.creds'), waitOnFirstConnect: false });
    try {
      await expect(plain.request(s.pull('host-a'), '{}', { timeout: 3000 })).rejects.toThrow();
    } finally {
      await plain.close();
    }
  });

  it("a host cannot have a service's answer, or JetStream's acknowledgement, published where it chooses", async () => {
    const svc = await connectNats({ servers: nats.url, name: 'observer', credentialsFile: join(auth, AUTHORITY_FILES.coordinatorCreds), waitOnFirstConnect: false });
    const nc = await connectNats({ servers: nats.url, name: 'host-a-replies', credentialsFile: join(auth, AUTHORITY_FILES.agents, 'host-a.creds'), inboxPrefix: agentInboxPrefix('host-a'), waitOnFirstConnect: false });
    try {
      const jsm = await jetstreamManager(svc);
      const before = (await jsm.streams.info(s.streams.log)).state.messages;
      expect(before).toBeGreaterThan(0);
      const purge = `$JS.API.STREAM.PURGE.${s.streams.log}`;
      // A request on its own subjects with a reply subject that is not its inbox: not answered.
      nc.publish(s.origin('host-a'), new TextEncoder().encode(JSON.stringify({ protocol: 1, agentId: 'host-a' })), { reply: purge });
      nc.publish(s.pull('host-a'), new TextEncoder().encode('{}'), { reply: s.push('host-b') });
      // A push with such a reply subject: JetStream stores it and sends its acknowledgement there.
      nc.publish(s.push('host-a'), new TextEncoder().encode('{}'), { reply: purge });
      await nc.flush();
      await new Promise((r) => setTimeout(r, 1500));
      expect((await jsm.streams.info(s.streams.log)).state.messages).toBeGreaterThanOrEqual(before);
      expect(await loggedFrom('host-b')).toBe(0);

    } finally {
      await nc.close();
      await svc.close();
    }
  });

  it('the other services cannot speak to hosts as the coordinator; fleetctl can make operator requests only', async () => {
    const service = await connectNats({ servers: nats.url, name: 'service', credentialsFile: join(auth, AUTHORITY_FILES.serviceCreds), waitOnFirstConnect: false });
    const operator = await connectNats({ servers: nats.url, name: 'fleetctl', credentialsFile: join(auth, AUTHORITY_FILES.operatorCreds), waitOnFirstConnect: false });
    try {
      await expect(service.request(s.tpcAgent('host-a'), 'prepare', { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
      await expect(jetstream(operator).publish(s.push('host-a'), new TextEncoder().encode('{}'), { timeout: 3000 })).rejects.toThrow(/Permissions Violation/);
    } finally {
      await service.close();
      await operator.close();
    }
    // fleetctl itself, with its credentials, over the services' operator API.
    const out: string[] = [];
    const env = { FLEET_OPERATOR_NATS_URL: nats.url, FLEET_OPERATOR_NAMESPACE: ns, FLEET_OPERATOR_CREDS_FILE: join(auth, AUTHORITY_FILES.operatorCreds), FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN };
    expect(await main(['conflicts', 'list'], env, { out: (l) => void out.push(l), err: (l) => void out.push(l) })).toBe(0);
    expect(out).toEqual(['no conflicts']);
    // A credentials file it cannot read is a configuration error (78), not an unavailable NATS (69).
    out.length = 0;
    expect(await main(['conflicts', 'list'], { ...env, FLEET_OPERATOR_CREDS_FILE: join(dir, 'missing.creds') }, { out: (l) => void out.push(l), err: (l) => void out.push(l) })).toBe(78);
    expect(out.join('\n')).toMatch(/FLEET_CONFIG_001 .*missing\.creds/);
  });

  it('a revoked agent is refused after the server reloads; the others keep syncing', async () => {
    const revoked = await revokeAgent(auth, 'host-b');
    expect(revoked).toHaveLength(1);
    nats.reload(readFileSync(join(auth, AUTHORITY_FILES.serverConfig), 'utf8'));
    await eventually(
      async () => {
        try {
          const nc = await connectNats({ servers: nats.url, name: 'revoked', credentialsFile: join(auth, AUTHORITY_FILES.agents, 'host-b.creds'), waitOnFirstConnect: false });
          await nc.close();
          return false;
        } catch (e) {
          return /Authorization Violation/.test(String((e as { cause?: unknown }).cause ?? e));
        }
      },
      15_000,
      'host-b refused',
    );
    const b = stores.find((st) => st.agentId === 'host-b') as SqliteLocalStore;
    b.put({ scope: 'host.host-b', collection: 'inventory', key: 'kernel' }, { version: '5.10' });
    const a = stores.find((st) => st.agentId === 'host-a') as SqliteLocalStore;
    a.put({ scope: 'host.host-a', collection: 'inventory', key: 'kernel' }, { version: '6.2' });
    await eventually(async () => (await loggedFrom('host-a')) === 2, 30_000, "host-a's second change logged");
    expect(await loggedFrom('host-b')).toBe(0);
    expect(b.outboxStats().size).toBe(1); // kept on the host, not lost
  });

  it('fleetctl nats: init, agent, revoke, agents, with clear refusals', async () => {
    const d = join(dir, 'cli');
    const lines: string[] = [];
    const errors: string[] = [];
    const io = { out: (l: string) => void lines.push(l), err: (l: string) => void errors.push(l) };
    const env = { FLEET_OPERATOR_NAMESPACE: ns };
    expect(await main(['nats', 'init'], env, io)).toBe(64); // no directory named
    expect(await main(['nats', 'init', '--dir', d], env, io)).toBe(0);
    expect(await main(['nats', 'agent', 'h1', 'h2'], { ...env, FLEET_OPERATOR_NATS_DIR: d }, io)).toBe(0);
    expect(existsSync(join(d, AUTHORITY_FILES.agents, 'h2.creds'))).toBe(true);
    expect(await main(['nats', 'revoke', 'h2', '--dir', d], env, io)).toBe(0);
    lines.length = 0;
    expect(await main(['nats', 'agents', '--dir', d], env, io)).toBe(0);
    expect(lines).toEqual(['h1\t1 key(s) issued\tactive', 'h2\t1 key(s) issued\trevoked']);
    expect(await main(['nats', 'init', '--dir', d], env, io)).toBe(78);
    expect(await main(['nats', 'agent', 'server', '--dir', d], env, io)).toBe(78);
    expect(await main(['nats', 'revoke', 'never-issued', '--dir', d], env, io)).toBe(78);
    expect(errors.slice(-3).map((e) => e.replace(/^fleetctl: /, '').slice(0, 16))).toEqual(['FLEET_CONFIG_001', 'FLEET_CONFIG_001', 'FLEET_CONFIG_001']);
  });
});
