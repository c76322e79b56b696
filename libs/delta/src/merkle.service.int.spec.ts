/**
 * What the server half of Merkle verification counts, against the real PostgreSQL: an exchange ends in
 * one of three places (equal roots; the server's `listing`; the agent's `entries`, answered with the
 * `result`, the usual end at the default depth), and each reports its differing buckets once, to the
 * consistency-violation metric (`onDifferences`) and to the per-agent pull facts (`verified`). And
 * the tree is kept and updated from the rows changed since, not rebuilt per request.
 * Its own database.
 */
import type { DataSource } from 'typeorm';
import { encodeJson, PROTOCOL_VERSION } from '@fleet/contracts';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { createTestDatabase } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { MerkleTree, startVerify, stepVerify } from '@fleet/sync-core';
import type { MerkleVerifyRequest, MerkleVerifyResponse } from '@fleet/sync-core';
import { MerkleService } from './merkle.service';
import { PullService } from './pull.service';
import { DeltaStore } from './store';
import { appendInBatches, ServerChanges } from './testing/server-changes';

const AGENT = 'mv1';
let db: TestDatabase;
let ds: DataSource;
let store: DeltaStore;
let log: PostgresChangeLog;
const server = new ServerChanges();
let merkle: MerkleService;
const differences: number[] = [];
const verified: [string, number][] = [];

beforeAll(async () => {
  db = await createTestDatabase('fleet_delta_merkle_counts');
  ds = await openServerDataSource({ url: db.url, poolSize: 2 });
  store = new DeltaStore(ds, { default: 'lww' });
  log = new PostgresChangeLog(ds);
  merkle = new MerkleService(store, new PullService(store), { onDifferences: (n) => differences.push(n), verified: (agentId, n) => verified.push([agentId, n]) });
  await appendInBatches(log, Array.from({ length: 300 }, (_, i) => server.change('m', `k${i}`, { v: i })));
});

afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

/** The agent's side of one exchange, through the service's `answer` as the app's handler calls it; returns the last response. */
async function exchange(local: MerkleTree): Promise<MerkleVerifyResponse['t']> {
  const start = startVerify(local);
  let state = start.state;
  let request: MerkleVerifyRequest = start.request;
  for (let i = 0; i < 20; i++) {
    const bytes = await merkle.answer(AGENT, encodeJson({ protocol: PROTOCOL_VERSION, agentId: AGENT, scope: 'fleet', collection: 'm', msg: request }));
    const reply = JSON.parse(Buffer.from(bytes).toString('utf8')) as { msg: MerkleVerifyResponse };
    const step = stepVerify(state, reply.msg);
    if (step.done) return reply.msg.t;
    state = step.state;
    request = step.request;
  }
  throw new Error('the exchange did not end in 20 round trips');
}

/** A copy of the server's tree, as an agent holding the same records would build it. */
async function copyOfServer(): Promise<MerkleTree> {
  const tree = await merkle.tree('fleet', 'm');
  const entries = Array.from({ length: tree.bucketCount }, (_, b) => tree.bucketEntries(b)).flat();
  return MerkleTree.build(entries);
}

describe('MerkleService counts', () => {
  beforeEach(() => {
    differences.length = 0;
    verified.length = 0;
  });

  it('equal trees: one exchange, no difference counted, the agent reported verified with 0', async () => {
    expect(await exchange(await copyOfServer())).toBe('equal');
    expect(differences).toEqual([]);
    expect(verified).toEqual([[AGENT, 0]]);
  });

  it('a corrupted, a missing and an extra record: their buckets are counted once, at the end of the exchange', async () => {
    const local = await copyOfServer();
    local.upsert('k10', 'f'.repeat(64));
    local.remove('k20');
    local.upsert('ghost', 'e'.repeat(64));
    const buckets = new Set(['k10', 'k20', 'ghost'].map((k) => local.bucketOf(k))).size;
    const last = await exchange(local);
    expect(['result', 'listing']).toContain(last);
    expect(differences).toEqual([buckets]);
    expect(verified).toEqual([[AGENT, buckets]]);
  });
});

describe('MerkleService tree', () => {
  it('is updated in place from the rows changed since it was read (an edit, a delete, a new record), not rebuilt, and equals a tree built afresh', async () => {
    const before = await merkle.tree('fleet', 'm');
    const rootBefore = before.root;
    await appendInBatches(log, [
      server.change('m', 'k5', { v: 'edited' }, { vv: { server: server.seq + 1 } }),
      server.change('m', 'k6', {}, { op: 'delete', vv: { server: server.seq + 1 } }),
      server.change('m', 'new', { v: 'new' }),
    ]);
    const after = await merkle.tree('fleet', 'm');
    expect(after).toBe(before);
    expect(after.root).not.toBe(rootBefore);
    expect(after.has('k6')).toBe(false);
    expect(after.has('new')).toBe(true);
    const fresh = await new MerkleService(store, new PullService(store)).tree('fleet', 'm');
    expect(fresh).not.toBe(after);
    expect(after.root).toBe(fresh.root);
    expect(after.size).toBe(300);
  });
});
