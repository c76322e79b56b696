/**
 * Edge cases of the snapshot (bulk first pull) found in review, against the real PostgreSQL, the
 * `PullService` as the app wires it, and the agent's request builder and page decoder:
 * - an empty change log (a fresh deployment): the snapshot ends with cursor 0 and `hasMore: true`, so
 *   an agent pulls "from 0" again, which is a snapshot again: it must not loop forever;
 * - a record whose (valid) key needs JSON escaping: the snapshot cursor naming it must be a cursor the
 *   agent's decoder (and the service's request decoder) accepts, else the agent can never get past it.
 * Its own database.
 */
import { gunzipSync } from 'node:zlib';
import type { DataSource } from 'typeorm';
import { encodeJson, Headers, isValidKey } from '@fleet/contracts';
import type { PullCursor } from '@fleet/contracts';
import { buildPullRequest, decodePullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import type { PullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { createTestDatabase, testChange } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { encodeHlc } from '@fleet/sync-core';
import { PullService } from './pull.service';
import { DeltaStore } from './store';

const AGENT = 'edge1';
const SCOPES = ['fleet', `host.${AGENT}`];
const MAX_PAYLOAD = 1024 * 1024;
let db: TestDatabase;
let ds: DataSource;
let store: DeltaStore;
let pulls: PullService;

beforeAll(async () => {
  db = await createTestDatabase('fleet_delta_snap_edges');
  ds = await openServerDataSource({ url: db.url, poolSize: 2 });
  store = new DeltaStore(ds, { default: 'lww' });
  pulls = new PullService(store);
});

afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

/** One page as the agent asks for it (`snapshot: true` exactly from cursor 0) and decodes it. */
async function page(cursor: PullCursor, limit?: number, ownFrom?: number): Promise<PullWirePage> {
  const reply = await pulls.pull(AGENT, encodeJson(buildPullRequest(AGENT, SCOPES, cursor, limit, ownFrom)), MAX_PAYLOAD);
  const raw = reply.headers[Headers.Encoding] === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data;
  return decodePullWirePage(raw);
}

/** The agent's pull loop (pull again at once while `hasMore`), bounded: returns the pages, or throws when it does not end. */
async function pullUntilDone(limit?: number, maxPages = 20, ownFrom?: number): Promise<PullWirePage[]> {
  const pages: PullWirePage[] = [];
  let cursor: PullCursor = 0;
  for (let i = 0; i < maxPages; i++) {
    const p = await page(cursor, limit, ownFrom);
    pages.push(p);
    cursor = p.nextCursor;
    if (!p.hasMore) return pages;
  }
  throw new Error(`the pull loop did not end after ${maxPages} pages: cursors ${pages.map((p) => JSON.stringify(p.nextCursor)).join(' ')}`);
}

describe('snapshot edges', () => {
  it('an empty change log: a fresh agent pulls once or twice and stops, rather than asking for a snapshot from 0 forever', async () => {
    const pages = await pullUntilDone();
    expect(pages.length).toBeLessThanOrEqual(2);
    expect(pages.flatMap((p) => p.records)).toEqual([]);
  });

  it("a projection that has folded nothing yet (its first pass running): a fresh agent's first pull gets the log's changes, not an empty snapshot", async () => {
    const fresh = await createTestDatabase('fleet_delta_snap_busy');
    const fds = await openServerDataSource({ url: fresh.url, poolSize: 2 });
    try {
      // A pass is always running here: the pull must not wait for it, nor take its position 0 for an empty log.
      class Busy extends DeltaStore {
        override async projectUnlessBusy(): Promise<void> {}
      }
      const busy = new PullService(new Busy(fds, { default: 'lww' }));
      const hlc = (n: number) => encodeHlc({ wallMs: 1_767_225_700_000 + n, counter: 0, node: 'server' });
      await new PostgresChangeLog(fds).appendBatch([
        testChange('server', 1, { scope: 'fleet', collection: 'c', key: 'k1', fields: { n: 1 }, hlc: hlc(1), vv: { server: 1 } }),
        testChange('server', 2, { scope: 'fleet', collection: 'c', key: 'k2', fields: { n: 2 }, hlc: hlc(2), vv: { server: 2 } }),
      ]);
      const reply = await busy.pull(AGENT, encodeJson(buildPullRequest(AGENT, SCOPES, 0)), MAX_PAYLOAD);
      const raw = reply.headers[Headers.Encoding] === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data;
      const first = decodePullWirePage(raw);
      expect(first.records.map((r) => r.k).sort()).toEqual(['k1', 'k2']);
      expect(first.nextCursor).toBe(2);
    } finally {
      await fds.destroy();
      await fresh.drop();
    }
  });

  it('a key that needs JSON escaping (control characters): the snapshot cursor after it decodes, and the agent gets past it', async () => {
    const key = '\u0001'.repeat(300);
    expect(isValidKey(key)).toBe(true);
    const log = new PostgresChangeLog(ds);
    const hlc = (n: number) => encodeHlc({ wallMs: 1_767_225_600_000 + n, counter: 0, node: 'server' });
    await log.appendBatch([
      testChange('server', 1, { scope: 'fleet', collection: 'c', key: 'a', fields: { n: 1 }, hlc: hlc(1), vv: { server: 1 } }),
      testChange('server', 2, { scope: 'fleet', collection: 'c', key, fields: { n: 2 }, hlc: hlc(2), vv: { server: 2 } }),
      testChange('server', 3, { scope: 'fleet', collection: 'c', key: 'z', fields: { n: 3 }, hlc: hlc(3), vv: { server: 3 } }),
    ]);
    // One record per page, so a page ends on the escaped key and its cursor names it.
    const pages = await pullUntilDone(1);
    expect(pages.flatMap((p) => p.records.map((r) => r.k)).filter((k) => k === key)).toHaveLength(1);
    expect(new Set(pages.flatMap((p) => p.records.map((r) => r.k)))).toEqual(new Set(['a', key, 'z']));
  });

  it('server-side read-ahead: the pages (records, cursors, hasMore) are those read without it, and an append between pages still arrives', async () => {
    const log = new PostgresChangeLog(ds);
    const hlc = (n: number) => encodeHlc({ wallMs: 1_767_225_900_000 + n, counter: 0, node: 'server' });
    await log.appendBatch(Array.from({ length: 12 }, (_, i) => testChange('server', 200 + i, { scope: 'fleet', collection: 'ahead', key: `a${String(i).padStart(2, '0')}`, fields: { i }, hlc: hlc(i), vv: { server: 200 + i } })));
    const plain = new PullService(store, { snapshotReadAhead: false });
    const pull = async (svc: PullService, cursor: PullCursor, limit: number): Promise<PullWirePage> => {
      const reply = await svc.pull(AGENT, encodeJson(buildPullRequest(AGENT, SCOPES, cursor, limit)), MAX_PAYLOAD);
      const raw = reply.headers[Headers.Encoding] === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data;
      return decodePullWirePage(raw);
    };
    const loop = async (svc: PullService, limit: number, between?: (i: number) => Promise<void>): Promise<PullWirePage[]> => {
      const pages: PullWirePage[] = [];
      let cursor: PullCursor = 0;
      for (let i = 0; i < 100; i++) {
        const p = await pull(svc, cursor, limit);
        pages.push(p);
        cursor = p.nextCursor;
        if (!p.hasMore) return pages;
        await between?.(i);
      }
      throw new Error('did not end');
    };
    for (const limit of [1, 3, 5]) expect(await loop(pulls, limit)).toEqual(await loop(plain, limit));
    // an append while the next page is already read ahead: the log after the snapshot brings it
    const keys = new Set<string>();
    const pages = await loop(pulls, 2, async (i) => {
      if (i === 1) await log.appendBatch([testChange('server', 300, { scope: 'fleet', collection: 'ahead', key: 'a00', fields: { i: 'late' }, hlc: hlc(100), vv: { server: 300 } })]);
    });
    for (const p of pages) for (const r of p.records) keys.add(`${r.k}:${JSON.stringify(r.f?.['i'])}`);
    expect([...keys].some((k) => k.startsWith('a00:') && k.includes('late'))).toBe(true);
  });

  it('a replica of the previous version updating `state` without `wire` (rolling deploy): the stale wire text is cleared, the snapshot sends the new state', async () => {
    await store.project();
    const before = (await ds.query(`select wire from record_states where scope = 'fleet' and collection = 'c' and key = 'a'`)) as { wire: string | null }[];
    expect(before[0]?.wire).toEqual(expect.any(String));
    // what an old projector writes: the state of another record's content, no `wire`
    await ds.query(`update record_states set state = (select state from record_states where scope = 'fleet' and collection = 'c' and key = 'z') where scope = 'fleet' and collection = 'c' and key = 'a'`);
    const after = (await ds.query(`select wire from record_states where scope = 'fleet' and collection = 'c' and key = 'a'`)) as { wire: string | null }[];
    expect(after[0]?.wire).toBeNull();
    const records = (await pullUntilDone()).flatMap((p) => p.records);
    const a = records.find((r) => r.k === 'a');
    expect(a?.f?.['n']?.[0]?.[1]).toBe(3); // z's value, now a's state, converted from `state`
  });
  it("no echo: a snapshot leaves out the agent's host records it made alone from ownFrom on, and sends the rest", async () => {
    const log = new PostgresChangeLog(ds);
    const host = `host.${AGENT}`;
    const hlc = (n: number) => encodeHlc({ wallMs: 1_767_225_700_000 + n, counter: 0, node: AGENT });
    const mine = (seq: number, key: string, fields: Record<string, number>) => testChange(AGENT, seq, { scope: host, collection: 'own', key, fields, hlc: hlc(seq), vv: { [AGENT]: seq } });
    await log.appendBatch([
      mine(5, 'old', { v: 1 }), // an earlier store's write (below ownFrom 50)
      mine(60, 'mine', { v: 1 }),
      mine(61, 'mine', { w: 2 }), // two writes of its own, both from 50 on
      mine(62, 'mixed', { v: 1 }),
      testChange('server', 900, { scope: host, collection: 'own', key: 'mixed', fields: { s: 1 }, hlc: hlc(900), vv: { [AGENT]: 62, server: 900 } }),
      mine(63, 'partly-old', { v: 2 }),
      // deleted by an earlier store, written again from ownFrom on: the delete still removed b (a restored
      // store may hold b from its backup), so the record is sent
      mine(8, 'gap-delete', { a: 1, b: 2 }),
      testChange(AGENT, 9, { scope: host, collection: 'own', key: 'gap-delete', op: 'delete', fields: {}, hlc: hlc(9), vv: { [AGENT]: 9 } }),
      mine(64, 'gap-delete', { a: 3 }),
    ]);
    await log.appendBatch([{ ...mine(7, 'partly-old', { u: 1 }), vv: { [AGENT]: 7 } }]); // a field only the earlier store wrote
    await store.project();
    const keysOf = (pages: PullWirePage[]) => pages.flatMap((p) => p.records).filter((r) => r.s === host && r.c === 'own').map((r) => r.k).sort();
    expect(keysOf(await pullUntilDone(undefined, 20, 50))).toEqual(['gap-delete', 'mixed', 'old', 'partly-old']);
    expect(keysOf(await pullUntilDone(undefined, 20, 1))).toEqual(['mixed']); // a store that made every change of its id: only what the server wrote too
    expect(keysOf(await pullUntilDone())).toEqual(['gap-delete', 'mine', 'mixed', 'old', 'partly-old']); // without ownFrom: all
    // small pages: the keyset cursor steps over the left-out rows and still reaches the rest
    expect(keysOf(await pullUntilDone(1, 40, 50))).toEqual(['gap-delete', 'mixed', 'old', 'partly-old']);
    // a row updated by a replica of the previous version (no sole_* columns): sent, whatever it holds
    await ds.query(`update record_states set rev = rev + 1000000 where scope = $1 and key = 'mine'`, [host]);
    expect(keysOf(await pullUntilDone(undefined, 20, 50))).toEqual(['gap-delete', 'mine', 'mixed', 'old', 'partly-old']);
  });
});
