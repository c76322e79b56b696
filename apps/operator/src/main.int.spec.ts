/**
 * `fleetctl` against a real deployment: the four services as processes (libs/fleet-harness), a private
 * nats-server, the shared PostgreSQL (`npm run setup` sets its max_prepared_transactions), and two
 * in-process agents. A manual conflict is made, listed, shown and resolved; critical operations are
 * begun (committed, refused without the token, aborted with a host offline) and listed.
 */
import { Fleet, HARNESS_OPERATOR_TOKEN } from '@fleet/fleet-harness';
import { DEMO_STRATEGIES } from '@fleet/fleet-harness/src/scenario';
import { eventually } from '@fleet/fleet-harness/src/util';
import { main } from './main';

jest.setTimeout(180_000);

let fleet: Fleet;
let env: Record<string, string>;

beforeAll(async () => {
  fleet = await Fleet.start({ agents: 2, strategies: DEMO_STRATEGIES, collections: ['notes'] });
  env = { FLEET_OPERATOR_NATS_URL: fleet.natsUrl, FLEET_OPERATOR_NAMESPACE: fleet.s.ns, FLEET_OPERATOR_TIMEOUT: '30s' };
  await fleet.bringOnline();
});

afterAll(async () => {
  await fleet?.close();
});

async function run(args: string[], extra: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
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
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server']);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out).toMatch(new RegExp(`^conflict ${pending!.id} resolved: resolution change [0-9a-f-]{36} logged at seq \\d+$`));
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^fleetctl: FLEET_CONFLICT_002 /);
    r = await run(['conflicts', 'resolve', String(pending!.id), '--take', 'server', '--deleted']);
    expect(r.code).toBe(64);
  });

  it('begins critical operations: committed on every host (exit 0), refused without the token (77), aborted with a host offline (2)', async () => {
    const ids = fleet.agents.map((a) => a.id).join(',');
    const args = ['critical', 'credential', 'ops', '--user', 'ops', '--hash', '$6$salt$hashvalue', '--agents', ids];
    let r = await run(args);
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
});
