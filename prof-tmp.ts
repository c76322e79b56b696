import { applyChanges, type Change, type StrategyConfig } from '@fleet/sync-core';
import { hotWorkload } from './apps/conflict-resolver/src/testing/workload';
const strategies: StrategyConfig = { default: 'lww', collections: { lww: { strategy: 'lww' }, merge: { strategy: 'merge' }, custom: { strategy: 'custom', rule: 'max', fields: { tags: { rule: 'set-union' } } } } };
const t0 = performance.now();
const { changes, refs } = hotWorkload({ total: 10000, records: 100, origins: 10, collections: ['lww', 'merge', 'custom'], seed: 42, config: strategies });
const t1 = performance.now();
const by = new Map<string, Change[]>();
for (const c of changes) { const k = c.key + c.collection; by.set(k, [...(by.get(k) ?? []), c]); }
const t2 = performance.now();
for (const cs of by.values()) applyChanges(cs, strategies);
const t3 = performance.now();
console.log(`generate ${(t1 - t0).toFixed(0)} ms, apply 10000 in ${(t3 - t2).toFixed(0)} ms (${(10000 / ((t3 - t2) / 1000)).toFixed(0)}/s)`, refs.length);
