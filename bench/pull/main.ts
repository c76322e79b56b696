/**
 * bench/pull: a fresh agent pulling N records into its SQLite store, and a Merkle verification of
 * 1,000,000 records with 10 differences. `node -r ./scripts/register.js bench/pull/main.ts [N...]`
 * (default 100000 1000000; `--no-merkle` skips the Merkle part). Needs the NATS and PostgreSQL of `npm run setup`.
 *
 * How it measures:
 * - Seeding (not timed): N server-origin changes to `fleet/bench` are inserted into `change_log` with ONE
 *   `insert ... select generate_series` statement (not through NATS or the change-log service), then
 *   `analyze change_log` (as autovacuum would after such growth). Then the delta calculator's record-states
 *   projection is brought up to the log's head with the service's own code (`DeltaStore.project`), as its
 *   background projector keeps it in a deployment; its time is printed separately ("projected in").
 * - The delta-calculator runs as its OWN PROCESS (`apps/delta-calculator/src/main.ts` via fleet-harness'
 *   `ServiceProcess`, default settings, strategies all-LWW), as deployed: server and agent do not share one
 *   JavaScript thread, but they share the box's 2 cores with PostgreSQL, NATS and whatever else runs.
 * - The agent is this process: the real agent store (`SqliteLocalStore`, default settings: WAL,
 *   synchronous=FULL) and the same functions the sync manager's `pullPage` uses: `buildPullRequest`
 *   (cursor 0 asks for a snapshot), the pull decoder's worker thread (`PullDecoder`: gunzip,
 *   `decodePullWirePage` with contracts' checks of every record, `prepareWireRows`) from the moment a reply
 *   arrives, `applyRemoteRows` on this thread (records and cursor in one transaction per page), and the
 *   same pipelining: page k+1 is asked for as soon as page k's reply arrives (its `Fleet-Next-Cursor`
 *   header), before page k is decoded and applied; the service reads page k+1 ahead on its side too.
 *   BENCH_MODES=worker,thread,... pulls once per mode (fresh agent store, same seeding): `thread` decodes
 *   on this thread (gunzip on libuv's pool, `decodePullWirePage`, `applyRemoteWire`) as before the worker. It pulls until `hasMore` is false: the snapshot pages,
 *   then the (empty) log after the snapshot's position. Timed: first request to last commit. CPU: this
 *   process (agent), the service process, and every `postgres` and `nats-server` process on the box
 *   (/proc; includes any other work they do meanwhile).
 *   bytes/record = reply payload bytes on the wire (after gzip) / records.
 *   Checked after the run: N live rows in SQLite, and one sampled record read through `store.get`.
 *   Knobs for investigating: BENCH_DEBUG=1 prints each page's wait, decode and apply times; BENCH_LIMIT=n
 *   asks for pages of n records; BENCH_SERVICE_NODE_OPTIONS is passed to the service as NODE_OPTIONS (e.g.
 *   `-r <a preload that starts the inspector's profiler>`).
 * - Figures and where the time goes: docs/delta-calculator.md ("Figures").
 * - Merkle: two sync-core trees of 1,000,000 entries differing in 10 (4 changed, 3 missing on each
 *   side), exchanged with startVerify / answerVerify / stepVerify in process; bytes = the JSON of every
 *   message as the NATS exchange would carry it (the agent envelope included); time = the exchange
 *   only (tree builds are reported separately: the server keeps its tree in memory, incrementally updated).
 */
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import Database from 'better-sqlite3';
import { decodeNextCursorHeader, encodeJson, Headers, MAX_SNAPSHOT_RESPONSE_BYTES, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { PullCursor } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { openServerDataSource } from '@fleet/server-store/src/data-source';
import { createTestDatabase } from '@fleet/server-store/src/testing/test-database';
import { SqliteLocalStore } from '@fleet/agent-store';
import { buildPullRequest, decodePullWirePage } from '@fleet/agent-sync/src/protocol/wire';
import { PullDecoder } from '@fleet/agent-sync/src/pull-decoder';
import { DeltaStore } from '@fleet/delta';
import { ServiceProcess } from '@fleet/fleet-harness';
import { MerkleTree, answerVerify, startVerify, stepVerify } from '@fleet/sync-core';
import type { StrategyConfig } from '@fleet/sync-core';
import { cpuByName, cpuSince, procCpuSecs } from '../support/proc';

const NATS = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const config: StrategyConfig = { default: 'lww' };
const gunzip = promisify(gunzipCb);
async function benchPull(n: number): Promise<void> {
  const db = await createTestDatabase('fleet_bench_pull');
  const ns = `bench${Date.now().toString(36)}`;
  const s = subjects(ns);
  const ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  const dir = mkdtempSync(join(tmpdir(), 'fleet-bench-'));
  let svc: ServiceProcess | undefined;
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
    const tp = performance.now();
    await new DeltaStore(ds, config).project(5000);
    await ds.query('analyze record_states');
    const projectSecs = (performance.now() - tp) / 1000;
    const bus = await Messaging.connect({ servers: [NATS], name: 'bench-agent' }, s);
    await bus.provision([{ name: s.streams.log, subjects: [s.appended] }], { deadLetter: false });
    svc = await ServiceProcess.create({ name: 'delta-calculator', databaseUrl: db.url, natsUrl: NATS, namespace: ns, strategies: { default: 'lww' }, logDir: dir, ...(process.env['BENCH_SERVICE_NODE_OPTIONS'] === undefined ? {} : { extra: { NODE_OPTIONS: process.env['BENCH_SERVICE_NODE_OPTIONS'] } }) });
    await svc.start();
    // BENCH_MODES=worker,thread,...: pulls once per mode into a fresh agent store, against the same seeded
    // server (A/B on one seeding; the box is shared). Default: worker (as SyncManager.pullPage).
    const modes = (process.env['BENCH_MODES'] ?? (process.env['BENCH_IN_THREAD'] === undefined ? 'worker' : 'thread')).split(',');
    for (const [run, mode] of modes.entries()) {
      const agentDir = join(dir, `agent-${run}`);
      const store = SqliteLocalStore.open({ dataDir: agentDir, agentId: 'bench-agent', strategies: config });
      const askRaw = (cursor: PullCursor) =>
        bus.request(s.pull('bench-agent'), encodeJson(buildPullRequest('bench-agent', ['fleet'], cursor, process.env['BENCH_LIMIT'] === undefined ? undefined : Number(process.env['BENCH_LIMIT']))), { timeoutMs: 60_000, headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) } });
      let wire = 0;
      let records = 0;
      let pages = 0;
      const svcPid = svc.pid as number;
      const others0 = cpuByName(['postgres', 'nats-server']);
      const svc0 = procCpuSecs(svcPid);
      const me0 = process.cpuUsage();
      const t0 = performance.now();
      const inThread = mode === 'thread';
      const decoder = new PullDecoder();
      const decoded = new WeakMap<object, ReturnType<PullDecoder['decode']>>();
      const ask = (cursor: PullCursor) => {
        const p = askRaw(cursor);
        if (!inThread) {
          void p.then((reply) => {
            const d = decoder.decode(reply.data, reply.headers?.get(Headers.Encoding) === 'gzip', MAX_SNAPSHOT_RESPONSE_BYTES);
            d.catch(() => undefined); // reported where it is used
            decoded.set(reply, d);
          }, () => undefined);
        }
        return p;
      };
      let next = ask(store.syncState().cursor ?? 0);
      const debug = process.env['BENCH_DEBUG'] !== undefined;
      let tAsk = performance.now();
      for (;;) {
        const tw = performance.now();
        const reply = await next;
        const tr = performance.now();
        const askedAt = tAsk;
        // Pipelining: the next page is asked for as soon as this reply names its cursor, before decoding.
        const ahead = decodeNextCursorHeader(reply.headers?.get(Headers.NextCursor));
        if (ahead !== undefined) {
          next = ask(ahead);
          tAsk = performance.now();
        }
        wire += reply.data.byteLength;
        const gz = reply.headers?.get(Headers.Encoding) === 'gzip';
        // As SyncManager.pullPage: a snapshot page is un-gzipped, decoded, checked and prepared on the pull
        // decoder's worker thread from the moment its reply arrives (so page k+1 is decoded there while this
        // thread inserts page k), then inserted here. BENCH_IN_THREAD=1: all on this thread, as before.
        const page = inThread
          ? { ...decodePullWirePage(gz ? await gunzip(reply.data, { maxOutputLength: MAX_SNAPSHOT_RESPONSE_BYTES + 1 }) : reply.data), prepared: undefined }
          : await (decoded.get(reply) ?? decoder.decode(reply.data, gz, MAX_SNAPSHOT_RESPONSE_BYTES));
        const td = performance.now();
        if (page.hasMore && page.nextCursor !== ahead) throw new Error(`Fleet-Next-Cursor ${String(ahead)} is not the page's ${String(page.nextCursor)}`);
        if (page.prepared !== undefined) {
          store.applyRemoteRows(page.prepared, page.nextCursor);
          records += page.prepared.hlcs.length + page.prepared.others.length;
        } else {
          store.applyRemoteWire(page.records, page.nextCursor);
          records += page.records.length;
        }
        if (debug) console.log(`page ${pages}: ${page.prepared === undefined ? page.records.length : page.prepared.hlcs.length + page.prepared.others.length} records, waited ${(tr - tw).toFixed(0)} ms (reply ${(tr - askedAt).toFixed(0)} ms after its request), gunzip+decode ${(td - tr).toFixed(0)} ms, apply ${(performance.now() - td).toFixed(0)} ms`);
        pages++;
        if (!page.hasMore) break;
      }
      const secs = (performance.now() - t0) / 1000;
      const me = process.cpuUsage(me0);
      await decoder.close();
      const agentCpu = (me.user + me.system) / 1e6;
      const svcCpu = procCpuSecs(svcPid) - svc0;
      const othersCpu = cpuSince(others0, cpuByName(['postgres', 'nats-server']));
      const sample = store.get({ scope: 'fleet', collection: 'bench', key: `pkg-${Math.ceil(n / 2)}` });
      if (sample?.status !== 'live' || sample.fields?.['name'] !== `package-${Math.ceil(n / 2)}`) throw new Error(`sampled record is wrong: ${JSON.stringify(sample)}`);
      store.close();
      const sqlite = new Database(join(agentDir, 'agent.db'), { readonly: true });
      const count = (sqlite.prepare(`select count(*) as c from records where status = 'live'`).get() as { c: number }).c;
      sqlite.close();
      if (count !== n) throw new Error(`expected ${n} live records in SQLite, found ${count}`);
      console.log(
        `pull ${n.toLocaleString('en')} records (${inThread ? 'decoded on the agent thread' : 'decoded on the worker'}): ${secs.toFixed(2)} s, ${Math.round(records / secs).toLocaleString('en')} records/s, ${(wire / records).toFixed(1)} bytes/record on the wire (gzip), ${pages} pages, ${count.toLocaleString('en')} rows in SQLite; ` +
          `CPU s: agent ${agentCpu.toFixed(2)}, delta-calculator ${svcCpu.toFixed(2)}, postgres+nats ${othersCpu.toFixed(2)} (projected in ${projectSecs.toFixed(1)} s, untimed)`,
      );
    }
    await bus.drain();
  } finally {
    await svc?.stop().catch(() => undefined);
    svc?.closeLog();
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
  if (!process.argv.includes('--no-merkle')) benchMerkle(1_000_000, 10);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
