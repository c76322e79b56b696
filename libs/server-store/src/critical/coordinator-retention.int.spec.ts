/**
 * Retention of the coordinator's decision log (`CriticalCoordinator.prune`) and what `status` answers
 * about a transaction the log no longer holds, on a private PostgreSQL with max_prepared_transactions.
 * Agents are an in-memory fake (`AgentParticipants`): this is about the log, not the wire.
 */
import type { DataSource } from 'typeorm';
import type { CriticalOperation } from '@fleet/contracts';
import { testCertificate } from '@fleet/contracts/src/testing/critical';
import type { Decision, Vote } from '@fleet/sync-core';
import { openServerDataSource } from '../data-source';
import { PrivatePostgres, testUuidV7 } from '../testing';
import { CriticalCoordinator } from './coordinator';
import type { AgentParticipants, CriticalEvent } from './coordinator';
import { PostgresParticipant, preparedGid } from './postgres-participant';

jest.setTimeout(60_000);

const DAY = 86_400_000;
const RETENTION = 30 * DAY;

/** Hosts that vote as told and acknowledge decisions unless offline. */
class FakeAgents implements AgentParticipants {
  readonly offline = new Set<string>();
  readonly refuse = new Set<string>();
  /** While set, every vote waits for it. */
  hold: Promise<void> | undefined;
  async prepare(agentId: string): Promise<Vote> {
    if (this.hold !== undefined) await this.hold;
    if (this.offline.has(agentId)) return Promise.reject(new Error('no responders'));
    return Promise.resolve(this.refuse.has(agentId) ? { vote: 'no', reason: 'refused for the test' } : { vote: 'yes' });
  }
  decide(agentId: string, _txid: string, decision: Decision): Promise<'committed' | 'aborted'> {
    if (this.offline.has(agentId)) return Promise.reject(new Error('offline'));
    return Promise.resolve(decision === 'commit' ? 'committed' : 'aborted');
  }
}

let pg: PrivatePostgres;
let ds: DataSource;
const agents = new FakeAgents();
const events: CriticalEvent[] = [];
let coordinator: CriticalCoordinator;

beforeAll(async () => {
  pg = await PrivatePostgres.start({ max_prepared_transactions: 8 });
  ds = await openServerDataSource({ url: pg.createDatabase('fleet_tpc_retention'), poolSize: 6 });
  coordinator = new CriticalCoordinator(ds, new PostgresParticipant(ds, { lockTimeoutMs: 300 }), agents, { voteTimeoutMs: 2000, graceMs: 0, onEvent: (e) => events.push(e) });
});

afterAll(async () => {
  await ds?.destroy();
  pg?.stop();
});

beforeEach(async () => {
  agents.offline.clear();
  agents.refuse.clear();
  events.length = 0;
});

const cert = (name: string): CriticalOperation => testCertificate(name);
/** Moves a transaction's times back by `days` (as if it had finished that long ago). */
const age = async (txid: string, days: number) =>
  ds.query(
    `update critical_transactions set created_at = created_at - make_interval(days => $2), deadline = deadline - make_interval(days => $2),
       decided_at = decided_at - make_interval(days => $2), completed_at = completed_at - make_interval(days => $2) where txid = $1`,
    [txid, days],
  );
const inLog = async (txid: string) => ((await ds.query('select 1 from critical_transactions where txid = $1', [txid])) as unknown[]).length === 1;
const applied = async (txid: string) => ((await ds.query('select 1 from critical_applied where txid = $1', [txid])) as unknown[]).length === 1;
const held = async (agent: string, name: string) =>
  ((await ds.query('select txid from critical_state where agent_id = $1 and name = $2', [agent, name])) as { txid: string }[]).map((r) => r.txid);
const mark = async () => ((await ds.query('select max_txid, pruned::int as pruned from critical_pruned')) as { max_txid: string; pruned: number }[])[0];
const codeOf = async (p: Promise<unknown>) => p.then(
  (v) => `answered ${String(v)}`,
  (e: { code?: string }) => e.code,
);

describe('critical operations: pruning the decision log', () => {
  it('prunes finished, acknowledged transactions older than the retention; keeps recent, unacknowledged, inconsistent and undecided ones, and what hosts hold', async () => {
    const committed = await coordinator.begin(cert('old-commit'), ['h1', 'h2']);
    expect(committed.state).toBe('committed');
    agents.refuse.add('h2');
    const aborted = await coordinator.begin(cert('old-abort'), ['h1', 'h2']); // h2 voted no: it need not acknowledge
    expect(aborted.state).toBe('aborted');
    expect(aborted.acked).not.toContain('h2');
    agents.refuse.clear();
    const recent = await coordinator.begin(cert('recent'), ['h1']);
    expect(recent.state).toBe('committed');
    const unacked = await coordinator.begin(cert('unacked'), ['h1', 'h4']);
    agents.offline.clear();
    // h4 voted yes and then went away before phase 2: decided commit, not acknowledged.
    agents.offline.add('h4');
    await ds.query(`update critical_transactions set state = 'committing', acked = array_remove(acked, 'h4') where txid = $1`, [unacked.txid]);
    // A row that says committed while a participant's acknowledgement is missing: pruning checks the arrays, not the state alone.
    const inconsistent = await coordinator.begin(cert('inconsistent'), ['h1']);
    await ds.query(`update critical_transactions set acked = array_remove(acked, 'h1') where txid = $1`, [inconsistent.txid]);
    const undecided = testUuidV7();
    await ds.query(`insert into critical_transactions (txid, kind, name, participants, state, deadline) values ($1, 'certificate', 'undecided', $2, 'preparing', now() + interval '1 hour')`, [
      undecided,
      ['server', 'h1'],
    ]);
    for (const t of [committed.txid, aborted.txid, unacked.txid, inconsistent.txid, undecided]) await age(t, 40);
    expect(await applied(committed.txid)).toBe(true);

    expect(await coordinator.prune(RETENTION)).toEqual({ committed: 1, aborted: 1 });
    expect(await inLog(committed.txid)).toBe(false);
    expect(await inLog(aborted.txid)).toBe(false);
    expect(await applied(committed.txid)).toBe(false); // the server participant's record goes with it
    for (const t of [recent.txid, unacked.txid, inconsistent.txid, undecided]) expect(await inLog(t)).toBe(true);
    // What the hosts hold stays.
    expect(await held('h1', 'old-commit')).toEqual([committed.txid]);
    expect(await held('h2', 'old-commit')).toEqual([committed.txid]);
    expect(await mark()).toEqual({ max_txid: [committed.txid, aborted.txid].sort().at(-1), pruned: 2 });
    expect(events).toContainEqual({ type: 'pruned', committed: 1, aborted: 1 });
    // Nothing more is due: a second pass deletes nothing.
    expect(await coordinator.prune(RETENTION)).toEqual({ committed: 0, aborted: 0 });

    // Once h4 acknowledges (recovery's phase 2), the old transaction is finished, and the next prune takes it.
    agents.offline.clear();
    await coordinator.recover();
    expect((await coordinator.show(unacked.txid)).state).toBe('committed');
    await age(unacked.txid, 40);
    expect(await coordinator.prune(RETENTION)).toEqual({ committed: 1, aborted: 0 });
    expect(await inLog(unacked.txid)).toBe(false);
    expect(await inLog(recent.txid)).toBe(true);
    expect(await coordinator.show(recent.txid)).toMatchObject({ state: 'committed' });
  });

  it('prunes in batches of at most `limit`; replicas pruning at once take different rows', async () => {
    const txids: string[] = [];
    for (let i = 0; i < 12; i++) txids.push((await coordinator.begin(cert(`batch-${i}`), ['h1'])).txid);
    for (const t of txids) await age(t, 40);
    const before = (await mark())?.pruned ?? 0;
    expect(await coordinator.prune(RETENTION, 5)).toEqual({ committed: 5, aborted: 0 });
    const other = new CriticalCoordinator(ds, new PostgresParticipant(ds), agents, { voteTimeoutMs: 2000 });
    const both = await Promise.all([coordinator.prune(RETENTION, 4), other.prune(RETENTION, 4)]);
    expect(both.reduce((n, r) => n + r.committed, 0)).toBe(7);
    for (const t of txids) expect(await inLog(t)).toBe(false);
    expect((await mark())?.pruned).toBe(before + 12);
  });

  it('keeps a finished transaction while PostgreSQL still holds a prepared transaction under its id', async () => {
    const tx = await coordinator.begin(cert('leftover'), ['h1']);
    await age(tx.txid, 40);
    // A prepared transaction under its gid (it cannot outlive the commit in practice: this checks the guard).
    const c = ds.createQueryRunner();
    await c.connect();
    try {
      await c.query('begin');
      await c.query(`insert into critical_applied (txid) values ($1)`, [testUuidV7()]);
      await c.query(`prepare transaction '${preparedGid(tx.txid)}'`);
    } finally {
      await c.release();
    }
    try {
      expect(await coordinator.prune(RETENTION)).toEqual({ committed: 0, aborted: 0 });
      expect(await inLog(tx.txid)).toBe(true);
    } finally {
      await ds.query(`rollback prepared '${preparedGid(tx.txid)}'`);
    }
    expect(await coordinator.prune(RETENTION)).toEqual({ committed: 1, aborted: 0 });
  });

  it('a host asking about a pruned transaction never gets a wrong decision: commit when the server holds it for that host, FLEET_TPC_004 otherwise; presumed abort only above the mark', async () => {
    // Begun first, so its txid is below the mark the pruning below leaves; it stays logged (not aged).
    const kept = await coordinator.begin(cert('status-kept'), ['h5']);
    // T1 then T2 on the same certificate of h5: T1 committed and superseded. T3 aborted.
    const t1 = await coordinator.begin(cert('status-web'), ['h5', 'h6']);
    const t2 = await coordinator.begin(cert('status-web'), ['h5']);
    agents.refuse.add('h6');
    const t3 = await coordinator.begin(cert('status-mail'), ['h5', 'h6']);
    agents.refuse.clear();
    expect([t1.state, t2.state, t3.state]).toEqual(['committed', 'committed', 'aborted']);
    // While logged, the answers are the decisions.
    expect(await coordinator.status('h5', t1.txid)).toBe('commit');
    expect(await coordinator.status('h5', t3.txid)).toBe('abort');
    for (const t of [t1, t2, t3]) await age(t.txid, 40);
    expect(await coordinator.prune(RETENTION)).toEqual({ committed: 2, aborted: 1 });

    // h6 still holds T1 (nothing superseded it there): commit, the right answer.
    expect(await coordinator.status('h6', t1.txid)).toBe('commit');
    expect(await coordinator.status('h5', t2.txid)).toBe('commit');
    // h5's entry was replaced by T2: T1's decision cannot be told from what is left. Presumed abort
    // would be wrong (T1 committed): the answer is an error, and the host stays in doubt.
    expect(await codeOf(coordinator.status('h5', t1.txid))).toBe('FLEET_TPC_004');
    // Aborted: nothing held, the same error (the coordinator cannot tell it from a superseded commit).
    expect(await codeOf(coordinator.status('h5', t3.txid))).toBe('FLEET_TPC_004');
    // Another host asking about a pruned txid learns nothing either.
    expect(await codeOf(coordinator.status('h9', t1.txid))).toBe('FLEET_TPC_004');
    // A txid never logged and above the mark never reached a commit point: presumed abort, as before.
    expect(await coordinator.status('h5', testUuidV7(Date.now() + 60_000))).toBe('abort');
    // One at or below the mark may be a pruned commit: no presumption.
    expect(await codeOf(coordinator.status('h5', testUuidV7(Date.now() - 3_600_000)))).toBe('FLEET_TPC_004');
    // A transaction still logged is answered from the log, though its txid is below the mark.
    expect(kept.txid < t3.txid).toBe(true);
    expect(await coordinator.status('h5', kept.txid)).toBe('commit');
    expect(await codeOf(coordinator.show(t1.txid))).toBe('FLEET_TPC_001');
  });
});

describe('critical operations: recovery on another replica', () => {
  it('a replica whose clock runs a minute ahead does not presume abort of a transaction still collecting votes (its times are PostgreSQL\'s)', async () => {
    let release: () => void = () => undefined;
    agents.hold = new Promise<void>((r) => (release = r));
    const begun = coordinator.begin(cert('skewed-clock'), ['h-skew'], 5000);
    const state = async () => ((await ds.query(`select state from critical_transactions where name = 'skewed-clock'`)) as { state: string }[])[0]?.state;
    for (let i = 0; i < 100 && (await state()) === undefined; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await state()).toBe('preparing');
    const ahead = new CriticalCoordinator(ds, new PostgresParticipant(ds, { lockTimeoutMs: 300 }), agents, { voteTimeoutMs: 2000, now: () => Date.now() + 60_000 });
    await ahead.recover(); // (other transactions of this file may be touched)
    expect(await state()).toBe('preparing');
    release();
    agents.hold = undefined;
    const tx = await begun;
    expect(tx.state).toMatch(/^commit/);
  });
});
