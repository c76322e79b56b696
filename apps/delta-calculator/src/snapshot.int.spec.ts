/**
 * The snapshot (bulk first pull) against the real delta-calculator app, NATS, PostgreSQL and the agent's
 * SQLite store (`applyRemoteWire`, the agent's pull decoder and request builder):
 * - a fresh agent's snapshot pages, then the log; resuming from EVERY intermediate cursor (with the store as
 *   it was there) ends with the same rows, equal to the server's states;
 * - changes appended while a snapshot is pulled (before and after its position, new keys and updates) are
 *   never skipped;
 * - a compaction past the snapshot's position restarts it and the agent still ends identical;
 * - the SyncManager (prefetching the next page, `Fleet-Next-Cursor`) pulls a snapshot into the store;
 * - under a small max_payload (private nats-server, 64 KiB) incompressible snapshot pages are split under it.
 * Its own database and namespace.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { INestApplication } from '@nestjs/common';
import Database from 'better-sqlite3';
import type { DataSource } from 'typeorm';
import { loadConfig } from '@fleet/config';
import { decodeNextCursorHeader, encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import type { PullCursor } from '@fleet/contracts';
import { SqliteLocalStore } from '@fleet/agent-store';
import { NatsSyncTransport, SyncManager } from '@fleet/agent-sync';
import { buildPullRequest, decodePullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import type { PullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import { DeltaStore } from '@fleet/delta';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, freePort, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { decodeRecordState, recordHash } from '@fleet/sync-core';
import type { Change, Fields } from '@fleet/sync-core';
import { appendInBatches, ServerChanges } from '@fleet/delta/src/testing/server-changes';
import { createDeltaApp } from './bootstrap';
import { deltaConfig } from './config';

const AGENT = 'snap1';
const s = testNamespace('ds');
let db: TestDatabase;
let ds: DataSource;
let app: INestApplication;
let bus: Messaging;
let log: PostgresChangeLog;
let store: DeltaStore;
const dirs: string[] = [];

const server = new ServerChanges();
const serverChange = (collection: string, key: string, fields: Fields, over: Partial<Change> = {}): Change => server.change(collection, key, fields, over);
const append = (changes: readonly Change[]): Promise<void> => appendInBatches(log, changes);

function newStore(agentId = AGENT): SqliteLocalStore {
  const d = mkdtempSync(join(tmpdir(), 'snap-agent-'));
  dirs.push(d);
  return SqliteLocalStore.open({ dataDir: d, agentId, strategies: { default: 'lww' } });
}

/** One page as the agent reads it: request (snapshot from 0), gunzip, decode; checks the next-cursor header. */
async function page(cursor: PullCursor, limit?: number, agentId = AGENT): Promise<PullWirePage> {
  const reply = await bus.request(s.pull(agentId), encodeJson(buildPullRequest(agentId, ['fleet', `host.${agentId}`], cursor, limit)), {
    timeoutMs: 30_000,
    headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) },
  });
  const raw = reply.headers?.get(Headers.Encoding) === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data;
  const p = decodePullWirePage(raw);
  expect(decodeNextCursorHeader(reply.headers?.get(Headers.NextCursor))).toBe(p.hasMore ? p.nextCursor : undefined);
  return p;
}

/** Pulls into `st` from its cursor until hasMore is false; returns the pages. */
async function pullAll(st: SqliteLocalStore, limit?: number, agentId = AGENT, onPage?: (p: PullWirePage) => Promise<void> | void): Promise<PullWirePage[]> {
  const pages: PullWirePage[] = [];
  for (;;) {
    const p = await page(st.syncState().cursor ?? 0, limit, agentId);
    st.applyRemoteWire(p.records, p.nextCursor);
    pages.push(p);
    await onPage?.(p);
    if (!p.hasMore) return pages;
  }
}

/** The store's rows a reader sees (not mseq, which counts this store's own writes). */
function rows(st: SqliteLocalStore): { scope: string; collection: string; key: string; state: string; fields: string | null; hash: string; status: string; conflicted: number; vv: string }[] {
  const d = new Database(st.path, { readonly: true });
  try {
    return d.prepare('SELECT scope, collection, key, state, fields, hash, status, conflicted, vv FROM records ORDER BY scope, collection, key').all() as never;
  } finally {
    d.close();
  }
}

/** Every record state the server holds (after projecting the whole log): key -> [status, visible fields, hash]. */
async function serverView(): Promise<Map<string, string>> {
  await store.project();
  const out = new Map<string, string>();
  for (const r of (await ds.query(`select scope, collection, key, state from record_states where scope = any($1::text[])`, [['fleet', `host.${AGENT}`]])) as { scope: string; collection: string; key: string; state: unknown }[]) {
    const st = decodeRecordState(r.state);
    out.set(`${r.scope}/${r.collection}/${r.key}`, JSON.stringify([st.view.status, st.view.status === 'live' ? st.view.fields : null, recordHash(st)]));
  }
  return out;
}

function agentView(st: SqliteLocalStore): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of rows(st)) out.set(`${r.scope}/${r.collection}/${r.key}`, JSON.stringify([r.status, r.fields === null ? null : JSON.parse(r.fields), r.hash]));
  return out;
}

const sortedJson = (m: Map<string, string>) => JSON.stringify([...m].sort(([a], [b]) => (a < b ? -1 : 1)));

beforeAll(async () => {
  db = await createTestDatabase('fleet_delta_snap');
  ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  log = new PostgresChangeLog(ds);
  store = new DeltaStore(ds, { default: 'lww' });
  bus = await Messaging.connect({ servers: [SHARED_NATS], name: 'delta-snap-test' }, s);
  await bus.provision([{ name: s.streams.log, subjects: [s.appended] }], { deadLetter: false });
  app = await createDeltaApp(loadConfig(deltaConfig, { FLEET_DELTA_DATABASE_URL: db.url, FLEET_DELTA_NATS_URL: SHARED_NATS, FLEET_DELTA_NAMESPACE: s.ns, FLEET_DELTA_HTTP_PORT: '0', FLEET_DELTA_PROJECT_EVERY: '600s' }), { default: 'lww' });
});

afterAll(async () => {
  await app?.close();
  await deleteNamespaceStreams(await bus.jsm(), s);
  await bus?.drain();
  await ds?.destroy();
  await db?.drop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('snapshot', () => {
  it('a fresh agent gets states in key order, then the log; resuming from every intermediate cursor ends with the same rows, equal to the server', async () => {
    const changes: Change[] = [];
    for (let i = 0; i < 2000; i++) changes.push(serverChange('pkgs', `p${String(i).padStart(4, '0')}`, { n: i, name: `package ${i}`, tags: ['a', { z: 1, a: 2 }] }));
    // updates (records with two stamps), deletes (delete vectors), another collection, the agent's own host scope
    for (let i = 0; i < 2000; i += 9) changes.push(serverChange('pkgs', `p${String(i).padStart(4, '0')}`, { n: -i }));
    for (let i = 3; i < 2000; i += 50) changes.push(serverChange('pkgs', `p${String(i).padStart(4, '0')}`, {}, { op: 'delete' }));
    for (let i = 0; i < 300; i++) changes.push(serverChange('users', `u${i}`, { name: `user ${i}` }));
    for (let i = 1; i <= 40; i++) changes.push(testChange(AGENT, i, { scope: `host.${AGENT}`, collection: 'local', key: `l${i % 13}`, fields: { v: i } }));
    await append(changes);
    const want = await serverView();

    const a = newStore();
    const pages = await pullAll(a, 211);
    const snapPages = pages.filter((p) => p.snapshot);
    expect(snapPages.length).toBeGreaterThan(10);
    expect(pages.slice(0, snapPages.length).every((p) => p.snapshot)).toBe(true); // states first, then the log
    expect(typeof snapPages[0]?.nextCursor === 'string' && snapPages[0].nextCursor.startsWith('s.')).toBe(true);
    const order = snapPages.flatMap((p) => p.records.map((r) => [r.s, r.c, r.k].join('\u0000')));
    expect(order).toEqual([...order].sort());
    expect(new Set(order).size).toBe(order.length);
    expect(sortedJson(agentView(a))).toBe(sortedJson(want));
    const final = rows(a);

    // Resume from every intermediate cursor with the store as it was there (replaying the pages up to it).
    for (let i = 0; i < pages.length - 1; i++) {
      const b = newStore();
      for (const p of pages.slice(0, i + 1)) b.applyRemoteWire(p.records, p.nextCursor);
      expect(b.syncState().cursor).toBe(pages[i]?.nextCursor);
      await pullAll(b, 211);
      expect(rows(b)).toEqual(final);
      b.close();
    }
    a.close();
  });

  it('never skips a change appended while a snapshot is pulled (new keys and updates, before and after its position)', async () => {
    const a = newStore();
    let done = false;
    const written: string[] = [];
    let started: () => void = () => undefined;
    const firstPage = new Promise<void>((r) => (started = r));
    const writer = (async () => {
      await firstPage;
      for (let b = 0; b < 30; b++) {
        // new keys all over the key space, and updates of keys the snapshot has passed or not reached
        const batch = Array.from({ length: 40 }, (_, i) => serverChange('pkgs', i % 2 === 0 ? `p${String((b * 67 + i * 31) % 2000).padStart(4, '0')}` : `r${b}-${i}`, { b, i }));
        written.push(...batch.map((c) => c.key));
        await Promise.all([log.appendBatch(batch.slice(0, 20)), log.appendBatch(batch.slice(20))]);
        await new Promise((r) => setTimeout(r, 5));
      }
      done = true;
    })();
    let snapshotPagesDuringWrites = 0;
    await pullAll(a, 97, AGENT, (p) => {
      started();
      if (p.snapshot && !done) snapshotPagesDuringWrites++;
    });
    expect(snapshotPagesDuringWrites).toBeGreaterThan(3);
    for (;;) {
      const finished = done;
      const pages = await pullAll(a, 97);
      if (finished && pages.every((p) => p.records.length === 0)) break;
    }
    await writer;
    expect(written.length).toBe(1200);
    expect(sortedJson(agentView(a))).toBe(sortedJson(await serverView()));
    a.close();
  });

  it('a compaction past the snapshot position restarts it, and the agent still ends identical', async () => {
    const a = newStore();
    const first = await page(0, 150);
    a.applyRemoteWire(first.records, first.nextCursor);
    await append(Array.from({ length: 50 }, (_, i) => serverChange('late', `x${i}`, { i })));
    const head = Number(((await ds.query('select max(seq) as m from change_log')) as { m: string }[])[0]?.m);
    await store.compact(head - 1);
    await pullAll(a, 150);
    expect(sortedJson(agentView(a))).toBe(sortedJson(await serverView()));
    a.close();
  });

  it('splits snapshot pages of incompressible records under a small max_payload (private nats-server, 64 KiB)', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'fleet-nats-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'n.conf'), `port: ${port}\nhost: 127.0.0.1\nmax_payload: 65536\njetstream { store_dir: "${dir}" }\n`);
    const proc = spawn(process.env['NATS_SERVER_BIN'] ?? '/usr/sbin/nats-server', ['-c', join(dir, 'n.conf')], { stdio: 'ignore' });
    try {
      const url = `nats://127.0.0.1:${port}`;
      const small = await eventually(() => Messaging.connect({ servers: [url], name: 'small' }, s).catch(() => undefined), 10_000, 'private nats');
      await small.provision([{ name: s.streams.log, subjects: [s.appended] }], { deadLetter: false });
      const app2 = await createDeltaApp(loadConfig(deltaConfig, { FLEET_DELTA_DATABASE_URL: db.url, FLEET_DELTA_NATS_URL: url, FLEET_DELTA_NAMESPACE: s.ns, FLEET_DELTA_HTTP_PORT: '0', FLEET_DELTA_PROJECT_EVERY: '600s' }), { default: 'lww' });
      try {
        const agentId = 'snapbig';
        await append(Array.from({ length: 40 }, (_, i) => testChange(agentId, i + 1, { scope: `host.${agentId}`, collection: 'blobs', key: `b${i}`, fields: { blob: randomBytes(6000).toString('base64') } })));
        const st = newStore(agentId);
        let maxWire = 0;
        let pages = 0;
        for (;;) {
          const reply = await small.request(s.pull(agentId), encodeJson(buildPullRequest(agentId, [`host.${agentId}`], st.syncState().cursor ?? 0)), { timeoutMs: 30_000 });
          maxWire = Math.max(maxWire, reply.data.byteLength);
          const p = decodePullWirePage(reply.headers?.get(Headers.Encoding) === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data);
          st.applyRemoteWire(p.records, p.nextCursor);
          pages++;
          if (!p.hasMore) break;
        }
        expect(maxWire).toBeLessThanOrEqual(65536);
        expect(pages).toBeGreaterThan(4);
        expect(rows(st).filter((r) => r.collection === 'blobs' && r.status === 'live')).toHaveLength(40);
        st.close();
      } finally {
        await app2.close();
        await small.drain();
      }
    } finally {
      proc.kill('SIGKILL');
    }
  });

  it('the sync manager pulls a snapshot (prefetching the next page) into the SQLite store', async () => {
    const st = newStore(AGENT);
    const m = new SyncManager({
      store: st,
      transport: new NatsSyncTransport({ servers: SHARED_NATS, name: 'snap-manager' }, s.ns),
      namespace: s.ns,
      scopes: ['fleet', `host.${AGENT}`],
      strategy: { default: 'lww' },
      connection: { verifyIntervalMs: Number.POSITIVE_INFINITY },
      pullLimit: 500,
    });
    m.start();
    try {
      await m.nextSync();
      const want = await serverView();
      // a sync may end before the last pages if changes kept landing; pull until the store matches
      for (let i = 0; i < 5 && sortedJson(agentView(st)) !== sortedJson(want); i++) {
        m.syncNow();
        await m.nextSync();
      }
      expect(sortedJson(agentView(st))).toBe(sortedJson(want));
      expect(typeof st.syncState().cursor).toBe('number');
    } finally {
      await m.stop();
      st.close();
    }
  });
});
