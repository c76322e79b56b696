import type { INestApplication } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { loadConfig } from '@fleet/config';
import { Headers, type Subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { openServerDataSource, readRecordState } from '@fleet/server-store';
import { PrivatePostgres } from '@fleet/server-store/src/testing';
import { visibleFields, type StrategyConfig } from '@fleet/sync-core';
// eslint-disable-next-line @nx/enforce-module-boundaries -- the version-vector service, in-process: it projects what the capture appends
import { createVersionVectorApp } from '../../version-vector/src/bootstrap';
// eslint-disable-next-line @nx/enforce-module-boundaries -- its configuration schema
import { versionVectorConfig } from '../../version-vector/src/config';
import { createConflictResolverApp } from './bootstrap';
import { conflictResolverConfig } from './config';

jest.setTimeout(120_000);

const STRATEGIES: StrategyConfig = { default: 'lww' };
const SLOT = 'fleet_capture_app';

// A cluster of its own: the capture needs wal_level=logical, whatever the shared server is set to.
let pg: PrivatePostgres;
let url: string;
let ds: DataSource;
let s: Subjects;
let bus: Messaging;
let vv: INestApplication;
const resolvers: INestApplication[] = [];

const env = (extra: Record<string, string> = {}) => ({
  DATABASE_URL: url,
  FLEET_NATS_URL: SHARED_NATS,
  FLEET_NAMESPACE: s.ns,
  FLEET_HTTP_PORT: '0',
  FLEET_METRICS_PORT: '0',
  FLEET_LOG_LEVEL: 'error',
  ...extra,
});

const startResolver = async (node: string): Promise<INestApplication> => {
  const app = await createConflictResolverApp(loadConfig(conflictResolverConfig, env({ FLEET_CONFLICTRESOLVER_NODE_ID: node, FLEET_CONFLICTRESOLVER_CAPTURE_SLOT: SLOT, FLEET_CONFLICTRESOLVER_CAPTURE_RETRY: '300ms' })), STRATEGIES);
  resolvers.push(app);
  return app;
};

/** Until a replica streams from the slot: writes committed before the slot exists are not captured (docs/server-writes.md). */
const streaming = () =>
  eventually(async () => ((await ds.query(`select active from pg_replication_slots where slot_name = $1`, [SLOT])) as Array<{ active: boolean }>)[0]?.active === true, 20_000, 'the capture streaming');

const portOf = (app: INestApplication): number => (app.getHttpServer().address() as { port: number }).port;

beforeAll(async () => {
  pg = await PrivatePostgres.start({ wal_level: 'logical', max_replication_slots: 4, max_wal_senders: 8 });
  url = pg.createDatabase('fleet_capture_app');
  ds = await openServerDataSource({ url, poolSize: 4 });
  s = testNamespace('cap');
  bus = await Messaging.connect({ servers: [SHARED_NATS], name: 'capture-test' }, s);
  vv = await createVersionVectorApp(loadConfig(versionVectorConfig, env({ FLEET_VERSIONVECTOR_BATCH_LINGER: '2ms' })), STRATEGIES);
  await startResolver('server-cap-1');
  await streaming();
});

afterAll(async () => {
  for (const app of resolvers) await app.close().catch(() => undefined);
  await vv?.close();
  if (bus !== undefined) {
    await deleteNamespaceStreams(await bus.jsm(), s);
    await bus.drain();
  }
  await ds?.destroy();
  pg?.stop();
});

const fieldsOf = async (scope: string, collection: string, key: string) => {
  const r = await readRecordState(ds, { scope, collection, key });
  return r === undefined ? undefined : visibleFields(r.state);
};

describe('conflict-resolver captures SQL writes to server_records (FLEET_CONFLICTRESOLVER_CAPTURE_SLOT)', () => {
  it('a row written in SQL becomes a server change that version-vector projects, and an update and a delete follow', async () => {
    await ds.query(`insert into server_records values ('group.web', 'packages', 'nginx', '{"version":"1.24","pinned":true}')`);
    await eventually(async () => JSON.stringify(await fieldsOf('group.web', 'packages', 'nginx')) === JSON.stringify({ pinned: true, version: '1.24' }), 20_000, 'the record projected');
    await ds.query(`update server_records set fields = '{"version":"1.25"}' where key = 'nginx'`);
    await eventually(async () => JSON.stringify(await fieldsOf('group.web', 'packages', 'nginx')) === JSON.stringify({ version: '1.25' }), 20_000, 'the update projected');
    await ds.query(`delete from server_records where key = 'nginx'`);
    await eventually(async () => (await fieldsOf('group.web', 'packages', 'nginx')) === null, 20_000, 'the delete projected');
    const origins = (await ds.query(`select distinct origin from change_log where key = 'nginx'`)) as Array<{ origin: string }>;
    expect(origins).toEqual([{ origin: 'server' }]);
  });

  it('a row that cannot be a change is dead-lettered with its reason and the row; its neighbours are captured', async () => {
    await ds.transaction(async (tx) => {
      await tx.query(`insert into server_records values ('fleet', 'users', 'alice', '{"uid":1001}')`);
      await tx.query(`insert into server_records values ('fleet', 'users', 'mallory', $1::jsonb)`, [JSON.stringify({ ['__proto__']: { admin: true } })]);
    });
    await eventually(async () => (await fieldsOf('fleet', 'users', 'alice')) !== undefined, 20_000, 'alice projected');
    const jsm = await bus.jsm();
    const dl = await eventually(
      async () => (await jsm.streams.getMessage(s.streams.deadLetter, { last_by_subj: s.deadLetter(`capture-${SLOT}`) }).catch(() => null)) ?? undefined,
      20_000,
      'the dead letter',
    );
    expect(dl.header.get(Headers.RejectCode)).toBe('FLEET_DECODE_002');
    expect(dl.header.get(Headers.RejectReason)).toMatch(/__proto__/);
    expect(dl.header.get(Headers.OriginalSubject)).toMatch(/^server_records@[0-9A-F]+\/[0-9A-F]+$/);
    expect(dl.json<{ key: string; after: unknown }>()).toMatchObject({ key: 'mallory' });
    expect(await fieldsOf('fleet', 'users', 'mallory')).toBeUndefined();
  });

  it('reports itself ready, with its capture check', async () => {
    const app = resolvers[0] as INestApplication;
    const ready = await fetch(`http://127.0.0.1:${portOf(app)}/health/ready`);
    expect(ready.status).toBe(200);
    expect(JSON.stringify(await ready.json())).toMatch(/capture/);
  });

  it('a second replica stands by on the slot and takes over when the first stops; nothing is captured twice', async () => {
    const second = await startResolver('server-cap-2');
    await new Promise((r) => setTimeout(r, 1000));
    await (resolvers.shift() as INestApplication).close();
    await streaming();
    await ds.query(`insert into server_records values ('fleet', 'failover', 'k', '{"after":"takeover"}')`);
    await eventually(async () => (await fieldsOf('fleet', 'failover', 'k')) !== undefined, 30_000, 'captured by the second replica');
    const ready = await fetch(`http://127.0.0.1:${portOf(second)}/health/ready`);
    expect(ready.status).toBe(200);
    // Every row written in this file became exactly one change per write.
    const counts = (await ds.query(`select key, count(*)::int as n from change_log where origin = 'server' group by key order by key`)) as Array<{ key: string; n: number }>;
    expect(counts).toEqual([
      { key: 'alice', n: 1 },
      { key: 'k', n: 1 },
      { key: 'nginx', n: 3 },
    ]);
  });
});

describe('without wal_level=logical', () => {
  it('the resolver still serves, and its readiness names FLEET_CAPTURE_001 and the fix', async () => {
    const off = await PrivatePostgres.start({ wal_level: 'replica' });
    let app: INestApplication | undefined;
    try {
      const offUrl = off.createDatabase('fleet_capture_off');
      app = await createConflictResolverApp(
        loadConfig(conflictResolverConfig, { ...env({ FLEET_CONFLICTRESOLVER_CAPTURE_SLOT: 'fleet_capture_off', FLEET_CONFLICTRESOLVER_CAPTURE_RETRY: '200ms' }), DATABASE_URL: offUrl, FLEET_NAMESPACE: testNamespace('capoff').ns }),
        STRATEGIES,
      );
      const port = portOf(app);
      const body = await eventually(async () => {
        const r = await fetch(`http://127.0.0.1:${port}/health/ready`);
        return r.status === 503 ? ((await r.json()) as unknown) : undefined;
      }, 20_000, 'readiness 503');
      expect(JSON.stringify(body)).toMatch(/FLEET_CAPTURE_001.*wal_level is replica.*wal_level=logical/);
      expect((await fetch(`http://127.0.0.1:${port}/health/live`)).status).toBe(200);
    } finally {
      await app?.close();
      off.stop();
    }
  });
});
