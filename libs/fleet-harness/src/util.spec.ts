import { expectedStates } from './checker';
import { percentile, Prng } from './util';
import { parseStrategyConfig } from '@fleet/config';
import { DEMO_STRATEGIES } from './scenario';
import { emptyRecord, encodeHlc, makeLocalChange } from '@fleet/sync-core';
import type { LoggedChange } from '@fleet/sync-core';

describe('Prng', () => {
  it('replays the same sequence for the same seed, and forks deterministically', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(xs);
    expect(new Prng(42).fork().int(1000)).toBe(new Prng(42).fork().int(1000));
    expect(new Prng(43).next()).not.toBe(xs[0]);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });

  it('shuffles to a permutation', () => {
    expect(new Prng(1).shuffle([1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('percentile', () => {
  it('nearest rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
  });
});

describe('expectedStates', () => {
  it('folds each record of the log with the strategies (counter-sum sums concurrent increments)', () => {
    const config = parseStrategyConfig(DEMO_STRATEGIES);
    const ref = { scope: 'host.h1', collection: 'counters', key: 'restarts' };
    const mk = (origin: string, seq: number, n: number, wall: number): LoggedChange => ({
      ...makeLocalChange(emptyRecord(ref), { op: 'put', fields: { n: { inc: { [origin]: n }, dec: {} } } }, { origin, originSeq: 1, changeId: `0190a000-0000-7000-8000-00000000000${seq}`, hlc: encodeHlc({ wallMs: wall, counter: 0, node: origin }), protocol: 1 }, config).change,
      seq,
    });
    const states = expectedStates([mk('h1', 1, 2, 1000), mk('server', 2, 1, 999)], config);
    const s = [...states.values()][0];
    expect(s?.view.fields['n']).toEqual({ inc: { h1: 2, server: 1 }, dec: {} });
  });
});
