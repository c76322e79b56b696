/**
 * The convergence checker catches what it is there to catch. The demo's verdict and the end-to-end
 * suite trust it: a checker that always said CONVERGED would pass them all. A small real fleet (the
 * services as processes, a private nats-server, two agent stacks) converges, the checker says so;
 * then each kind of fault is planted and the checker must name it: an acknowledged change the log
 * lacks, a change made on an agent and never logged (its outbox not empty), a record an agent holds
 * that the log does not, a record missing from the server's projection.
 */
import { Fleet } from './fleet';
import { DEMO_COLLECTIONS, DEMO_STRATEGIES } from './scenario';
import { describeResult } from './checker';

jest.setTimeout(120_000);

let fleet: Fleet | undefined;

afterAll(async () => {
  await fleet?.close();
});

describe('checkConvergence', () => {
  it('says CONVERGED for a converged fleet, and names each planted fault', async () => {
    fleet = await Fleet.start({ agents: 2, strategies: DEMO_STRATEGIES, collections: DEMO_COLLECTIONS, privateNats: true });
    const f = fleet;
    await f.bringOnline();
    const [a, b] = f.agents;
    if (a === undefined || b === undefined) throw new Error('two agents expected');
    a.put('settings', 'k1', { v: 1 });
    b.put('settings', 'k2', { v: 2 });
    await f.waitConverged(60_000);
    const clean = await f.check();
    expect(describeResult(clean)).toMatch(/^CONVERGED/);
    expect(clean.ok).toBe(true);

    // 1. a PubAck for a change the log does not hold
    const forgedAck = '0190a000-0000-7000-8000-0000000000ff';
    a.acked.add(forgedAck);
    // 2. a change made on an agent that never reached the server (the agent went offline first)
    await a.goOffline();
    const unsent = a.put('settings', 'k3', { v: 3 });
    if (unsent === null) throw new Error('the local write was refused');
    // 3. the server's projection lost a record
    await f.sql(`delete from records where scope = $1 and collection = 'settings' and key = 'k2'`, [`host.${b.id}`]);

    const r = await f.check();
    expect(r.ok).toBe(false);
    expect(describeResult(r)).toMatch(/^DIVERGED/);
    expect(r.ackedMissing).toEqual([`${a.id}: ${forgedAck}`]);
    expect(r.madeMissing).toEqual([`${a.id}: ${unsent.changeId} (#${unsent.originSeq})`]);
    expect(r.outboxNotEmpty).toEqual([`${a.id} (1)`]);
    expect(r.diffs).toEqual(
      expect.arrayContaining([
        { replica: a.id, ref: { scope: `host.${a.id}`, collection: 'settings', key: 'k3' }, why: 'live here, absent or deleted in the log' },
        { replica: 'server records projection', ref: { scope: `host.${b.id}`, collection: 'settings', key: 'k2' }, why: 'missing' },
      ]),
    );
    expect(r.duplicated).toEqual([]);
  });
});
