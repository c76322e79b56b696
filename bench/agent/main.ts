/**
 * The agent store benchmark: `node --expose-gc -r ./scripts/register.js bench/agent/main.ts [--records N] [--writes N] [--push N] [--push-only]`.
 *
 * 1. Local writes per second through the LocalStore API (each write: HLC tick, sync-core
 *    makeLocalChange, record row, outbox row), in transactions of 100, synchronous=FULL (the
 *    default) and NORMAL, on a fresh store in a temp directory. Also the share spent in sync-core.
 * 2. Resident memory with N local records (default 1,000,000): a child process inserts them (in
 *    transactions of 1,000, then marks them sent, as after a sync), forces a GC and reads RSS; a second
 *    child opens the existing store, reads status, a query page and all Merkle entries of a
 *    collection, forces a GC and reads RSS. RSS is process.memoryUsage().rss: it includes SQLite's
 *    16 MiB page cache and the runtime; a third child with an empty store gives that baseline
 *    (Node plus the swc transpiler `scripts/register.js` loads, which a built agent would not carry).
 * 3. Push throughput from a full outbox of 100,000 changes (`--push N`) to the real JetStream: see
 *    `benchPushThroughput`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteLocalStore } from '@fleet/agent-store';
import { emptyRecord, makeLocalChange } from '@fleet/sync-core';

const AGENT = 'bench-agent';
const SCOPE = `host.${AGENT}`;
const MB = 1024 * 1024;

function fields(i: number) {
  return { name: `package-${i}`, version: `1.${i % 100}.${i % 7}`, arch: 'x86_64', size: 1000 + (i % 5000) };
}

function benchWrites(total: number, synchronous: 'FULL' | 'NORMAL'): { perSec: number; cpuUs: number } {
  const dir = mkdtempSync(join(tmpdir(), 'agent-bench-'));
  try {
    const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, synchronous, outboxMax: total + 2000, coalesceAbove: total + 2000 });
    // Warm-up (JIT), not counted.
    store.transaction(() => {
      for (let i = 0; i < 1000; i++) store.put({ scope: SCOPE, collection: 'warm', key: `w${i}` }, fields(i));
    });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < total; i += 100) {
      store.transaction(() => {
        for (let j = i; j < i + 100; j++) store.put({ scope: SCOPE, collection: 'packages', key: `pkg-${(j * 7919) % total}` }, fields(j));
      });
    }
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    store.close();
    return { perSec: (total / ms) * 1000, cpuUs: (cpu.user + cpu.system) / total };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Time spent in sync-core alone per write (makeLocalChange on a fresh record), for the breakdown. */
function coreMicrosPerWrite(n: number): number {
  const meta = (i: number) => ({ origin: AGENT, originSeq: i + 1, changeId: '0190a000-0000-7000-8000-000000000001', hlc: '001700000000000-000000-bench-agent', protocol: 1 });
  for (let i = 0; i < 2000; i++) makeLocalChange(emptyRecord({ scope: SCOPE, collection: 'c', key: `k${i}` }), { op: 'put', fields: fields(i) }, meta(i), { default: 'lww' });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) makeLocalChange(emptyRecord({ scope: SCOPE, collection: 'c', key: `k${i}` }), { op: 'put', fields: fields(i) }, meta(i), { default: 'lww' });
  return ((performance.now() - t0) * 1000) / n;
}

function gcAndRss(): { rssMb: number; heapMb: number } {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) {
    g();
    g();
  }
  const m = process.memoryUsage();
  return { rssMb: m.rss / MB, heapMb: m.heapUsed / MB };
}

/** Child: insert `n` records, mark them sent, GC, print RSS as JSON. */
function childInsert(dir: string, n: number): void {
  const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, outboxMax: n + 1, coalesceAbove: n + 1, synchronous: 'NORMAL' });
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1000) {
    store.transaction(() => {
      for (let j = i; j < Math.min(n, i + 1000); j++) store.put({ scope: SCOPE, collection: 'packages', key: `pkg-${j}` }, fields(j));
    });
    if ((i / 1000) % 50 === 49) {
      // Drain the outbox as a sync would, so the store holds records, not a million queued changes.
      for (;;) {
        const batch = store.peekOutbox(5000);
        if (batch.length === 0) break;
        store.markSent(batch.map((c) => c.changeId));
      }
    }
  }
  for (;;) {
    const batch = store.peekOutbox(5000);
    if (batch.length === 0) break;
    store.markSent(batch.map((c) => c.changeId));
  }
  const seconds = (performance.now() - t0) / 1000;
  const mem = gcAndRss();
  store.close();
  console.log(JSON.stringify({ ...mem, seconds }));
}

/** Child: the same process with an empty store: Node, the swc runtime transpiler (absent from a built agent), better-sqlite3. */
function childBaseline(dir: string): void {
  const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
  store.outboxStats();
  const mem = gcAndRss();
  store.close();
  console.log(JSON.stringify(mem));
}

/** Child: open an existing store, do the reads an agent does, GC, print RSS as JSON. */
function childOpen(dir: string): void {
  const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT });
  store.outboxStats();
  store.query(SCOPE, 'packages', { prefix: 'pkg-5', limit: 1000 });
  let entries = 0;
  for (const _e of store.merkleEntries(SCOPE, 'packages')) entries++;
  const mem = gcAndRss();
  store.close();
  console.log(JSON.stringify({ ...mem, entries }));
}

function runChild(args: string[]): Record<string, number> {
  const r = spawnSync(process.execPath, ['--expose-gc', '-r', './scripts/register.js', 'bench/agent/main.ts', ...args], { encoding: 'utf8', maxBuffer: 16 * MB });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as Record<string, number>;
}

/**
 * Push throughput from a full outbox: N changes written through the store (not timed), then the sync
 * manager's push loop exactly (`SyncManager.pushBatch`: `peekOutbox(500)` -> `buildPushBatch` ->
 * JetStream publish with `Nats-Msg-Id` = batch id -> wait for the PubAck -> `markSent`), one batch
 * at a time, against the real NATS (`NATS_URL`, default 127.0.0.1:4222) with a file-storage stream on
 * `subjects(ns).push(agentId)` created for the run and deleted after. Timed: first peek to last
 * markSent. Not included: the change-log service consuming the stream (its ingest is bench/ingest's).
 */
export async function benchPushThroughput(n: number): Promise<void> {
  const { Messaging } = await import('@fleet/messaging');
  const { subjects, Headers, PROTOCOL_VERSION, MAX_CHANGES_PER_PUSH } = await import('@fleet/contracts');
  const { buildPushBatch } = await import('@fleet/agent-sync');
  const s = subjects(`benchpush${Date.now().toString(36)}`);
  const dir = mkdtempSync(join(tmpdir(), 'agent-bench-push-'));
  const bus = await Messaging.connect({ servers: [process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222'], name: 'bench-agent-push' }, s);
  try {
    await bus.provision([{ name: s.streams.push, subjects: [s.push(AGENT)] }], { deadLetter: false });
    const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, outboxMax: n, coalesceAbove: n });
    for (let i = 0; i < n; i += 1000) {
      store.transaction(() => {
        for (let j = i; j < Math.min(n, i + 1000); j++) store.put({ scope: SCOPE, collection: 'packages', key: `pkg-${j}` }, fields(j));
      });
    }
    const maxPayload = bus.nc.info?.max_payload ?? 1024 * 1024;
    let pushed = 0;
    let batches = 0;
    let bytes = 0;
    const t0 = performance.now();
    const split = { peek: 0, build: 0, publish: 0, markSent: 0 };
    let t = t0;
    const lap = (k: keyof typeof split) => {
      const now = performance.now();
      split[k] += now - t;
      t = now;
    };
    for (;;) {
      const rows = store.peekOutbox(MAX_CHANGES_PER_PUSH);
      lap('peek');
      const batch = buildPushBatch(AGENT, rows, Date.now(), maxPayload - 8 * 1024);
      lap('build');
      if (batch === undefined) break;
      await bus.publish(s.push(AGENT), batch.payload, { msgId: batch.batchId, headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) }, timeoutMs: 10_000 });
      lap('publish');
      store.markSent(batch.changeIds);
      lap('markSent');
      pushed += batch.changeIds.length;
      bytes += batch.payload.byteLength;
      batches++;
    }
    const secs = (performance.now() - t0) / 1000;
    const left = store.outboxStats().size;
    store.close();
    console.log(
      `   ${pushed.toLocaleString('en')} changes in ${batches} batches (${(bytes / batches / 1024).toFixed(0)} KiB each) drained in ${secs.toFixed(2)} s: ${Math.round(pushed / secs).toLocaleString('en')} changes/s; outbox left ${left}`,
    );
    const ms = (k: keyof typeof split) => `${k} ${(split[k] / 1000).toFixed(2)} s`;
    console.log(`   where: ${ms('peek')} (read + freeze + parse), ${ms('build')} (size plan + encode), ${ms('publish')} (to PubAck), ${ms('markSent')} (synchronous=FULL)`);
  } finally {
    const jsm = await bus.jsm();
    await jsm.streams.delete(s.streams.push).catch(() => undefined);
    await bus.drain();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { records: { type: 'string' }, writes: { type: 'string' }, 'child-insert': { type: 'string' }, 'child-open': { type: 'string' }, 'child-baseline': { type: 'string' }, n: { type: 'string' }, push: { type: 'string' }, 'push-only': { type: 'boolean' } },
  });
  if (values['child-insert'] !== undefined) return childInsert(values['child-insert'], Number(values.n));
  if (values['child-open'] !== undefined) return childOpen(values['child-open']);
  if (values['child-baseline'] !== undefined) return childBaseline(values['child-baseline']);
  if (values['push-only'] === true) return benchPushThroughput(Number(values.push ?? 100_000));
  const writes = Number(values.writes ?? 100_000);
  const records = Number(values.records ?? 1_000_000);
  console.log(`agent store benchmark: node ${process.version} on ${process.platform}/${process.arch}`);
  console.log(`\n1. local writes through the API (HLC, makeLocalChange, record + outbox row), transactions of 100, ${writes} writes, target >= 50,000/s`);
  for (const sync of ['FULL', 'NORMAL'] as const) {
    const r = benchWrites(writes, sync);
    // CPU time per write too: on a shared box the wall-clock rate swings with other load, CPU time less.
    console.log(`   synchronous=${sync}: ${Math.round(r.perSec).toLocaleString('en')} writes/s (CPU ${r.cpuUs.toFixed(0)} us per write, this process)`);
  }
  console.log(`   of which sync-core makeLocalChange alone: ${coreMicrosPerWrite(20_000).toFixed(1)} us per write`);
  const dir = mkdtempSync(join(tmpdir(), 'agent-bench-mem-'));
  try {
    console.log(`\n2. resident memory with ${records.toLocaleString('en')} local records, target < 150 MB (RSS after a forced GC, in a child process)`);
    const base = runChild(['--child-baseline', join(dir, 'empty')]);
    console.log(`   baseline (same process, empty store: Node + swc runtime transpiler + better-sqlite3): RSS ${base['rssMb']?.toFixed(0)} MB`);
    const ins = runChild(['--child-insert', dir, '--n', String(records)]);
    const size = statSync(join(dir, 'agent.db')).size / MB;
    console.log(`   inserting process: RSS ${ins['rssMb']?.toFixed(0)} MB (JS heap ${ins['heapMb']?.toFixed(0)} MB) after ${ins['seconds']?.toFixed(0)} s of inserts; agent.db ${size.toFixed(0)} MB`);
    const open = runChild(['--child-open', dir]);
    console.log(`   fresh process (open, status, query, all ${open['entries']} Merkle entries): RSS ${open['rssMb']?.toFixed(0)} MB (JS heap ${open['heapMb']?.toFixed(0)} MB)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const push = Number(values.push ?? 100_000);
  console.log(`\n3. push throughput from a full outbox of ${push.toLocaleString('en')} changes (publish -> PubAck -> markSent, batches of 500, one in flight), target drained in < 5 s`);
  await benchPushThroughput(push);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
