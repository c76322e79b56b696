/**
 * The agent store benchmark: `node --expose-gc -r ./scripts/register.js bench/agent/main.ts [--records N] [--writes N]`.
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
 * 3. Push throughput from a 100,000-change outbox: not measured here; see `benchPushThroughput`.
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

function benchWrites(total: number, synchronous: 'FULL' | 'NORMAL'): number {
  const dir = mkdtempSync(join(tmpdir(), 'agent-bench-'));
  try {
    const store = SqliteLocalStore.open({ dataDir: dir, agentId: AGENT, synchronous, outboxMax: total + 2000, coalesceAbove: total + 2000 });
    // Warm-up (JIT), not counted.
    store.transaction(() => {
      for (let i = 0; i < 1000; i++) store.put({ scope: SCOPE, collection: 'warm', key: `w${i}` }, fields(i));
    });
    const t0 = performance.now();
    for (let i = 0; i < total; i += 100) {
      store.transaction(() => {
        for (let j = i; j < i + 100; j++) store.put({ scope: SCOPE, collection: 'packages', key: `pkg-${(j * 7919) % total}` }, fields(j));
      });
    }
    const ms = performance.now() - t0;
    store.close();
    return (total / ms) * 1000;
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
 * Placeholder for the sync-manager colleague: push throughput from a 100,000-change outbox to
 * JetStream (peekOutbox -> publish batch -> PubAck -> markSent). Needs the sync manager and a
 * running NATS; no figure is printed until it is written.
 */
export async function benchPushThroughput(): Promise<void> {
  console.log('push throughput (100,000-change outbox): NOT MEASURED (needs the sync manager; benchPushThroughput in bench/agent/main.ts)');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { records: { type: 'string' }, writes: { type: 'string' }, 'child-insert': { type: 'string' }, 'child-open': { type: 'string' }, 'child-baseline': { type: 'string' }, n: { type: 'string' } },
  });
  if (values['child-insert'] !== undefined) return childInsert(values['child-insert'], Number(values.n));
  if (values['child-open'] !== undefined) return childOpen(values['child-open']);
  if (values['child-baseline'] !== undefined) return childBaseline(values['child-baseline']);
  const writes = Number(values.writes ?? 100_000);
  const records = Number(values.records ?? 1_000_000);
  console.log(`agent store benchmark: node ${process.version} on ${process.platform}/${process.arch}`);
  console.log(`\n1. local writes through the API (HLC, makeLocalChange, record + outbox row), transactions of 100, ${writes} writes, target >= 50,000/s`);
  for (const sync of ['FULL', 'NORMAL'] as const) console.log(`   synchronous=${sync}: ${Math.round(benchWrites(writes, sync)).toLocaleString('en')} writes/s`);
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
  console.log('\n3.');
  await benchPushThroughput();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
