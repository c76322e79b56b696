import type { Change, RecordRef, StrategyConfig } from '@fleet/sync-core';
import { Agent } from './harness';

/** A seeded PRNG (mulberry32): workloads are reproducible from their seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `total` changes by `origins` agents over `records` hot records: each write is a put of one or two
 * fields (sometimes a delete); now and then an agent first syncs the record (receives every change
 * written to it so far), so the changes form a real partial order: some causal, many concurrent.
 * Returned in a random delivery order (not per-origin order).
 */
export function hotWorkload(opts: { total: number; records: number; origins: number; collections: readonly string[]; seed: number; config: StrategyConfig; scope?: string; prefix?: string; syncProbability?: number }): { changes: Change[]; refs: RecordRef[] } {
  const rnd = prng(opts.seed);
  const prefix = opts.prefix ?? 'hot';
  const agents = Array.from({ length: opts.origins }, (_, i) => new Agent(`${prefix}-o${i}`, opts.config, 1_767_225_600_000 + i * 7));
  const refs: RecordRef[] = Array.from({ length: opts.records }, (_, i) => ({ scope: opts.scope ?? 'group.hot', collection: opts.collections[i % opts.collections.length] as string, key: `r${i}` }));
  const byRecord = refs.map(() => [] as Change[]);
  const seen = agents.map(() => refs.map(() => 0));
  const all: Change[] = [];
  for (let n = 0; n < opts.total; n++) {
    const ai = Math.floor(rnd() * agents.length);
    const ri = Math.floor(rnd() * refs.length);
    const agent = agents[ai] as Agent;
    const log = byRecord[ri] as Change[];
    const seenRow = seen[ai] as number[];
    if (rnd() < (opts.syncProbability ?? 0.35) && (seenRow[ri] as number) < log.length) {
      agent.receive(log.slice(seenRow[ri]));
      seenRow[ri] = log.length;
    }
    const ref = refs[ri] as RecordRef;
    const r = rnd();
    const edit =
      r < 0.05
        ? ({ op: 'delete' } as const)
        : ({ op: 'put', fields: { [`f${Math.floor(rnd() * 4)}`]: Math.floor(rnd() * 1000), ...(rnd() < 0.3 ? { tags: [`t${Math.floor(rnd() * 5)}`] } : {}) } } as const);
    const c = agent.write(ref, edit, undefined);
    log.push(c);
    all.push(c);
  }
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [all[i], all[j]] = [all[j] as Change, all[i] as Change];
  }
  return { changes: all, refs };
}
