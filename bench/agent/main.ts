/**
 * The agent store benchmark:
 * `node --expose-gc -r ./scripts/register.js bench/agent/main.ts [--writes N] [--runs N] [--records N] [--push N] [--only writes|memory|push] [--push-only]`.
 *
 * 1. Local writes per second through the LocalStore API (each write: validation, HLC tick, sync-core
 *    makeLocalChange, record row, outbox row), `put` of 4-field records with keys in a random
 *    permutation (every write creates a record), in transactions of 100, on a fresh store in a temp
 *    directory, 1,000 warm-up writes first; `--runs` runs (default 3) with synchronous=FULL (the default:
 *    survives power loss) and with NORMAL (survives a crash of the agent, may lose the last commits on
 *    power loss); prints each run and the medians. Also this process's CPU time per write (user + system,
 *    process.cpuUsage), which swings less than the wall-clock rate on a shared box, and the time of
 *    sync-core makeLocalChange alone.
 * 2. Resident memory with N local records (default 1,000,000), measured on a BUILD of the agent: this file
 *    and the libraries it loads are transpiled once with swc into a temp directory (`buildAgent`) and the
 *    children run them with plain node, as a deployed agent runs built JS; `scripts/register.js` would add
 *    swc and TypeScript (~65-80 MB) to every process. A child inserts the records (in transactions of
 *    1,000, draining the outbox as a sync would), forces a GC and reads RSS; a second child opens the
 *    existing store, reads status, a query page and all Merkle entries of a collection, forces a GC and
 *    reads RSS. RSS is process.memoryUsage().rss: it includes SQLite's 16 MiB page cache and the runtime;
 *    a third child with an empty store gives that baseline (printed also as run through register.js).
 * 3. Push throughput from a full outbox of 100,000 changes (`--push N`) to the real JetStream: see
 *    `benchPushThroughput`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
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

/** The workspace libraries the memory children load (agent-store and what it imports). */
const BUILT_LIBS = ['errors', 'sync-core', 'contracts', 'agent-store'] as const;

/**
 * Builds what the memory children run, as a deployed agent would run it: this file and the libraries it
 * loads, transpiled once with swc to CommonJS into `out` (`out/node_modules/@fleet/<lib>/src/*.js`,
 * `out/main.js`). The children then run plain `node out/main.js`, without `scripts/register.js` (swc and
 * TypeScript in the process); third-party packages (better-sqlite3, zod) come from the workspace's
 * node_modules through NODE_PATH. Returns the entry point.
 */
function buildAgent(out: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const swc = require('@swc/core') as { transformFileSync: (file: string, options: object) => { code: string } };
  const options = { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' }, sourceMaps: false };
  const root = resolve(__dirname, '../..');
  const emit = (file: string, to: string) => {
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, swc.transformFileSync(file, options).code);
  };
  for (const lib of BUILT_LIBS) {
    const src = join(root, 'libs', lib, 'src');
    const dest = join(out, 'node_modules', '@fleet', lib);
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const f = join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'testing') walk(f);
        } else if (e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts') && !e.name.endsWith('.testkit.ts')) {
          emit(f, join(dest, 'src', relative(src, f).replace(/\.ts$/, '.js')));
        }
      }
    };
    walk(src);
    writeFileSync(join(dest, 'package.json'), JSON.stringify({ name: `@fleet/${lib}`, main: 'src/index.js' }));
  }
  const entry = join(out, 'main.js');
  emit(__filename, entry);
  return entry;
}

/** Runs a child: `built` = the entry of `buildAgent` (plain node), else this file through scripts/register.js (swc at run time). */
function runChild(args: string[], built?: string): Record<string, number> {
  const root = resolve(__dirname, '../..');
  const argv = built === undefined ? ['--expose-gc', '-r', './scripts/register.js', 'bench/agent/main.ts', ...args] : ['--expose-gc', built, ...args];
  const env = built === undefined ? process.env : { ...process.env, NODE_PATH: join(root, 'node_modules') };
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 16 * MB, cwd: root, env });
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
    options: {
      records: { type: 'string' },
      writes: { type: 'string' },
      runs: { type: 'string' },
      only: { type: 'string' },
      'child-insert': { type: 'string' },
      'child-open': { type: 'string' },
      'child-baseline': { type: 'string' },
      n: { type: 'string' },
      push: { type: 'string' },
      'push-only': { type: 'boolean' },
    },
  });
  if (values['child-insert'] !== undefined) return childInsert(values['child-insert'], Number(values.n));
  if (values['child-open'] !== undefined) return childOpen(values['child-open']);
  if (values['child-baseline'] !== undefined) return childBaseline(values['child-baseline']);
  if (values['push-only'] === true) return benchPushThroughput(Number(values.push ?? 100_000));
  const only = values.only;
  if (only !== undefined && !['writes', 'memory', 'push'].includes(only)) throw new Error('--only takes writes, memory or push');
  const writes = Number(values.writes ?? 100_000);
  const runs = Number(values.runs ?? 3);
  const records = Number(values.records ?? 1_000_000);
  console.log(`agent store benchmark: node ${process.version} on ${process.platform}/${process.arch}`);
  if (only === undefined || only === 'writes') {
    console.log(`\n1. local writes through the API (HLC, makeLocalChange, record + outbox row), transactions of 100, ${writes} writes into a fresh store, ${runs} runs each, target >= 50,000/s`);
    for (const sync of ['FULL', 'NORMAL'] as const) {
      const rs: { perSec: number; cpuUs: number }[] = [];
      for (let i = 0; i < runs; i++) rs.push(benchWrites(writes, sync));
      // CPU time per write too: on a shared box the wall-clock rate swings with other load, CPU time less.
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
      const each = rs.map((r) => `${Math.round(r.perSec).toLocaleString('en')}/s ${r.cpuUs.toFixed(0)} us`).join(', ');
      console.log(
        `   synchronous=${sync}: median ${Math.round(median(rs.map((r) => r.perSec))).toLocaleString('en')} writes/s, CPU ${median(rs.map((r) => r.cpuUs)).toFixed(0)} us per write (this process; runs: ${each})`,
      );
    }
    console.log(`   of which sync-core makeLocalChange alone: ${coreMicrosPerWrite(20_000).toFixed(1)} us per write`);
  }
  if (only === undefined || only === 'memory') {
    const dir = mkdtempSync(join(tmpdir(), 'agent-bench-mem-'));
    try {
      console.log(`\n2. resident memory with ${records.toLocaleString('en')} local records, target < 150 MB (RSS after a forced GC, in a child process running a build of the agent)`);
      const built = buildAgent(join(dir, 'build'));
      const dev = runChild(['--child-baseline', join(dir, 'empty-dev')]);
      const base = runChild(['--child-baseline', join(dir, 'empty')], built);
      console.log(`   baseline (built agent, empty store: Node + better-sqlite3 + the libraries): RSS ${base['rssMb']?.toFixed(0)} MB (through scripts/register.js, with swc and TypeScript loaded: ${dev['rssMb']?.toFixed(0)} MB)`);
      const data = join(dir, 'data');
      const ins = runChild(['--child-insert', data, '--n', String(records)], built);
      const size = statSync(join(data, 'agent.db')).size / MB;
      console.log(`   inserting process: RSS ${ins['rssMb']?.toFixed(0)} MB (JS heap ${ins['heapMb']?.toFixed(0)} MB) after ${ins['seconds']?.toFixed(0)} s of inserts; agent.db ${size.toFixed(0)} MB`);
      const open = runChild(['--child-open', data], built);
      console.log(`   fresh process (open, status, query, all ${open['entries']} Merkle entries): RSS ${open['rssMb']?.toFixed(0)} MB (JS heap ${open['heapMb']?.toFixed(0)} MB)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (only === undefined || only === 'push') {
    const push = Number(values.push ?? 100_000);
    console.log(`\n3. push throughput from a full outbox of ${push.toLocaleString('en')} changes (publish -> PubAck -> markSent, batches of 500, one in flight), target drained in < 5 s`);
    await benchPushThroughput(push);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
