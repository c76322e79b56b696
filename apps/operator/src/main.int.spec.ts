/**
 * `fleetctl` against a real deployment: the four services as processes (libs/fleet-harness), a private
 * nats-server, the shared PostgreSQL (`npm run setup` sets its max_prepared_transactions), and two
 * in-process agents. A manual conflict is made, listed, shown and resolved; critical operations are
 * begun (committed, refused without the token, aborted with a host offline) and listed; the fleet's
 * status is read (healthy, then with dead letters, then with a service down); agents are listed and
 * shown; the projections are verified (consistent, then with rows corrupted by hand); dead letters
 * are made for real (a push that fails on every delivery while the test holds the append lock, a
 * forged push, a change a projection refused) and listed, shown, replayed and discarded; a dead letter
 * near max_payload is shown cut to fit. Sync health: the agents' pulls are recorded by delta-calculator
 * and listed with their score; an agent taken offline (its last caught-up pull set back 30 hours) drops
 * to unhealthy, the fleet score with it, and `status --min-health-score` exits 1 below the score.
 * Every operator request needs the operator token, reads too: fleetctl refuses to ask without one, and
 * every service refuses a missing or wrong one on every operator subject and HTTP route (FLEET_AUTH_004,
 * 401), while the probes, the metrics and the agents' own requests stay open.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { decodeErrorReply, encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import { Fleet, HARNESS_OPERATOR_TOKEN, SERVICE_NAMES } from '@fleet/fleet-harness';
import { DEMO_STRATEGIES } from '@fleet/fleet-harness/src/scenario';
import { eventually } from '@fleet/fleet-harness/src/util';
import { APPEND_LOCK_SQL } from '@fleet/server-store';
import { main } from './main';

jest.setTimeout(180_000);

let fleet: Fleet;
let env: Record<string, string>;

beforeAll(async () => {
  fleet = await Fleet.start({
    agents: 2,
    strategies: DEMO_STRATEGIES,
    collections: ['notes'],
    groupsOf: (i) => (i === 0 ? ['web', 'eu'] : []),
    // A push that fails on every delivery is dead-lettered after 3 (the default never gives up), and an
    // append waits 2 s for the append lock before failing: the replay test makes such a push.
    serviceEnv: { 'change-log': { FLEET_CHANGELOG_MAX_DELIVER: '3', FLEET_CHANGELOG_LOCK_TIMEOUT: '2s' } },
  });
  // Every fleetctl command sends the operator token (reads too); the tests of its refusal take it away (NO_TOKEN).
  env = { FLEET_OPERATOR_NATS_URL: fleet.natsUrl, FLEET_OPERATOR_NAMESPACE: fleet.s.ns, FLEET_OPERATOR_TIMEOUT: '30s', FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN };
  await fleet.registerGroups();
  await fleet.bringOnline();
});

afterAll(async () => {
  await fleet?.close();
});

/** fleetctl without an operator token. */
const NO_TOKEN = { FLEET_OPERATOR_TOKEN: undefined };
const WRONG_TOKEN = { FLEET_OPERATOR_TOKEN: 'not-the-operator-token' };

async function run(args: string[], extra: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { ...env, ...extra }, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('fleetctl', () => {
  it('lists, shows and resolves a manual conflict; resolving it again is a clear error', async () => {
    const a = fleet.agents[0]!;
    const ref = { scope: `host.${a.id}`, collection: 'notes', key: 'owner' };
    a.put('notes', 'owner', { text: 'first' });
    await fleet.waitConverged(60_000);
    // The host edits offline while an operator edits the same note: `notes` is a manual collection.
    await fleet.takeOffline([a]);
    a.patch('notes', 'owner', { text: 'from the host' });
    await fleet.serverEditHost(ref, { op: 'put', fields: { text: 'from the server' } });
    await fleet.bringOnline([a]);
    const [pending] = await eventually(async () => {
      const p = await fleet.pendingConflicts();
      return p.length > 0 ? p : undefined;
    }, 60_000, 'a pending manual conflict');

    let r = await run(['conflicts', 'list', '--status', 'pending']);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`${pending!.id}\tpending\tmanual\thost.${a.id}/notes/owner\t`);
    r = await run(['conflicts', 'show', String(pending!.id)]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ id: pending!.id, status: 'pending', ref });
    // Resolving needs the operator token: none (refused here), a wrong one (refused by the service).
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server'], NO_TOKEN);
    expect(r.code).toBe(77);
    expect(r.err).toMatch(/FLEET_AUTH_004 .*set FLEET_OPERATOR_TOKEN to the operator token to resolve a conflict/);
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server'], { FLEET_OPERATOR_TOKEN: 'not-the-operator-token' });
    expect(r.code).toBe(77);
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server'], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(new RegExp(`^conflict ${pending!.id} resolved: resolution change [0-9a-f-]{36} logged at seq \\d+$`));
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server'], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^fleetctl: FLEET_CONFLICT_002 /);
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server', '--deleted'], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(64);
  });

  it('begins critical operations: committed on every host (exit 0), refused without the token (77), aborted with a host offline (2)', async () => {
    const ids = fleet.agents.map((a) => a.id).join(',');
    const args = ['critical', 'credential', 'ops', '--user', 'ops', '--hash', '$6$salt$hashvalue', '--agents', ids];
    let r = await run(args, NO_TOKEN);
    expect(r.code).toBe(77);
    expect(r.err).toContain('FLEET_AUTH_004');
    r = await run(args, { FLEET_OPERATOR_TOKEN: 'not-the-operator-token' });
    expect(r.code).toBe(77);

    r = await run(args, { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r).toMatchObject({ code: 0, err: '' });
    const [txid, state] = r.out.split('\t');
    expect(state).toBe('committed');
    for (const a of fleet.agents) expect(a.store.criticalEntries()).toEqual([expect.objectContaining({ kind: 'credential', name: 'ops', txid })]);

    await fleet.takeOffline([fleet.agents[1]!]);
    r = await run([...args.slice(0, 2), 'ops2', ...args.slice(3), '--vote-timeout', '2s'], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(2);
    expect(r.out).toMatch(new RegExp(`\\taborted\\tcredential ops2\\t2 host\\(s\\) \\+ server\\t${fleet.agents[1]!.id}: not connected`));
    expect(fleet.agents[0]!.store.criticalEntries().map((e) => e.name)).toEqual(['ops']);
    await fleet.bringOnline([fleet.agents[1]!]);

    r = await run(['critical', 'list']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n').map((l) => l.split('\t')[1])).toEqual(['aborted', 'committed']);
    r = await run(['critical', 'show', txid!, '--json']);
    expect(JSON.parse(r.out)).toMatchObject({ transaction: { txid, state: 'committed', kind: 'credential', name: 'ops' } });
    expect(r.out).not.toContain('hashvalue');
  });

  it('says what is wrong: usage (64), configuration (78), NATS unreachable (69)', async () => {
    expect((await run([])).code).toBe(64);
    expect((await run(['conflicts', 'show', 'abc'])).code).toBe(64);
    expect((await run(['critical', 'certificate', 'web', '--agents', 'a'])).err).toContain('--pem-file is required');
    expect((await run(['conflicts', 'list'], { FLEET_OPERATOR_TIMEOUT: 'soon' })).code).toBe(78);
    const down = await run(['conflicts', 'list'], { FLEET_OPERATOR_NATS_URL: 'nats://127.0.0.1:1' });
    expect(down.code).toBe(69);
    expect(down.err).toMatch(/^fleetctl: FLEET_INFRA_001 /);
  });

  it('reads need the operator token too: without one fleetctl asks nothing (77); a wrong one is refused by the service that owns the data (77), naming its variable', async () => {
    const reads: [string[], string, string][] = [
      // [command, what fleetctl says it needed the token for, the service variable named in the refusal]
      [['conflicts', 'list'], 'list conflicts', 'FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN'],
      [['conflicts', 'show', '1'], 'show a conflict', 'FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN'],
      [['critical', 'list'], 'list critical operations', 'FLEET_CHANGELOG_OPERATOR_TOKEN'],
      [['critical', 'show', '01900000-0000-7000-8000-000000000000'], 'show a critical operation', 'FLEET_CHANGELOG_OPERATOR_TOKEN'],
      [['agents'], 'list agents', 'FLEET_CHANGELOG_OPERATOR_TOKEN'],
      [['agents', 'show', fleet.agents[0]!.id], 'show an agent', 'FLEET_CHANGELOG_OPERATOR_TOKEN'],
      [['replay', 'list'], 'list dead letters', 'FLEET_CHANGELOG_OPERATOR_TOKEN'],
      [['replay', 'show', '1'], 'show a dead letter', 'FLEET_CHANGELOG_OPERATOR_TOKEN'],
      [['verify'], 'verify the projections', '_OPERATOR_TOKEN'],
      [['status'], 'read the fleet status', ''],
    ];
    for (const [args, action, variable] of reads) {
      const none = await run(args, NO_TOKEN);
      expect({ args, code: none.code, out: none.out }).toEqual({ args, code: 77, out: '' });
      expect(none.err).toBe(`fleetctl: FLEET_AUTH_004 operator token missing or wrong: set FLEET_OPERATOR_TOKEN to the operator token to ${action} (every operator request needs it, reads too)`);
      if (args[0] === 'status') continue; // below: status shows which services refused
      const wrong = await run(args, WRONG_TOKEN);
      expect({ args, code: wrong.code, out: wrong.out }).toEqual({ args, code: 77, out: '' });
      expect(wrong.err).toMatch(/^fleetctl: FLEET_AUTH_004 .* refused: send `Authorization: Bearer <token>` with the value of the service's FLEET_[A-Z]+_OPERATOR_TOKEN \(or FLEET_OPERATOR_TOKEN\) \(fleetctl sends FLEET_OPERATOR_TOKEN: it must be the token the service is configured with\)$/);
      expect(wrong.err).toContain(variable);
    }

    // status with a wrong token: every service answers, and refuses; the verdict says so (77), not "down" (69).
    let r = await run(['status'], WRONG_TOKEN);
    expect(r.code).toBe(77);
    for (const svc of SERVICE_NAMES) expect(r.out).toMatch(new RegExp(`^${svc} +REFUSED +- +FLEET_AUTH_004 .*FLEET_[A-Z]+_OPERATOR_TOKEN`, 'm'));
    expect(r.out).toContain('dead letters: unknown (change-log refused the operator token)\nsync health: unknown (delta-calculator refused the operator token)');
    expect(r.out).toMatch(/\nREFUSED\n  - change-log refused the operator token: set FLEET_OPERATOR_TOKEN to the token the services are configured with\n/);
    expect(r.out).not.toMatch(/log head seq|conflict\(s\) waiting/);
    const j = JSON.parse((await run(['status', '--json'], WRONG_TOKEN)).out) as { verdict: string; problems: string[] };
    expect(j.verdict).toBe('refused');
    expect(j.problems).toHaveLength(4);
    // With the token, the same commands answer.
    r = await run(['conflicts', 'list']);
    expect(r).toMatchObject({ code: 0, err: '' });
    r = await run(['critical', 'list']);
    expect(r).toMatchObject({ code: 0, err: '' });
  });

  it('every operator subject and HTTP route of every service refuses a missing or wrong token (FLEET_AUTH_004, 401); probes, metrics and agents stay open', async () => {
    const s = fleet.s;
    const subjects = [
      s.conflictsApi('list'),
      s.conflictsApi('show'),
      s.conflictsApi('resolve'),
      s.criticalApi('begin'),
      s.criticalApi('list'),
      s.criticalApi('show'),
      s.agentsApi('list'),
      s.agentsApi('show'),
      s.agentGroupsApi,
      s.agentSyncApi,
      s.fleetHealthApi,
      s.deadLettersApi('list'),
      s.deadLettersApi('show'),
      s.deadLettersApi('replay'),
      s.deadLettersApi('discard'),
      ...(['change-log', 'version-vector', 'delta-calculator'] as const).map((svc) => s.verifyApi(svc)),
      ...SERVICE_NAMES.map((svc) => s.statusApi(svc)),
    ];
    const body = encodeJson({ protocol: PROTOCOL_VERSION });
    for (const subject of subjects) {
      for (const token of [undefined, 'not-the-operator-token', HARNESS_OPERATOR_TOKEN]) {
        // Checked before the body is decoded: the bare body is refused for the token, or (with it) answered or refused for itself.
        const reply = await fleet.bus.request(subject, body, { timeoutMs: 30_000, ...(token === undefined ? {} : { headers: { [Headers.Authorization]: `Bearer ${token}` } }) });
        const text = new TextDecoder().decode(reply.data);
        const code = text.startsWith('{"error"') ? decodeErrorReply(reply.data).error.code : 'answered';
        if (token === HARNESS_OPERATOR_TOKEN) expect({ subject, code }).not.toEqual({ subject, code: 'FLEET_AUTH_004' });
        else expect({ subject, code }).toEqual({ subject, code: 'FLEET_AUTH_004' });
      }
    }

    const url = (svc: (typeof SERVICE_NAMES)[number], path: string) => `http://127.0.0.1:${fleet.stack.get(svc).httpPort}${path}`;
    const routes: [string, string, unknown?][] = [
      ['GET', url('change-log', '/critical')],
      ['GET', url('change-log', '/critical/01900000-0000-7000-8000-000000000000')],
      ['POST', url('change-log', '/critical'), {}],
      ['GET', url('conflict-resolver', '/conflicts')],
      ['GET', url('conflict-resolver', '/conflicts/1')],
      ['POST', url('conflict-resolver', '/conflicts/1/resolve'), { deleted: true }],
      ['PUT', url('conflict-resolver', '/records/fleet/notes/guard'), { fields: { a: 1 } }],
      ['DELETE', url('conflict-resolver', '/records/fleet/notes/guard')],
      ['POST', url('conflict-resolver', '/records/fleet/notes/guard/increment'), { field: 'n', by: 1 }],
      ['GET', url('delta-calculator', `/agents/${fleet.agents[0]!.id}/groups`)],
      ['PUT', url('delta-calculator', `/agents/${fleet.agents[1]!.id}/groups`), { groups: ['intruders'] }],
    ];
    for (const [method, u, b] of routes) {
      for (const token of [undefined, 'not-the-operator-token']) {
        const res = await fetch(u, {
          method,
          headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(b === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(b === undefined ? {} : { body: JSON.stringify(b) }),
        });
        const answer = (await res.json()) as { error?: { code: string } };
        expect({ method, u, status: res.status, code: answer.error?.code }).toEqual({ method, u, status: 401, code: 'FLEET_AUTH_004' });
      }
    }
    // Nothing refused was done: no record written, no group given.
    expect(await fleet.sql(`select 1 from change_log where scope = 'fleet' and key = 'guard'`)).toEqual([]);
    expect(await fleet.sql(`select 1 from agent_groups where group_name = 'intruders'`)).toEqual([]);

    // Probes and scrapers need no token.
    for (const svc of SERVICE_NAMES) {
      for (const probe of ['/health/live', '/health/ready']) expect({ svc, probe, status: (await fetch(url(svc, probe))).status }).toEqual({ svc, probe, status: 200 });
      const metrics = await fetch(`http://127.0.0.1:${fleet.stack.get(svc).metricsPort}/metrics`);
      expect({ svc, status: metrics.status }).toEqual({ svc, status: 200 });
    }
    // And the agents, which send no operator token, still push, pull and converge.
    fleet.agents[0]!.put('notes', 'after-the-guard', { text: 'still syncing' });
    await fleet.waitConverged(60_000);
  });

  it('status: every service answering and ready, the projections caught up with the log (exit 0)', async () => {
    fleet.agents[1]!.put('notes', 'hello', { text: 'from the second host' });
    await fleet.waitConverged(60_000);
    const head = Number((await fleet.sql<{ head: string }>('select max(seq) as head from change_log'))[0]?.head);
    expect(head).toBeGreaterThan(0);
    const r = await eventually(async () => {
      const x = await run(['status']);
      return x.code === 0 ? x : undefined;
    }, 30_000, 'a healthy status');
    expect(r.err).toBe('');
    for (const svc of ['change-log', 'version-vector', 'conflict-resolver', 'delta-calculator']) expect(r.out).toMatch(new RegExp(`^${svc} +ready `, 'm'));
    expect(r.out).toContain(`log head seq ${head}`);
    expect(r.out).toContain('2 agent(s)');
    expect(r.out).toMatch(new RegExp(`records: cursor ${head} of head ${head}, lag 0 change\\(s\\)`));
    expect(r.out).toMatch(new RegExp(`record_states: cursor ${head} of head ${head}, lag 0 change\\(s\\)`));
    expect(r.out).toContain('0 conflict(s) waiting for an operator');
    expect(r.out).toContain('dead letters: 0');
    expect(r.out.split('\n').pop()).toBe('HEALTHY');
    const j = await run(['status', '--json']);
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.out) as { verdict: string; services: { service: string; ready: { status: string }; facts: Record<string, unknown> }[] };
    expect(doc.verdict).toBe('healthy');
    expect(doc.services.map((x) => [x.service, x.ready.status])).toEqual([
      ['change-log', 'ready'],
      ['version-vector', 'ready'],
      ['conflict-resolver', 'ready'],
      ['delta-calculator', 'ready'],
    ]);
    expect(doc.services[0]?.facts).toMatchObject({ headSeq: head, agents: 2, openCriticalOperations: 0, deadLetters: { messages: 0 } });
    expect((await run(['status', '--max-lag-age', 'soon'])).code).toBe(64);
  });

  it('agents: lists the agents the log knows, sorted, with their groups; shows one; an unknown one is FLEET_OPS_001', async () => {
    const [a, b] = fleet.agents as [(typeof fleet.agents)[0], (typeof fleet.agents)[0]];
    const rows = await fleet.sql<{ origin: string; last_origin_seq: string; changes_count: string }>(`select origin, last_origin_seq, changes_count from origin_progress where origin <> 'server' order by origin`);
    expect(rows.map((x) => x.origin)).toEqual([a.id, b.id]);
    let r = await run(['agents']);
    expect(r).toMatchObject({ code: 0, err: '' });
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^AGENT +LAST ORIGIN SEQ +CHANGES +LAST SEQ +LAST APPENDED +LAST PULL +BEHIND +OUTBOX +OLDEST UNSENT +FAILED PUSHES +SCORE +GROUPS$/);
    // Both agents pull (on nudges and on their schedule): delta-calculator recorded their last pull, and they are healthy.
    expect(lines[1]).toMatch(new RegExp(`^${a.id} +${rows[0]!.last_origin_seq} +${rows[0]!.changes_count} +\\d+ +\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +\\d+ +0 +- +0 +100 healthy +eu,web$`));
    expect(lines[2]).toMatch(new RegExp(`^${b.id} +${rows[1]!.last_origin_seq} +${rows[1]!.changes_count} +\\d+ +\\S+ +\\S+Z +\\d+ +0 +- +0 +100 healthy +-$`));
    r = await run(['agents', '--limit', '1']);
    expect(r.out.split('\n')).toHaveLength(3);
    expect(r.out).toContain(`more: fleetctl agents --after ${a.id} --limit 1`);
    r = await run(['agents', '--after', a.id, '--json']);
    const page = JSON.parse(r.out) as { agents: { agentId: string; groups: string[] }[]; hasMore: boolean };
    expect(page).toMatchObject({ agents: [{ agentId: b.id, groups: [] }], hasMore: false });

    r = await run(['agents', 'show', a.id, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ agentId: a.id, log: { agentId: a.id, lastOriginSeq: Number(rows[0]!.last_origin_seq) }, groups: ['eu', 'web'] });
    r = await run(['agents', 'show', b.id]);
    expect(r.out).toContain(`last origin seq: ${rows[1]!.last_origin_seq}`);
    r = await run(['agents', 'show', 'no-such-host']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^fleetctl: FLEET_OPS_001 .*no agent "no-such-host": the change log holds none of its changes and it has no group membership, and it never pulled$/);
    expect((await run(['agents', 'show', 'not a valid id'])).err).toContain('FLEET_DECODE_002');
  });

  it('verify: the projections equal the log (exit 0); rows changed by hand are reported (exit 1)', async () => {
    await fleet.waitConverged(60_000);
    // The projections catch up within a second or two of the log (sweep, projector); then nothing differs.
    let r = await run(['verify']);
    for (let i = 0; i < 15 && r.code !== 0; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      r = await run(['verify']);
    }
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    expect(r.out).toMatch(/CONSISTENT: /);
    expect(r.out).toMatch(/^origins \(change-log\): 3 origin\(s\) against \d+ logged change\(s\), cursor \d+ of head \d+: OK$/m);
    expect(r.out).toMatch(/^records \(version-vector\): [1-9]\d* record\(s\) against [1-9]\d* logged change\(s\).*: OK$/m);
    expect(r.out).toMatch(/^record_states \(delta-calculator\): [1-9]\d* record\(s\) against [1-9]\d* logged change\(s\).*: OK$/m);
    expect(r.out).toMatch(/CONSISTENT/);

    // Break each projection by hand, the way a bug or a bad restore would; verify must say where.
    const a = fleet.agents[0]!;
    const [rec] = await fleet.sql<{ scope: string; collection: string; key: string; hash: string }>(`select scope, collection, key, hash from records where scope = $1 order by key limit 1`, [`host.${a.id}`]);
    const [state] = await fleet.sql<Record<string, unknown>>(`select * from record_states where scope = $1 and collection = $2 and key = $3`, [rec!.scope, rec!.collection, rec!.key]);
    await fleet.sql(`update origin_progress set changes_count = changes_count + 5 where origin = $1`, [a.id]);
    await fleet.sql(`update records set hash = $4 where scope = $1 and collection = $2 and key = $3`, [rec!.scope, rec!.collection, rec!.key, '0'.repeat(64)]);
    await fleet.sql(`delete from record_states where scope = $1 and collection = $2 and key = $3`, [rec!.scope, rec!.collection, rec!.key]);
    try {
      r = await run(['verify']);
      expect(r.code).toBe(1);
      const ref = `${rec!.scope}/${rec!.collection}/${rec!.key}`;
      expect(r.out).toMatch(new RegExp(`^  origin ${a.id}: changes_count \\d+, the log says \\d+$`, 'm'));
      expect(r.out).toContain(`  ${ref}: hash column ${'0'.repeat(64)} does not match its own state`);
      expect(r.out).toMatch(new RegExp(`^  ${ref}: missing: the log has changes of it at or below the cursor`, 'm'));
      expect(r.out).toMatch(/INCONSISTENT: 3 difference\(s\)$/);
      const j = JSON.parse((await run(['verify', '--json'])).out) as { ok: boolean; differences: number };
      expect(j).toMatchObject({ ok: false, differences: 3 });
    } finally {
      await fleet.sql(`update origin_progress set changes_count = changes_count - 5 where origin = $1`, [a.id]);
      await fleet.sql(`update records set hash = $4 where scope = $1 and collection = $2 and key = $3`, [rec!.scope, rec!.collection, rec!.key, rec!.hash]);
      const cols = Object.keys(state!);
      await fleet.sql(`insert into record_states (${cols.join(', ')}) values (${cols.map((_, i) => `$${i + 1}`).join(', ')})`, cols.map((c) => state![c]));
    }
    expect((await run(['verify'])).code).toBe(0);
  });

  it('replay: a push dead-lettered while the log was locked is listed, refused without the token, replayed and then appended', async () => {
    const a = fleet.agents[0]!;
    const before = Number((await fleet.sql<{ n: string }>(`select last_origin_seq as n from origin_progress where origin = $1`, [a.id]))[0]?.n);
    // The cause: the change log cannot append (the test holds its append lock) for every delivery.
    const lock = new Client({ connectionString: fleet.db.url });
    await lock.connect();
    let change!: NonNullable<ReturnType<typeof a.put>>;
    try {
      await lock.query('begin');
      await lock.query(APPEND_LOCK_SQL);
      change = a.put('notes', 'while-locked', { text: 'kept in the dead letters' })!;
      await eventually(async () => (a.acked.has(change.changeId) ? true : undefined), 30_000, 'the push acknowledged by JetStream');
      await eventually(async () => {
        const r = await run(['replay', 'list']);
        return r.out.includes('FLEET_MSG_001') ? r : undefined;
      }, 60_000, 'the push dead-lettered after 3 deliveries');
    } finally {
      await lock.query('rollback').catch(() => undefined);
      await lock.end();
    }
    let r = await run(['replay', 'list']);
    expect(r.code).toBe(0);
    const line = r.out.split('\n').find((l) => l.includes('FLEET_MSG_001'))!;
    const [seq, storedAt, code, subject, reason] = line.split('\t');
    expect(Number(seq)).toBeGreaterThan(0);
    expect(Date.parse(storedAt!)).not.toBeNaN();
    expect([code, subject]).toEqual(['FLEET_MSG_001', fleet.s.push(a.id)]);
    expect(reason).toMatch(/after 3 deliveries/);
    expect(r.out).toMatch(/^1 dead letter\(s\) in all$/m);
    r = await run(['replay', 'show', seq!]);
    const shown = JSON.parse(r.out) as { item: { headers: Record<string, string[]>; originalStream: string; deliveryCount: number; part: number | null }; payload: { agentId: string; changes: { changeId: string }[] } };
    expect(shown.item).toMatchObject({ originalStream: fleet.s.streams.push, deliveryCount: 3, part: null });
    expect(shown.item.headers[Headers.RejectCode]).toEqual(['FLEET_MSG_001']);
    expect(shown.payload).toMatchObject({ agentId: a.id, changes: [{ changeId: change.changeId }] });

    // While it waits there, the fleet is not healthy.
    r = await run(['status']);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`dead letters: 1 (${fleet.s.deadLetter(fleet.s.streams.push)} 1`);
    expect(r.out).toMatch(/UNHEALTHY\n  - 1 dead letter\(s\) \(over 0\): fleetctl replay list/);
    expect((await run(['status', '--max-dead-letters', '1'])).code).toBe(0);

    // The operator token is required, and a refused replay leaves the dead letter where it is.
    r = await run(['replay', seq!], NO_TOKEN);
    expect(r.code).toBe(77);
    expect(r.err).toContain('FLEET_AUTH_004');
    r = await run(['replay', seq!], { FLEET_OPERATOR_TOKEN: 'not-the-operator-token' });
    expect(r.code).toBe(77);
    expect(r.err).toMatch(/^fleetctl: FLEET_AUTH_004 .*dead-letter replay refused: send `Authorization: Bearer <token>` with the value of the service's FLEET_CHANGELOG_OPERATOR_TOKEN/);
    expect((await run(['replay', 'discard', seq!], { FLEET_OPERATOR_TOKEN: 'not-the-operator-token' })).code).toBe(77);
    expect((await run(['replay', 'list'])).out).toContain(`${seq}\t`);
    expect(Number((await fleet.sql<{ n: string }>(`select last_origin_seq as n from origin_progress where origin = $1`, [a.id]))[0]?.n)).toBe(before);

    r = await run(['replay', seq!], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(new RegExp(`^${seq}\treplayed to ${fleet.s.push(a.id).replace(/\./g, '\\.')} \\(${fleet.s.streams.push} seq \\d+\\); removed from the dead letters$`));
    // ... and appended: the log has the change, the projections and the other agent follow.
    await eventually(async () => ((await fleet.sql(`select 1 from change_log where change_id = $1`, [change.changeId])).length === 1 ? true : undefined), 30_000, 'the replayed change appended');
    r = await run(['agents', 'show', a.id, '--json']);
    expect((JSON.parse(r.out) as { log: { lastOriginSeq: number } }).log.lastOriginSeq).toBe(change.originSeq);
    await fleet.waitConverged(60_000);
    expect((await run(['replay', 'list'])).out).toBe('no dead letters\n0 dead letter(s) in all');
    // Replayed once: it is gone, a second replay says so.
    r = await run(['replay', seq!], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^${seq}\tFAILED FLEET_OPS_002 `));
    r = await run(['replay', 'show', seq!]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^fleetctl: FLEET_OPS_002 /);
  });

  it('replay: a forged push comes back with its history; a change a projection refused is not replayable; both are discarded', async () => {
    const [a, b] = fleet.agents as [(typeof fleet.agents)[0], (typeof fleet.agents)[0]];
    // A push on a's subject claiming to be b's batch: refused whole (FLEET_AUTH_001) by change-log.
    await fleet.bus.publish(fleet.s.push(a.id), encodeJson({ protocol: PROTOCOL_VERSION, batchId: '0190a0b0-0000-7000-8000-000000000001', agentId: b.id, changes: [{}] }), { headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } });
    // What version-vector writes for a change the log holds but a projection refused (a reused counter).
    await fleet.bus.deadLetter(encodeJson({ changeId: 'x' }), undefined, 'FLEET_CHANGE_002', 'reused counter', { subject: fleet.s.push(a.id), stream: 'change-log', streamSequence: 1, deliveryCount: 1 });
    const items = await eventually(async () => {
      const page = JSON.parse((await run(['replay', 'list', '--json'])).out) as { items: { seq: number; code: string; notReplayable?: string; headers: Record<string, string[]> }[] };
      return page.items.length === 2 ? page.items : undefined;
    }, 30_000, 'two dead letters');
    const forged = items.find((i) => i.code === 'FLEET_AUTH_001')!;
    const refused = items.find((i) => i.code === 'FLEET_CHANGE_002')!;
    expect(forged.notReplayable).toBeUndefined();
    expect(refused.notReplayable).toMatch(/already holds/);
    expect((await run(['replay', 'list'])).out).toMatch(new RegExp(`^${refused.seq}\t.*\t\\[not replayable: a change the log already holds`, 'm'));

    // Replayed, the forged push is refused again: a new dead letter that says where it came from.
    let r = await run(['replay', String(forged.seq), String(refused.seq)], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(1);
    const [first, second] = r.out.split('\n');
    expect(first).toMatch(new RegExp(`^${forged.seq}\treplayed to `));
    expect(second).toMatch(new RegExp(`^${refused.seq}\tFAILED FLEET_OPS_003 .*dead letter ${refused.seq}: a change the log already holds`));
    const again = await eventually(async () => {
      const page = JSON.parse((await run(['replay', 'list', '--json'])).out) as { items: { seq: number; code: string; headers: Record<string, string[]> }[] };
      return page.items.find((i) => i.code === 'FLEET_AUTH_001');
    }, 30_000, 'the forged push dead-lettered again');
    expect(again.seq).toBeGreaterThan(forged.seq);
    expect(again.headers[Headers.ReplayedFrom]).toEqual([`${fleet.s.streams.deadLetter}:${forged.seq}`]);
    expect(again.headers['traceparent']).toBeDefined();

    // A publisher that used this replay's message id first (ids are the publisher's to choose): JetStream
    // drops the replay as a duplicate, and the dead letter is kept rather than lost.
    await fleet.bus.publish(fleet.s.push(a.id), encodeJson({ protocol: PROTOCOL_VERSION, batchId: '0190a0b0-0000-7000-8000-000000000002', agentId: a.id, changes: [{}] }), {
      msgId: `replay:${fleet.s.streams.deadLetter}:${again.seq}`,
    });
    r = await run(['replay', String(again.seq)], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^${again.seq}\tFAILED FLEET_OPS_003 .*not a replay of it .*the dead letter is kept`));
    expect((await run(['replay', 'list'])).out).toContain(`${again.seq}\t`);

    const left = await eventually(async () => {
      const page = JSON.parse((await run(['replay', 'list', '--json'])).out) as { items: { seq: number }[] };
      return page.items.length === 3 ? page.items.map((i) => String(i.seq)) : undefined; // with the squatter's own dead letter
    }, 30_000, 'three dead letters');
    r = await run(['replay', 'discard', ...left], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN });
    expect(r.code).toBe(0);
    expect(r.out.split('\n').every((l) => l.endsWith('\tdiscarded'))).toBe(true);
    expect((await run(['replay', 'list'])).out).toBe('no dead letters\n0 dead letter(s) in all');
    expect((await run(['replay', 'discard', String(again.seq)], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN })).out).toMatch(/FAILED FLEET_OPS_002/);
    expect((await run(['replay', 'abc'])).code).toBe(64);
    expect((await run(['replay'])).code).toBe(64);
  });

  it('sync health: pulls are recorded; the score drops for an agent that stopped pulling; status --min-health-score exits 1 below it', async () => {
    const [a, b] = fleet.agents as [(typeof fleet.agents)[0], (typeof fleet.agents)[0]];
    let r = await run(['agents', 'show', b.id, '--json']);
    const before = JSON.parse(r.out) as { sync: { lastPullAt: string; pulls: number; health: { score: number } } };
    expect(before.sync.pulls).toBeGreaterThan(0);
    expect(before.sync.health.score).toBe(100);
    expect(Date.now() - Date.parse(before.sync.lastPullAt)).toBeLessThan(120_000);

    // b stops pulling. What delta-calculator held of it is flushed by the next question (agents show);
    // then its last caught-up pull is set back 30 hours, as if it had been gone that long.
    await fleet.takeOffline([b]);
    await run(['agents', 'show', b.id]);
    const moved = await fleet.sql<{ n: string }>(
      `update agent_pulls set caught_up_at = now() - interval '30 hours', pulled_at = now() - interval '30 hours', first_pulled_at = least(first_pulled_at, now() - interval '30 hours') where agent_id = $1 returning 1 as n`,
      [b.id],
    );
    expect(moved).toHaveLength(1);
    r = await run(['agents', 'show', b.id]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^  last caught up: \d{4}-/m);
    expect(r.out).toMatch(/^  sync health: 70 unhealthy\n    - sync lag \d+(\.\d+)?s over the 300s target \(-30\)/m);
    r = await run(['agents']);
    expect(r.out).toMatch(new RegExp(`^${b.id} .* 70 unhealthy +-$`, 'm'));
    expect(r.out).toMatch(new RegExp(`^${a.id} .* 100 healthy +eu,web$`, 'm'));

    // The fleet: its score (the mean) and b among the worst; no threshold given, so still HEALTHY (exit 0).
    r = await run(['status']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^sync health: \d+ unhealthy \(\d+ agent\(s\): \d+ healthy, 0 degraded, 1 unhealthy\)/m);
    expect(r.out).toMatch(new RegExp(`^worst agents:\n  ${b.id}  70 unhealthy  last pull \\d{4}-`, 'm'));
    const health = (JSON.parse((await run(['status', '--json'])).out) as { health: { score: number; byStatus: { unhealthy: number }; worst: { agentId: string }[] } }).health;
    expect(health.byStatus.unhealthy).toBe(1);
    expect(health.worst[0]?.agentId).toBe(b.id);
    expect(health.score).toBeLessThan(100);
    r = await run(['status', '--min-health-score', String(health.score + 1)]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`UNHEALTHY\n  - fleet sync-health score ${health.score} is below ${health.score + 1} (1 unhealthy, 0 degraded of `);
    expect((await run(['status', '--min-health-score', String(health.score)])).code).toBe(0);
    expect((await run(['status', '--min-health-score', '101'])).code).toBe(64);

    // Back online, b pulls again: its caught-up time moves to now (the latest wins), and the score with it.
    await fleet.bringOnline([b]);
    await eventually(async () => {
      const j = JSON.parse((await run(['agents', 'show', b.id, '--json'])).out) as { sync: { health: { score: number } } };
      return j.sync.health.score === 100 ? true : undefined;
    }, 60_000, 'b healthy again');
    expect((await run(['status', '--min-health-score', '100'])).code).toBe(0);
  });

  it("a request whose reply subject is not the requester's inbox is not answered, and counted (no authentication: the services' own check)", async () => {
    const a = fleet.agents[0]!;
    const jsm = await fleet.bus.jsm();
    a.put('notes', 'reply-check', { text: 'something in the log stream' });
    const before = await eventually(async () => {
      const n = (await jsm.streams.info(fleet.s.streams.log)).state.messages;
      return n > 0 ? n : undefined;
    }, 30_000, 'an appended event');
    const dc = fleet.stack.get('delta-calculator');
    const refused0 = await dc.metric('fleet_sync_requests_refused_total');
    fleet.bus.nc.publish(fleet.s.origin(a.id), encodeJson({ protocol: PROTOCOL_VERSION, agentId: a.id }), { reply: `$JS.API.STREAM.PURGE.${fleet.s.streams.log}` });
    fleet.bus.nc.publish(fleet.s.pull(a.id), encodeJson({ protocol: PROTOCOL_VERSION }), { reply: `_INBOX_${fleet.agents[1]!.id}.x.1` }); // another agent's inbox
    await fleet.bus.nc.flush();
    await eventually(async () => ((await dc.metric('fleet_sync_requests_refused_total')) - refused0 >= 2 ? true : undefined), 15_000, 'two refusals counted');
    expect((await jsm.streams.info(fleet.s.streams.log)).state.messages).toBeGreaterThanOrEqual(before);
  });

  it('replay show: a dead letter near max_payload is shown cut to fit, and says so', async () => {
    const a = fleet.agents[0]!;
    const maxPayload = fleet.bus.nc.info?.max_payload ?? 1024 * 1024;
    const body = new Uint8Array(randomBytes(maxPayload - 8 * 1024));
    await fleet.bus.deadLetter(body, undefined, 'FLEET_MSG_001', 'after 3 deliveries', { subject: fleet.s.push(a.id), stream: fleet.s.streams.push, streamSequence: 1, deliveryCount: 3 });
    const item = await eventually(async () => {
      const page = JSON.parse((await run(['replay', 'list', '--json'])).out) as { items: { seq: number; bytes: number }[] };
      return page.items.find((i) => i.bytes === body.byteLength);
    }, 30_000, 'the big dead letter');
    const r = await run(['replay', 'show', String(item.seq)]);
    expect(r.code).toBe(0);
    const shown = JSON.parse(r.out) as { item: { seq: number }; rawBase64: string; truncated: { bytes: number; shownBytes: number } };
    expect(shown.item.seq).toBe(item.seq);
    expect(shown.truncated.bytes).toBe(body.byteLength);
    const prefix = Buffer.from(shown.rawBase64, 'base64');
    expect(prefix.byteLength).toBe(shown.truncated.shownBytes);
    expect(prefix.byteLength).toBeGreaterThan(maxPayload / 2);
    expect(prefix.byteLength).toBeLessThan(body.byteLength);
    expect(Buffer.compare(prefix, Buffer.from(body.subarray(0, prefix.byteLength)))).toBe(0);
    expect(r.err).toContain(`body cut to its first ${prefix.byteLength} of ${body.byteLength} bytes`);
    expect((await run(['replay', 'discard', String(item.seq)], { FLEET_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN })).code).toBe(0);
  });

  it('status: a service that does not answer makes the fleet unavailable (exit 69)', async () => {
    const cr = fleet.stack.get('conflict-resolver');
    await cr.kill();
    try {
      const r = await run(['status'], { FLEET_OPERATOR_TIMEOUT: '3s' });
      expect(r.code).toBe(69);
      expect(r.out).toMatch(/^conflict-resolver +DOWN +- +FLEET_INFRA_001 /m);
      expect(r.out).toMatch(/^change-log +ready /m);
      expect(r.out).toMatch(/UNAVAILABLE\n  - conflict-resolver does not answer/);
    } finally {
      await cr.start();
    }
    expect((await run(['status'])).code).toBe(0);
  });
});
