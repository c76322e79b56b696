/**
 * bench/pull: a fresh agent pulling N records into a SQLite file, and a Merkle verification of
 * 1,000,000 records with 10 differences. `node -r ./scripts/register.js bench/pull/main.ts [N...]`
 * (default 100000 1000000). Needs the NATS and PostgreSQL of `npm run setup`.
 *
 * How it measures:
 * - Seeding: N server-origin changes to `fleet/bench` are inserted into `change_log` with ONE
 *   `insert ... select generate_series` statement (not through NATS or the change-log service), then
 *   `analyze change_log` (as autovacuum would after such growth); not timed.
 * - Pull: the delta-calculator app runs IN THIS PROCESS (sharing the CPU with the agent: a pessimistic
 *   setup on 2 cores). The agent pipelines one request ahead (asks for page k+1 as soon as page k
 *   arrives, joins page k meanwhile), accepts gzip, decodes the page (contracts' hand-written wire
 *   record checks) and applies it with the REAL agent store: `SqliteLocalStore.applyRemote` (default
 *   settings: WAL, synchronous=FULL; one transaction per page with the cursor; each record joined
 *   into what the store holds, the view computed, the record row with its visible fields and hash
 *   written). Timed: first request to last commit.
 *   bytes/record = reply payload bytes on the wire (after gzip) / records.
 * - Merkle: two sync-core trees of 1,000,000 entries differing in 10 (4 changed, 3 missing on each
 *   side), exchanged with startVerify / answerVerify / stepVerify in process; bytes = the JSON of every
 *   message as the NATS exchange would carry it (the agent envelope included); time = the exchange
 *   only (tree builds are reported separately: the server keeps its tree in memory, incrementally updated).
 */
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { loadConfig } from '@fleet/config';
import { decodePullResponse, encodeJson, fromWireRecord, Headers, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { PullCursor } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { createTestDatabase } from '@fleet/server-store/src/testing/test-database';
import { SqliteLocalStore } from '@fleet/agent-store';
import { MerkleTree, answerVerify, startVerify, stepVerify } from '@fleet/sync-core';
import type { StrategyConfig } from '@fleet/sync-core';
import { createDeltaApp } from '../../apps/delta-calculator/src/bootstrap';
import { deltaConfig } from '../../apps/delta-calculator/src/config';

const NATS = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const config: StrategyConfig = { default: 'lww' };

async function benchPull(n: number): Promise<void> {
  const db = await createTestDatabase('fleet_bench_pull');
  const ns = `bench${Date.now().toString(36)}`;
  const s = subjects(ns);
  const ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-'));
  try {
    await ds.query(
      `insert into change_log (seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol)
       select i, gen_random_uuid(), 'server', i, 'fleet', 'bench', 'pkg-' || i, 'put',
              jsonb_build_object('name', 'package-' || i, 'version', '1.' || (i % 97) || '.' || (i % 13), 'installed', true),
              null, lpad((1767225600000 + i)::text, 15, '0') || '-000000-server', jsonb_build_object('server', i), md5(i::text) || md5(i::text), 1
         from generate_series(1, $1::int) as i`,
      [n],
    );
    // What autovacuum does after a table grows this much; without it the planner, estimating ~1,000 rows
    // past the cursor, sorts a bitmap scan of the whole log tail for every page (quadratic: 4 s a page at 1M).
    await ds.query('analyze change_log');
    const bus = await Messaging.connect({ servers: [NATS], name: 'bench-agent' }, s);
    await bus.provision([{ name: s.streams.log, subjects: [s.appended] }], { deadLetter: false });
    const app = await createDeltaApp(loadConfig(deltaConfig, { FLEET_DELTA_DATABASE_URL: db.url, FLEET_DELTA_NATS_URL: NATS, FLEET_DELTA_NAMESPACE: ns, FLEET_DELTA_HTTP_PORT: '0', FLEET_DELTA_PROJECT_EVERY: '600s', FLEET_DELTA_METRICS_PORT: '0' }), { default: 'lww' });
    const store = SqliteLocalStore.open({ dataDir: dir, agentId: 'bench-agent', strategies: config });
    const ask = (cursor: PullCursor) =>
      bus.request(s.pull('bench-agent'), encodeJson({ protocol: PROTOCOL_VERSION, agentId: 'bench-agent', scopes: ['fleet'], cursor, acceptEncodings: ['gzip'] }), { timeoutMs: 60_000 });
    let wire = 0;
    let records = 0;
    let pages = 0;
    const t0 = performance.now();
    let next = ask(0);
    for (;;) {
      const reply = await next;
      wire += reply.data.byteLength;
      const raw = reply.headers?.get(Headers.Encoding) === 'gzip' ? gunzipSync(reply.data) : reply.data;
      const page = decodePullResponse(raw);
      if (page.hasMore) next = ask(page.nextCursor);
      store.applyRemote(
        page.records.map((w) => ({ ref: { scope: w.s, collection: w.c, key: w.k }, state: fromWireRecord(w) })),
        page.nextCursor,
      );
      records += page.records.length;
      pages++;
      if (!page.hasMore) break;
    }
    const secs = (performance.now() - t0) / 1000;
    store.close();
    const sqlite = new Database(join(dir, 'agent.db'), { readonly: true });
    const count = (sqlite.prepare('select count(*) as c from records').get() as { c: number }).c;
    console.log(`pull ${n.toLocaleString('en')} records: ${secs.toFixed(2)} s, ${Math.round(records / secs).toLocaleString('en')} records/s, ${(wire / records).toFixed(1)} bytes/record on the wire (gzip), ${pages} pages, ${count.toLocaleString('en')} rows in SQLite`);
    sqlite.close();
    await app.close();
    await bus.drain();
  } finally {
    await ds.destroy();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function benchMerkle(n: number, diffs: number): void {
  const hash = (i: number, salt = '') => `${salt}${i.toString(16).padStart(8, '0')}`.padEnd(64, 'a');
  const server: { key: string; recordHash: string }[] = [];
  for (let i = 0; i < n; i++) server.push({ key: `pkg-${i}`, recordHash: hash(i) });
  const agent = server.map((e) => ({ ...e }));
  const changed = Math.ceil(diffs * 0.4);
  for (let d = 0; d < changed; d++) (agent[d * 1000] as { recordHash: string }).recordHash = hash(d, 'x');
  const missingAgent = agent.splice(500_001, Math.floor((diffs - changed) / 2));
  void missingAgent;
  for (let d = 0; d < diffs - changed - Math.floor((diffs - changed) / 2); d++) agent.push({ key: `ghost-${d}`, recordHash: hash(d, 'g') });
  const tb = performance.now();
  const st = MerkleTree.build(server);
  const at = MerkleTree.build(agent);
  const buildMs = performance.now() - tb;
  const t0 = performance.now();
  let bytes = 0;
  let { state, request } = startVerify(at);
  let result;
  let rounds = 0;
  for (;;) {
    bytes += encodeJson({ protocol: 1, agentId: 'bench-agent', scope: 'fleet', collection: 'bench', msg: request }).byteLength;
    const response = answerVerify(st, request);
    bytes += encodeJson({ protocol: 1, msg: response }).byteLength;
    rounds++;
    const step = stepVerify(state, response);
    if (step.done) {
      result = step.result;
      break;
    }
    state = step.state;
    request = step.request;
  }
  const ms = performance.now() - t0;
  const found = result.differing.length + result.missingHere.length + result.missingThere.length;
  console.log(`merkle verify ${n.toLocaleString('en')} records, ${diffs} differences: found ${found}, ${bytes.toLocaleString('en')} bytes in ${rounds} round trips, ${ms.toFixed(1)} ms exchange (trees built in ${buildMs.toFixed(0)} ms for both sides)`);
}

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number).filter((x) => x > 0);
  for (const n of sizes.length > 0 ? sizes : [100_000, 1_000_000]) await benchPull(n);
  benchMerkle(1_000_000, 10);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
