/**
 * Resolution benchmark: version vector compare/merge, and `applyChange` of concurrent changes per
 * strategy (the hot path of the version-vector and conflict-resolver services). Every figure is printed
 * with how it was measured. Inputs are prepared before timing so only the library is measured.
 */
import { performance } from 'node:perf_hooks';
import type { Change, RecordState, StrategyConfig, VersionVector } from '../../libs/sync-core/src/index';
import { applyChange, counterAdd, emptyRecord, encodeHlc, makeLocalChange, vvCompare, vvMerge } from '../../libs/sync-core/src/index';

const VV_ITERATIONS = 200_000;
const RESOLVE_ITERATIONS = 2_000;
const ref = { scope: 'fleet', collection: 'settings', key: 'k' };

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en')}/s`;
}

function time(n: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 2_000); i++) fn(i); // warm-up: let the JIT settle
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return performance.now() - t0;
}

/** Vectors of a realistic size: a record written by the server and a handful of agents. */
function vectors(count: number): VersionVector[] {
  const out: VersionVector[] = [];
  for (let i = 0; i < count; i++) {
    const v: Record<string, number> = { server: 1 + (i % 7) };
    for (let a = 0; a < 4; a++) v[`agent-${(i + a) % 9}`] = 1 + ((i * (a + 3)) % 11);
    out.push(v);
  }
  return out;
}

/**
 * A base record with 8 fields, and `count` pairs of concurrent changes made from it by two agents, each
 * writing 2 fields with one field in common (so every pair is a real conflict on one field).
 */
function conflicts(config: StrategyConfig, count: number): { base: RecordState; pairs: [RecordState, Change][] } {
  const fields = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`f${i}`, i]));
  const base = makeLocalChange(emptyRecord(ref), { op: 'put', fields: { ...fields, hits: counterAdd(undefined, 'server', 1) } }, { origin: 'server', originSeq: 1, changeId: 'base', hlc: encodeHlc({ wallMs: 1_000, counter: 0, node: 'server' }), protocol: 1 }, config).state;
  const pairs: [RecordState, Change][] = [];
  for (let i = 0; i < count; i++) {
    const meta = (origin: string, ms: number) => ({ origin, originSeq: i + 1, changeId: `${origin}-${i}`, hlc: encodeHlc({ wallMs: ms, counter: 0, node: origin }), protocol: 1 });
    const a = makeLocalChange(base, { op: 'put', fields: { f1: i, f2: `a${i}`, hits: counterAdd(base.view.fields['hits'], 'agent-a', 1) } }, meta('agent-a', 2_000 + i), config);
    const b = makeLocalChange(base, { op: 'put', fields: { f1: i + 1, f3: `b${i}`, hits: counterAdd(base.view.fields['hits'], 'agent-b', 2) } }, meta('agent-b', 2_001 + i), config);
    pairs.push([a.state, b.change]);
  }
  return { base, pairs };
}

const STRATEGIES: Record<string, StrategyConfig> = {
  lww: { default: 'lww' },
  merge: { default: { strategy: 'merge', rule: 'max' } },
  manual: { default: 'manual' },
  'custom (max, counter-sum)': { default: { strategy: 'custom', rule: 'max', fields: { hits: { rule: 'counter-sum' } } } },
};

export async function runResolveBench(): Promise<void> {
  console.log(`\n== Resolution (node ${process.version}, ${process.arch})`);
  console.log(`   method: wall clock by performance.now() around a loop of N iterations after a warm-up; inputs prepared outside the timed loop`);

  const vs = vectors(1024);
  let sink = 0;
  const cmpMs = time(VV_ITERATIONS, (i) => {
    if (vvCompare(vs[i & 1023] as VersionVector, vs[(i * 7 + 1) & 1023] as VersionVector) === 'concurrent') sink++;
  });
  const mergeMs = time(VV_ITERATIONS, (i) => {
    sink += Object.keys(vvMerge(vs[i & 1023] as VersionVector, vs[(i * 7 + 1) & 1023] as VersionVector)).length;
  });
  console.log(`   version vector compare (5 actors): ${rate(VV_ITERATIONS, cmpMs)}  (N=${VV_ITERATIONS.toLocaleString('en')}, ${cmpMs.toFixed(0)} ms)`);
  console.log(`   version vector merge   (5 actors): ${rate(VV_ITERATIONS, mergeMs)}  (N=${VV_ITERATIONS.toLocaleString('en')}, ${mergeMs.toFixed(0)} ms)`);

  for (const [name, config] of Object.entries(STRATEGIES)) {
    const { pairs } = conflicts(config, RESOLVE_ITERATIONS);
    let conflicted = 0;
    const ms = time(RESOLVE_ITERATIONS, (i) => {
      const [state, change] = pairs[i % pairs.length] as [RecordState, Change];
      if (applyChange(state, change, config).conflict !== undefined) conflicted++;
    });
    console.log(`   applyChange of a concurrent change, ${name.padEnd(26)} ${rate(RESOLVE_ITERATIONS, ms)}  (N=${RESOLVE_ITERATIONS.toLocaleString('en')}, ${ms.toFixed(0)} ms, 10-field record, 1 contested field, conflict record built)`);
    sink += conflicted;
  }
  if (sink < 0) console.log(sink); // keeps the loops from being optimised away
}

if (require.main === module) {
  runResolveBench().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
