import type { DataSource } from 'typeorm';
import type { CriticalOperation } from '@fleet/contracts';
import { isFleetError } from '@fleet/errors';
import { openServerDataSource } from '../data-source';
import { PrivatePostgres, testUuidV7 } from '../testing';
import { PostgresParticipant, preparedGid } from './postgres-participant';
import { TEST_PEM as PEM, testCertificate } from '@fleet/contracts/src/testing/critical';

jest.setTimeout(60_000);

const cert = (name: string, notAfter = '2031-01-01T00:00:00Z'): CriticalOperation => testCertificate(name, notAfter);

let pg: PrivatePostgres;
let url: string;
let ds: DataSource;
let participant: PostgresParticipant;

beforeAll(async () => {
  pg = await PrivatePostgres.start({ max_prepared_transactions: 8 });
  url = pg.createDatabase('fleet_tpc_participant');
  ds = await openServerDataSource({ url, poolSize: 4 });
  participant = new PostgresParticipant(ds, { lockTimeoutMs: 300 });
});

afterAll(async () => {
  await ds?.destroy();
  pg?.stop();
});

const stateOf = async (source: DataSource, agent: string) =>
  (await source.query('select kind, name, value, txid from critical_state where agent_id = $1 order by kind, name', [agent])) as { kind: string; name: string; value: unknown; txid: string }[];

describe('PostgreSQL participant (PREPARE TRANSACTION) on a cluster with max_prepared_transactions = 8', () => {
  it('prepare makes the rows durable but invisible; commit makes them visible; a repeated commit is acknowledged', async () => {
    const txid = testUuidV7();
    expect(await participant.prepare(txid, cert('web'), ['h1', 'h2'])).toEqual({ vote: 'yes' });
    expect(await participant.isPrepared(txid)).toBe(true);
    expect(await participant.prepared()).toContain(txid);
    expect(await stateOf(ds, 'h1')).toEqual([]);
    expect(await participant.commit(txid)).toBe('committed');
    expect(await stateOf(ds, 'h1')).toEqual([{ kind: 'certificate', name: 'web', value: { pem: PEM, notAfter: '2031-01-01T00:00:00Z' }, txid }]);
    expect(await stateOf(ds, 'h2')).toHaveLength(1);
    expect(await participant.commit(txid)).toBe('committed');
    expect(await participant.isPrepared(txid)).toBe(false);
    // A prepare of a transaction already committed here is refused.
    expect(await participant.prepare(txid, cert('web'), ['h1'])).toEqual({ vote: 'no', reason: `transaction ${txid} was already committed here` });
  });

  it('abort rolls the prepared rows back; repeated, or of a transaction never prepared, it is acknowledged', async () => {
    const txid = testUuidV7();
    expect(await participant.prepare(txid, cert('mail'), ['h3'])).toEqual({ vote: 'yes' });
    expect(await participant.abort(txid)).toBe('aborted');
    expect(await participant.abort(txid)).toBe('aborted');
    expect(await participant.abort(testUuidV7())).toBe('aborted');
    expect(await stateOf(ds, 'h3')).toEqual([]);
    expect(await participant.isPrepared(txid)).toBe(false);
  });

  it('a second transaction on rows another holds prepared votes no (lock timeout), and succeeds once the first finished', async () => {
    const first = testUuidV7();
    const second = testUuidV7();
    expect(await participant.prepare(first, cert('vpn'), ['h4', 'h5'])).toEqual({ vote: 'yes' });
    const vote = await participant.prepare(second, cert('vpn', '2032-01-01T00:00:00Z'), ['h5']);
    expect(vote).toEqual({ vote: 'no', reason: 'certificate vpn of one of these hosts is held by another critical transaction in progress' });
    expect(await participant.isPrepared(second)).toBe(false);
    await participant.commit(first);
    expect(await participant.prepare(second, cert('vpn', '2032-01-01T00:00:00Z'), ['h5'])).toEqual({ vote: 'yes' });
    await participant.commit(second);
    expect((await stateOf(ds, 'h5'))[0]).toMatchObject({ txid: second, value: { notAfter: '2032-01-01T00:00:00Z' } });
    expect((await stateOf(ds, 'h4'))[0]).toMatchObject({ txid: first });
  });

  it('a prepared transaction survives a crash of PostgreSQL, and is committed after it', async () => {
    const txid = testUuidV7();
    expect(await participant.prepare(txid, cert('db'), ['h6'])).toEqual({ vote: 'yes' });
    await ds.destroy();
    pg.crashAndRestart();
    ds = await openServerDataSource({ url, poolSize: 4 });
    participant = new PostgresParticipant(ds, { lockTimeoutMs: 300 });
    expect(await participant.prepared()).toContain(txid);
    expect(await stateOf(ds, 'h6')).toEqual([]);
    expect(await participant.commit(txid)).toBe('committed');
    expect(await stateOf(ds, 'h6')).toHaveLength(1);
  });

  it('a commit of a transaction PostgreSQL never prepared is FLEET_TPC_003, not an acknowledgement', async () => {
    const txid = testUuidV7();
    const err = await participant.commit(txid).catch((e: unknown) => e);
    expect(isFleetError(err) && err.code).toBe('FLEET_TPC_003');
  });

  it('refuses a transaction id that is not a UUID (it is spliced into SQL)', () => {
    expect(() => preparedGid("x'; drop table critical_state; --")).toThrow(RangeError);
  });
});

describe('PostgreSQL participant where max_prepared_transactions = 0 (PostgreSQL\'s default)', () => {
  let off: PrivatePostgres;
  let source: DataSource;

  beforeAll(async () => {
    off = await PrivatePostgres.start({ max_prepared_transactions: 0 });
    source = await openServerDataSource({ url: off.createDatabase('fleet_tpc_disabled'), poolSize: 2 });
  });

  afterAll(async () => {
    await source?.destroy();
    off?.stop();
  });

  it('says so: assertEnabled throws FLEET_TPC_002, and a prepare votes no with the reason, leaving nothing', async () => {
    const p = new PostgresParticipant(source);
    expect(await p.maxPrepared()).toBe(0);
    const err = await p.assertEnabled().catch((e: unknown) => e);
    expect(isFleetError(err) && err.code).toBe('FLEET_TPC_002');
    const txid = testUuidV7();
    expect(await p.prepare(txid, cert('web'), ['h1'])).toEqual({ vote: 'no', reason: 'PostgreSQL max_prepared_transactions is 0' });
    expect(await stateOf(source, 'h1')).toEqual([]);
    expect((await source.query('select count(*)::int as n from critical_applied'))[0].n).toBe(0);
  });
});
