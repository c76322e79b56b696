/**
 * Critical operations end to end: the change-log service (its coordinator, NATS and HTTP APIs,
 * recovery loop) on a private PostgreSQL with max_prepared_transactions, real agent stores (SQLite)
 * with their participants on the shared NATS.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { jetstreamManager } from '@nats-io/jetstream';
import { Client } from 'pg';
import { CriticalParticipant, NatsSyncTransport } from '@fleet/agent-sync';
import type { CriticalReport } from '@fleet/agent-sync';
import { SqliteLocalStore } from '@fleet/agent-store';
import { loadConfig } from '@fleet/config';
import { decodeCriticalListReply, decodeCriticalTxReply, decodeTpcAgentReply, decodeTpcAgentRequest, encodeJson, Headers, PROTOCOL_VERSION, tpcSigner } from '@fleet/contracts';
import type { CriticalOperation, CriticalTxView, TpcAgentRequest } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, SHARED_NATS, sleep, testNamespace } from '@fleet/messaging/src/test-support';
import { DataSource } from 'typeorm';
import { CriticalCoordinator, PostgresParticipant } from '@fleet/server-store';
import { PrivatePostgres, testUuidV7 } from '@fleet/server-store/src/testing';
import { createChangeLogApp } from './bootstrap';
import { changeLogConfig } from './config';
import { CriticalRecovery, NatsAgentParticipants } from './critical';
import { testCertificate as cert } from '@fleet/contracts/src/testing/critical';

jest.setTimeout(90_000);


const s = testNamespace('tpc');
/** The coordinator signs what hosts act on; the hosts here check it (FLEET_AGENT_COORDINATOR_KEY_FILE). */
const KEYS = (() => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
})();
const TOKEN = 'operator-token-for-tests';
const auth = { [Headers.Authorization]: `Bearer ${TOKEN}` };
let pgServer: PrivatePostgres;
let dbUrl: string;
let app: INestApplication;
let operator: Messaging;
let pg: Client;
let base: string;
const dirs: string[] = [];

interface TestAgent {
  readonly id: string;
  readonly store: SqliteLocalStore;
  readonly transport: NatsSyncTransport;
  readonly participant: CriticalParticipant;
  readonly reports: CriticalReport[];
}
const agents: TestAgent[] = [];

async function startAgent(id: string, onReport?: (r: CriticalReport, a: TestAgent) => void): Promise<TestAgent> {
  const dir = mkdtempSync(join(tmpdir(), `tpc-${id}-`));
  dirs.push(dir);
  const store = SqliteLocalStore.open({ dataDir: dir, agentId: id });
  const transport = new NatsSyncTransport({ servers: SHARED_NATS, name: `tpc-${id}` }, s.ns);
  await transport.connect();
  const reports: CriticalReport[] = [];
  const agent: TestAgent = {
    id,
    store,
    transport,
    reports,
    participant: new CriticalParticipant({
      store,
      transport,
      namespace: s.ns,
      retryMs: 200,
      coordinatorKey: KEYS.publicKey,
      onReport: (r) => {
        reports.push(r);
        onReport?.(r, agent);
      },
    }),
  };
  agent.participant.start();
  agents.push(agent);
  return agent;
}

beforeAll(async () => {
  pgServer = await PrivatePostgres.start({ max_prepared_transactions: 16 });
  dbUrl = pgServer.createDatabase('fleet_critical');
  const keyDir = mkdtempSync(join(tmpdir(), 'tpc-key-'));
  dirs.push(keyDir);
  writeFileSync(join(keyDir, 'coordinator.key'), KEYS.privateKey, { mode: 0o600 });
  const config = loadConfig(changeLogConfig, {
    FLEET_CHANGELOG_DATABASE_URL: dbUrl,
    FLEET_CHANGELOG_NATS_URL: SHARED_NATS,
    FLEET_CHANGELOG_NAMESPACE: s.ns,
    FLEET_CHANGELOG_HTTP_PORT: '0',
    FLEET_CHANGELOG_LOG_LEVEL: 'warn',
    FLEET_CHANGELOG_VOTE_TIMEOUT: '3s',
    FLEET_CHANGELOG_CRITICAL_RETRY: '300ms',
    FLEET_CHANGELOG_CRITICAL_RETENTION: '1h',
    FLEET_CHANGELOG_OPERATOR_TOKEN: TOKEN,
    FLEET_CHANGELOG_SIGNING_KEY_FILE: join(keyDir, 'coordinator.key'),
  });
  app = await createChangeLogApp(config);
  base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  operator = await Messaging.connect({ servers: SHARED_NATS, name: 'tpc-operator' }, s);
  pg = new Client({ connectionString: dbUrl });
  await pg.connect();
});

afterAll(async () => {
  for (const a of agents) {
    a.participant.stop();
    await a.transport.close();
    a.store.close();
  }
  await app?.close();
  if (operator) await deleteNamespaceStreams(await jetstreamManager(operator.nc), s);
  await operator?.drain();
  await pg?.end();
  pgServer?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function begin(operation: CriticalOperation, hosts: readonly string[], voteTimeoutMs?: number): Promise<CriticalTxView> {
  const body = { protocol: PROTOCOL_VERSION, operation, agents: hosts, ...(voteTimeoutMs === undefined ? {} : { voteTimeoutMs }) };
  const reply = decodeCriticalTxReply((await operator.request(s.criticalApi('begin'), encodeJson(body), { timeoutMs: 30_000, headers: auth })).data);
  if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
  return reply.value.transaction;
}

const serverState = async (name: string) =>
  (await pg.query<{ agent_id: string; txid: string }>('select agent_id, txid from critical_state where name = $1 order by agent_id', [name])).rows;
const preparedXacts = async () => (await pg.query<{ gid: string }>('select gid from pg_prepared_xacts')).rows.map((r) => r.gid);
const logged = async (txid: string) => (await pg.query<{ state: string; acked: string[] }>('select state, acked from critical_transactions where txid = $1', [txid])).rows[0];

describe('critical operations: two-phase commit across the server (PostgreSQL) and agents (SQLite)', () => {
  it('commits on the server and every host at once; the NATS and HTTP APIs show it', async () => {
    const [a1, a2] = [await startAgent('a1'), await startAgent('a2')];
    const tx = await begin(cert('web'), ['a1', 'a2']);
    expect(tx).toMatchObject({ kind: 'certificate', name: 'web', state: 'committed', participants: ['server', 'a1', 'a2'] });
    expect(tx.votes).toEqual({ server: { vote: 'yes' }, a1: { vote: 'yes' }, a2: { vote: 'yes' } });
    expect([...tx.acked].sort()).toEqual(['a1', 'a2', 'server']);
    for (const a of [a1, a2]) expect(a.store.criticalEntries()).toEqual([expect.objectContaining({ kind: 'certificate', name: 'web', txid: tx.txid })]);
    expect(await serverState('web')).toEqual([
      { agent_id: 'a1', txid: tx.txid },
      { agent_id: 'a2', txid: tx.txid },
    ]);
    expect(await preparedXacts()).toEqual([]);

    const bearer = { authorization: `Bearer ${TOKEN}` };
    const shown = (await (await fetch(`${base}/critical/${tx.txid}`, { headers: bearer })).json()) as { transaction: CriticalTxView };
    expect(shown.transaction).toEqual(tx);
    const listed = (await (await fetch(`${base}/critical?state=committed`, { headers: bearer })).json()) as { transactions: CriticalTxView[] };
    expect(listed.transactions.map((t) => t.txid)).toContain(tx.txid);
    const viaNats = decodeCriticalTxReply((await operator.request(s.criticalApi('show'), encodeJson({ protocol: PROTOCOL_VERSION, txid: tx.txid }), { timeoutMs: 5000, headers: auth })).data);
    expect(viaNats.ok && viaNats.value.transaction).toEqual(tx);
    const missing = await fetch(`${base}/critical/${testUuidV7()}`, { headers: bearer });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('FLEET_TPC_001');
  });

  it('one host votes no: the transaction aborts, nothing is applied anywhere, the reason names the host', async () => {
    const [b1, b2] = [await startAgent('b1'), await startAgent('b2')];
    // b2 holds the same certificate prepared for another transaction (one stuck in doubt).
    const stuck = testUuidV7();
    expect(b2.store.criticalPrepare(stuck, cert('mail'))).toEqual({ vote: 'yes' });
    const tx = await begin(cert('mail'), ['b1', 'b2']);
    expect(tx.state).toBe('aborted');
    expect(tx.reason).toBe(`b2: certificate mail is held prepared by transaction ${stuck}`);
    expect(b1.store.criticalEntries()).toEqual([]);
    expect(b1.store.criticalInDoubt()).toEqual([]);
    expect(b2.store.criticalEntries()).toEqual([]);
    expect(await serverState('mail')).toEqual([]);
    expect(await preparedXacts()).toEqual([]);
  });

  it('a host that is not connected aborts the transaction at once, and the hosts that prepared drop their staging', async () => {
    const c1 = await startAgent('c1');
    const t0 = Date.now();
    const tx = await begin(cert('vpn'), ['c1', 'ghost'], 20_000);
    expect(Date.now() - t0).toBeLessThan(10_000); // decided without waiting for the 20 s deadline
    expect(tx.state).toBe('aborted');
    expect(tx.reason).toBe('ghost: not connected (nothing answers on its participant subject)');
    expect(c1.store.criticalInDoubt()).toEqual([]);
    expect(c1.store.criticalEntries()).toEqual([]);
    expect(await serverState('vpn')).toEqual([]);
  });

  it('a vote after the deadline counts as none: aborted, and the late voter is told to abort', async () => {
    const heard: TpcAgentRequest[] = [];
    const slow = operator.nc.subscribe(s.tpcAgent('slow'), {
      callback: (_err, msg) => {
        const req = decodeTpcAgentRequest(msg.data);
        heard.push(req);
        const answer = req.t === 'prepare' ? { protocol: PROTOCOL_VERSION, txid: req.txid, vote: { vote: 'yes' } } : { protocol: PROTOCOL_VERSION, txid: req.txid, state: 'aborted' };
        setTimeout(() => msg.respond(encodeJson(answer)), req.t === 'prepare' ? 1500 : 0);
      },
    });
    try {
      await startAgent('d1');
      const tx = await begin(cert('ldap'), ['d1', 'slow'], 500);
      expect(tx.state).toBe('aborted');
      expect(tx.reason).toBe('no vote in time from slow');
      // It may have prepared when its vote was lost: it hears the abort (from begin or from recovery).
      await eventually(() => heard.some((r) => r.t === 'decision' && r.decision === 'abort'), 10_000, 'the abort sent to the late voter');
      await eventually(async () => (await logged(tx.txid))?.state === 'aborted', 10_000, 'every participant acknowledged');
    } finally {
      slow.unsubscribe();
    }
  });

  it('a host that went offline after voting yes is in doubt until it is back; then it holds the commit', async () => {
    await startAgent('e1');
    // e2 answers the prepare, then drops off the network before the decision reaches it.
    const e2 = await startAgent('e2', (r, a) => {
      if (r.type === 'voted') setImmediate(() => a.participant.stop());
    });
    const tx = await begin(cert('ntp'), ['e1', 'e2']);
    expect(tx.state).toBe('committing'); // decided: the commit point is passed, e2 has not acknowledged
    expect(tx.acked).not.toContain('e2');
    expect(e2.store.criticalInDoubt().map((t) => t.txid)).toEqual([tx.txid]);
    expect(e2.store.criticalEntries()).toEqual([]);
    await sleep(500);
    expect((await logged(tx.txid))?.state).toBe('committing'); // recovery keeps trying; nobody decided for e2
    e2.participant.start(); // back online: it asks, and recovery re-sends the decision
    await eventually(() => e2.store.criticalEntries().length === 1, 10_000, 'e2 holds the certificate');
    expect(e2.store.criticalEntries()[0]).toMatchObject({ name: 'ntp', txid: tx.txid });
    await eventually(async () => (await logged(tx.txid))?.state === 'committed', 10_000, 'the coordinator sees every acknowledgement');
  });

  it('a coordinator that died mid-vote leaves nothing prepared: recovery decides abort once the deadline passed (presumed abort)', async () => {
    const f1 = await startAgent('f1');
    const txid = testUuidV7();
    const op = cert('smtp');
    const deadline = Date.now() + 800;
    // What a coordinator leaves if it dies after the prepares and before logging a decision.
    await pg.query(`insert into critical_transactions (txid, kind, name, participants, state, deadline) values ($1, 'certificate', 'smtp', $2, 'preparing', $3)`, [
      txid,
      ['server', 'f1'],
      new Date(deadline),
    ]);
    const server = new PostgresParticipant(app.get(DataSource));
    expect(await server.prepare(txid, op, ['f1'])).toEqual({ vote: 'yes' });
    expect(await new NatsAgentParticipants(() => operator, s.ns, tpcSigner(KEYS.privateKey)).prepare('f1', txid, op, deadline, 2000)).toEqual({ vote: 'yes' });
    expect(f1.store.criticalInDoubt().map((t) => t.txid)).toEqual([txid]);
    // While undecided, f1 asking gets `pending` (not an error) and keeps its staging.
    const coordinator = app.get(CriticalCoordinator);
    expect(await coordinator.status('f1', txid)).toBe('pending');
    f1.reports.length = 0;
    expect(await f1.participant.settleInDoubt()).toBe(0);
    expect(f1.reports.filter((r) => r.type === 'error')).toEqual([]);
    expect(f1.store.criticalInDoubt().map((t) => t.txid)).toEqual([txid]);
    // Another host asking about it is refused: it is not a participant.
    await expect(coordinator.status('a1', txid)).rejects.toMatchObject({ code: 'FLEET_TPC_001' });

    await eventually(async () => (await logged(txid))?.state === 'aborted', 15_000, 'recovery aborts it');
    expect((await pg.query<{ reason: string }>('select reason from critical_transactions where txid = $1', [txid])).rows[0]?.reason).toBe(
      'undecided at the deadline (its coordinator stopped mid-vote): presumed abort',
    );
    expect(await preparedXacts()).toEqual([]);
    expect(f1.store.criticalInDoubt()).toEqual([]);
    expect(f1.store.criticalEntries()).toEqual([]);
    expect(await serverState('smtp')).toEqual([]);
  });

  it('two operations on the same certificate of the same host at once: host and server end holding the same one', async () => {
    const g1 = await startAgent('g1');
    for (let round = 0; round < 3; round++) {
      const both = await Promise.all([begin(cert('api'), ['g1']), begin(cert('api'), ['g1'])]);
      for (const t of both) expect(['committed', 'aborted']).toContain(t.state);
      // Whatever the interleaving (one refused as held prepared, or both in turn), the host and the server agree.
      const held = g1.store.criticalEntries().find((e) => e.name === 'api');
      const server = await serverState('api');
      expect(server.map((r) => r.txid)).toEqual(held === undefined ? [] : [held.txid]);
      if (held !== undefined) expect(both.find((t) => t.txid === held.txid)?.state ?? 'an earlier round').not.toBe('aborted');
      expect(g1.store.criticalInDoubt()).toEqual([]);
      expect(await preparedXacts()).toEqual([]);
    }
  });

  it('a host whose store fails answers with an error: that is its no, with the error as the reason', async () => {
    const h1 = await startAgent('h1');
    await startAgent('h2');
    h1.store.close(); // the participant still answers, but its store refuses
    const tx = await begin(cert('syslog'), ['h1', 'h2']);
    expect(tx.state).toBe('aborted');
    expect(tx.reason).toMatch(/^h1: FLEET_AGENT_001: .*store is closed/);
    expect(await serverState('syslog')).toEqual([]);
  });

  it('begin needs the operator token (NATS and HTTP): missing or wrong is FLEET_AUTH_004 / 401, and nothing is logged', async () => {
    const body = encodeJson({ protocol: PROTOCOL_VERSION, operation: cert('nope'), agents: ['a1'] });
    for (const headers of [undefined, { [Headers.Authorization]: 'Bearer wrong-token-xxxxxxxx' }, { [Headers.Authorization]: TOKEN }]) {
      const reply = decodeCriticalTxReply((await operator.request(s.criticalApi('begin'), body, { timeoutMs: 10_000, ...(headers === undefined ? {} : { headers }) })).data);
      expect(reply.ok ? 'ok' : reply.error.code).toBe('FLEET_AUTH_004');
    }
    const http = await fetch(`${base}/critical`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ operation: cert('nope'), agents: ['a1'] }) });
    expect(http.status).toBe(401);
    expect((await pg.query('select count(*)::int as n from critical_transactions where name = $1', ['nope'])).rows[0].n).toBe(0);
  });

  it('reads need the operator token too (NATS list/show, HTTP GET): missing or wrong is FLEET_AUTH_004 / 401 and shows nothing; the probes stay open', async () => {
    await startAgent('rg1');
    const tx = await begin(cert('read-guard'), ['rg1']);
    expect(tx.state).toBe('committed');
    for (const headers of [undefined, { [Headers.Authorization]: 'Bearer wrong-token-xxxxxxxx' }, { [Headers.Authorization]: TOKEN }]) {
      const opts = { timeoutMs: 10_000, ...(headers === undefined ? {} : { headers }) };
      const listed = decodeCriticalListReply((await operator.request(s.criticalApi('list'), encodeJson({ protocol: PROTOCOL_VERSION }), opts)).data);
      expect(listed.ok ? 'ok' : listed.error.code).toBe('FLEET_AUTH_004');
      const shown = decodeCriticalTxReply((await operator.request(s.criticalApi('show'), encodeJson({ protocol: PROTOCOL_VERSION, txid: tx.txid }), opts)).data);
      expect(shown.ok ? 'ok' : shown.error.code).toBe('FLEET_AUTH_004');
      if (!shown.ok) expect(shown.error.message).toContain('FLEET_CHANGELOG_OPERATOR_TOKEN');
      const httpHeaders = headers === undefined ? {} : { authorization: headers[Headers.Authorization] };
      for (const path of ['/critical', `/critical/${tx.txid}`, `/critical/${testUuidV7()}`]) {
        const r = await fetch(`${base}${path}`, { headers: httpHeaders });
        const body = (await r.json()) as { error?: { code: string; message: string }; transaction?: unknown; transactions?: unknown };
        expect({ path, status: r.status, code: body.error?.code }).toEqual({ path, status: 401, code: 'FLEET_AUTH_004' });
        expect(body.transaction ?? body.transactions).toBeUndefined();
      }
    }
    const listed = decodeCriticalListReply((await operator.request(s.criticalApi('list'), encodeJson({ protocol: PROTOCOL_VERSION }), { timeoutMs: 10_000, headers: auth })).data);
    expect(listed.ok && listed.value.transactions.map((t) => t.txid)).toContain(tx.txid);
    for (const probe of ['/health/live', '/health/ready']) expect((await fetch(`${base}${probe}`)).status).toBe(200);
  });

  it('a host acts only on what the coordinator signed for it: a forged prepare, or one signed for another host, is refused and stages nothing', async () => {
    const m1 = await startAgent('m1');
    const txid = testUuidV7();
    const prepare = { t: 'prepare' as const, txid, operation: cert('forged'), deadline: Date.now() + 10_000 };
    const ask = async (body: object) => decodeTpcAgentReply((await operator.request(s.tpcAgent('m1'), encodeJson({ protocol: PROTOCOL_VERSION, ...body }), { timeoutMs: 5000 })).data);
    // Anyone who can publish on the host's subject, without the coordinator's key:
    const unsigned = await ask(prepare);
    expect(unsigned.ok ? 'accepted' : unsigned.error.code).toBe('FLEET_AUTH_005');
    // A genuine signature, but for another host (replayed here):
    const sign = tpcSigner(KEYS.privateKey);
    const replayed = await ask({ ...prepare, sig: sign('m2', prepare) });
    expect(replayed.ok ? 'accepted' : replayed.error.code).toBe('FLEET_AUTH_005');
    // A decision signed for this host but another transaction:
    const other = await ask({ t: 'decision', txid, decision: 'commit', sig: sign('m1', { t: 'decision', txid: testUuidV7(), decision: 'commit' }) });
    expect(other.ok ? 'accepted' : other.error.code).toBe('FLEET_AUTH_005');
    expect(m1.store.criticalInDoubt()).toEqual([]);
    expect(m1.store.criticalEntries()).toEqual([]);
    // What the coordinator signs for it is accepted:
    const genuine = await ask({ ...prepare, sig: sign('m1', prepare) });
    expect(genuine.ok && 'vote' in genuine.value ? genuine.value.vote : genuine).toEqual({ vote: 'yes' });
    expect(m1.store.criticalInDoubt().map((t) => t.txid)).toEqual([txid]);
    // In doubt, it asks the coordinator, whose signed answer (an abort: the log has no such transaction) it takes.
    await eventually(() => m1.store.criticalInDoubt().length === 0, 10_000, 'the signed status answer settles it');
    expect(m1.store.criticalEntries()).toEqual([]);
  });

  it('a host in doubt takes only a signed status answer: an impostor answering for the coordinator changes nothing', async () => {
    const ns = testNamespace('tpcf');
    const dir = mkdtempSync(join(tmpdir(), 'tpc-z1-'));
    dirs.push(dir);
    const store = SqliteLocalStore.open({ dataDir: dir, agentId: 'z1' });
    const transport = new NatsSyncTransport({ servers: SHARED_NATS, name: 'tpc-z1' }, ns.ns);
    await transport.connect();
    const reports: CriticalReport[] = [];
    const participant = new CriticalParticipant({ store, transport, namespace: ns.ns, coordinatorKey: KEYS.publicKey, onReport: (r) => reports.push(r) });
    const txid = testUuidV7();
    expect(store.criticalPrepare(txid, cert('imp'))).toEqual({ vote: 'yes' });
    let signedBy: ((agentId: string, m: { t: 'status'; txid: string; decision: 'commit' }) => string) | undefined;
    const impostor = operator.nc.subscribe(ns.tpcStatus('z1'), {
      callback: (_e, msg) => {
        const body = { protocol: PROTOCOL_VERSION, txid, decision: 'commit', ...(signedBy === undefined ? {} : { sig: signedBy('z1', { t: 'status', txid, decision: 'commit' }) }) };
        msg.respond(encodeJson(body));
      },
    });
    await operator.nc.flush(); // the subscription is on the server before the host asks (else: no responders)
    try {
      expect(await participant.settleInDoubt()).toBe(0);
      expect(reports.some((r) => r.type === 'error' && (r.error as { code?: string }).code === 'FLEET_AUTH_005')).toBe(true);
      expect(store.criticalInDoubt().map((t) => t.txid)).toEqual([txid]);
      expect(store.criticalEntries()).toEqual([]);
      signedBy = tpcSigner(KEYS.privateKey); // now the coordinator's own answer
      expect(await participant.settleInDoubt()).toBe(1);
      expect(store.criticalEntries().map((e) => e.txid)).toEqual([txid]);
    } finally {
      impostor.unsubscribe();
      participant.stop();
      await transport.close();
      store.close();
    }
  });

  it('recovery prunes finished transactions past the retention; a host restored in doubt about one gets the commit the server holds for it, or stays in doubt', async () => {
    const p1 = await startAgent('p1');
    const committed = await begin(cert('prune-web'), ['p1']);
    expect(committed.state).toBe('committed');
    const aborted = await begin(cert('prune-mail'), ['p1', 'ghost-p']); // ghost-p is not connected
    await eventually(async () => (await logged(aborted.txid))?.state === 'aborted', 10_000, 'the abort acknowledged by p1');
    const recent = await begin(cert('prune-recent'), ['p1']);
    // Finished two hours ago (the retention here is 1 h): due.
    for (const t of [committed.txid, aborted.txid]) {
      await pg.query(`update critical_transactions set created_at = created_at - interval '2 hours', decided_at = decided_at - interval '2 hours', completed_at = completed_at - interval '2 hours' where txid = $1`, [t]);
    }
    // The recovery loop runs in the background too and may prune them first (skip locked): what counts is that they are gone.
    await app.get(CriticalRecovery).pruneIfDue(Date.now() + 3_600_000);
    expect(await logged(committed.txid)).toBeUndefined();
    expect(await logged(aborted.txid)).toBeUndefined();
    expect((await logged(recent.txid))?.state).toBe('committed');
    expect(await serverState('prune-web')).toEqual([{ agent_id: 'p1', txid: committed.txid }]); // what the host holds stays
    const missing = decodeCriticalTxReply((await operator.request(s.criticalApi('show'), encodeJson({ protocol: PROTOCOL_VERSION, txid: committed.txid }), { timeoutMs: 5000, headers: auth })).data);
    expect(missing.ok ? 'found' : missing.error.code).toBe('FLEET_TPC_001');

    // p1's store goes back to a backup taken between the prepares and the decisions: in doubt about both.
    p1.participant.stop();
    const restored = await startAgent('p1');
    expect(restored.store.criticalPrepare(committed.txid, cert('prune-web'))).toEqual({ vote: 'yes' });
    expect(restored.store.criticalPrepare(aborted.txid, cert('prune-mail'))).toEqual({ vote: 'yes' });
    await restored.participant.settleInDoubt();
    await eventually(() => restored.store.criticalEntries().length === 1, 10_000, 'the commit told from critical_state');
    expect(restored.store.criticalEntries()[0]).toMatchObject({ name: 'prune-web', txid: committed.txid });
    // The aborted one cannot be told (presuming abort could be wrong for a pruned commit): it stays in doubt, with the reason.
    await eventually(() => restored.reports.some((r) => r.type === 'error' && r.txid === aborted.txid && String((r.error as Error).message).startsWith('FLEET_TPC_004')), 10_000, 'FLEET_TPC_004 reported');
    expect(restored.store.criticalInDoubt().map((t) => t.txid)).toEqual([aborted.txid]);
    expect(restored.store.criticalEntries().map((e) => e.name)).toEqual(['prune-web']);
  });

  it('refuses a malformed operation with the reason, over NATS and HTTP: a clear-text password is never accepted', async () => {
    const bad = { protocol: PROTOCOL_VERSION, operation: { kind: 'credential', name: 'root', value: { user: 'root', hash: 'hunter2' } }, agents: ['a1'] };
    const reply = decodeCriticalTxReply((await operator.request(s.criticalApi('begin'), encodeJson(bad), { timeoutMs: 10_000, headers: auth })).data);
    expect(reply.ok).toBe(false);
    if (!reply.ok) {
      expect(reply.error.code).toBe('FLEET_DECODE_002');
      expect(reply.error.message).toContain('operation.value.hash');
    }
    const http = await fetch(`${base}/critical`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ operation: cert('x'), agents: [] }) });
    expect(http.status).toBe(400);
    expect(((await http.json()) as { error: { code: string; message: string } }).error.message).toContain('agents');
    expect((await pg.query('select count(*)::int as n from critical_transactions where name = $1', ['x'])).rows[0].n).toBe(0);
  });
});
