import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import type { Change, StrategyConfig } from './index';
import {
  applyChange,
  applyChanges,
  conflictOf,
  counterAdd,
  counterValue,
  decodeRecordState,
  emptyRecord,
  encodeHlc,
  encodeRecordState,
  joinRule,
  makeLocalChange,
  makeResolutionChange,
  mergeRecordStates,
  recordHash,
  resolveManual,
  soleWriter,
  validateStrategyConfig,
  visibleFields,
} from './index';
import { forgedCopy, historyArb, REF, runHistory, same, scramble } from './history.testkit';

const CONFIGS: Record<string, StrategyConfig> = {
  lww: { default: 'lww' },
  merge: { default: { strategy: 'merge' } },
  manual: { default: 'manual' },
  custom: {
    default: {
      strategy: 'custom',
      rule: 'max',
      onDelete: 'delete-wins',
      fields: { tags: { rule: 'set-union' }, hits: { rule: 'counter-sum' }, owner: { rule: 'prefer-server' }, color: { rule: 'prefer-origin' }, size: { rule: 'longest' } },
    },
    // A user rule: the longer text wins, ties by code unit order. Commutative, associative, idempotent.
    rules: { longest: joinRule((a, b) => { const [x, y] = [JSON.stringify(a), JSON.stringify(b)]; return x.length !== y.length ? (x.length > y.length ? a : b) : x >= y ? a : b; }) },
  },
};

function expectFleet(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(isFleetError(e)).toBe(true);
    expect((e as { code: string }).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe.each(Object.keys(CONFIGS))('convergence under %s', (name) => {
  const config = CONFIGS[name] as StrategyConfig;

  it('any permutation and duplication of delivery gives the same state', () => {
    fc.assert(
      fc.property(historyArb, fc.integer(), fc.integer({ min: 0, max: 6 }), (h, seed, dups) => {
        const { changes } = runHistory(h, config);
        const inOrder = applyChanges(changes, config, emptyRecord(REF));
        const scrambled = applyChanges(scramble(changes, seed, dups), config, emptyRecord(REF));
        expect(same(scrambled, inOrder)).toBe(true);
        // manual: same provisional winner (the view) and the same conflict set
        expect(same(conflictOf(scrambled, config) ?? null, conflictOf(inOrder, config) ?? null)).toBe(true);
        expect(recordHash(scrambled)).toBe(recordHash(inOrder));
      }),
      { numRuns: 150 },
    );
  });

  it('a reinstalled origin (empty state, sequences past its old ones) never reuses a dot: its writes follow its old ones, every order converges', () => {
    fc.assert(
      fc.property(historyArb, fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 1000 }), fc.integer(), (h, edits, gap, seed) => {
        const { changes } = runHistory(h, config);
        const origin = 'agent-a';
        const oldMax = Math.max(0, ...changes.filter((c) => c.origin === origin).map((c) => c.originSeq));
        // The reinstalled store has seen nothing and numbers from a floor above every sequence it used before.
        let state = emptyRecord(REF);
        const fresh: Change[] = [];
        edits.forEach((del, i) => {
          const seq = oldMax + gap + i;
          const edit = del ? ({ op: 'delete' } as const) : ({ op: 'put', fields: { color: `again-${i}` } } as const);
          const made = makeLocalChange(state, edit, { origin, originSeq: seq, changeId: `${origin}-again-${i}`, hlc: encodeHlc({ wallMs: 2_000_000 + i, counter: 0, node: origin }), protocol: 1 }, config);
          expect(made.change.vv[origin]).toBe(Math.max(seq, (state.vv[origin] ?? 0) + 1));
          state = made.state;
          fresh.push(made.change);
        });
        const all = [...changes, ...fresh];
        const inOrder = applyChanges(all, config, emptyRecord(REF));
        expect(same(applyChanges(scramble(all, seed, 3), config, emptyRecord(REF)), inOrder)).toBe(true);
        // every write of both stores is held or dominated: the reinstalled one's last write is in the result
        const last = fresh[fresh.length - 1] as Change;
        expect(applyChange(inOrder, last, config).changed).toBe(false);
      }),
      { numRuns: 100 },
    );
  });

  it('every node converges after a full exchange, whatever it saw before', () => {
    fc.assert(
      fc.property(historyArb, (h) => {
        const { changes, finals } = runHistory(h, config);
        const all = applyChanges(changes, config, emptyRecord(REF));
        for (const f of finals) expect(same(applyChanges(changes, config, f), all)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('state join is commutative, associative, idempotent, and equals applying the union', () => {
    fc.assert(
      fc.property(historyArb, fc.integer(), (h, seed) => {
        const { changes } = runHistory(h, config);
        const parts = [0, 1, 2].map((i) => scramble(changes, seed + i, 0).slice(0, (seed >>> i) % (changes.length + 1)));
        const [a, b, c] = parts.map((p) => applyChanges(p, config, emptyRecord(REF))) as [ReturnType<typeof emptyRecord>, ReturnType<typeof emptyRecord>, ReturnType<typeof emptyRecord>];
        const m = (x: typeof a, y: typeof a) => mergeRecordStates(x, y, config);
        expect(same(m(a, b), m(b, a))).toBe(true);
        expect(same(m(m(a, b), c), m(a, m(b, c)))).toBe(true);
        expect(same(m(a, a), a)).toBe(true);
        const union = [...(parts[0] ?? []), ...(parts[1] ?? [])];
        expect(same(m(a, b), applyChanges(union, config, emptyRecord(REF)))).toBe(true);
      }),
      { numRuns: 80 },
    );
  });

  it('encodes to JSON and decodes to the same state', () => {
    fc.assert(
      fc.property(historyArb, (h) => {
        const s = applyChanges(runHistory(h, config).changes, config, emptyRecord(REF));
        expect(same(decodeRecordState(encodeRecordState(s)), s)).toBe(true);
      }),
      { numRuns: 30 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Examples

const lww: StrategyConfig = { default: 'lww' };
const t = (ms: number, node: string): string => encodeHlc({ wallMs: ms, counter: 0, node });
let seqs: Record<string, number> = {};
beforeEach(() => {
  seqs = {};
});
function write(state: ReturnType<typeof emptyRecord>, origin: string, ms: number, edit: Parameters<typeof makeLocalChange>[1], config: StrategyConfig) {
  const seq = (seqs[origin] = (seqs[origin] ?? 0) + 1);
  return makeLocalChange(state, edit, { origin, originSeq: seq, changeId: `${origin}-${seq}`, hlc: t(ms, origin), protocol: 1 }, config);
}

/** base written by `a`, then `a` and `b` write concurrently from it. */
function fork(config: StrategyConfig, editA: Parameters<typeof makeLocalChange>[1], editB: Parameters<typeof makeLocalChange>[1], msA = 200, msB = 300) {
  const base = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red', size: 1 } }, config);
  const a = write(base.state, 'a', msA, editA, config);
  const b = write(base.state, 'b', msB, editB, config);
  const ab = applyChange(a.state, b.change, config);
  const ba = applyChange(b.state, a.change, config);
  expect(same(ab.state, ba.state)).toBe(true);
  return { base, a, b, merged: ab.state, result: ab };
}

describe('soleWriter', () => {
  const m = (origin: string, seq: number) => ({ origin, originSeq: seq, changeId: `${origin}-${seq}`, hlc: encodeHlc({ wallMs: 1_000_000 + seq, counter: 0, node: origin }), protocol: 1 });
  it('names the one origin of every write a state keeps, with the lowest counter kept; undefined when another origin wrote', () => {
    const cfg: StrategyConfig = { default: 'lww' };
    let s = emptyRecord(REF);
    expect(soleWriter(s)).toBeUndefined();
    s = makeLocalChange(s, { op: 'put', fields: { a: 1 } }, m('agent-a', 10), cfg).state;
    s = makeLocalChange(s, { op: 'put', fields: { b: 2 } }, m('agent-a', 12), cfg).state;
    expect(soleWriter(s)).toEqual({ origin: 'agent-a', minCounter: 10 }); // field a keeps the write of 10
    s = makeLocalChange(s, { op: 'put', fields: { a: 3 } }, m('agent-a', 15), cfg).state;
    expect(soleWriter(s)).toEqual({ origin: 'agent-a', minCounter: 12 }); // a's 10 is overwritten; b keeps 12
    s = makeLocalChange(s, { op: 'put', fields: { c: 1 } }, m('server', 1), cfg, 'tick').state;
    expect(soleWriter(s)).toBeUndefined();
  });
  it('counts a delete the state keeps, even when a later put overwrote its existence write', () => {
    const cfg: StrategyConfig = { default: 'lww' };
    let s = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { a: 1, b: 2 } }, m('agent-a', 10), cfg).state;
    s = makeLocalChange(s, { op: 'delete' }, m('agent-a', 20), cfg).state;
    s = makeLocalChange(s, { op: 'put', fields: { a: 3 } }, m('agent-a', 30), cfg).state;
    expect(s.existence.map((w) => w.counter)).toEqual([30]);
    // A store that holds its own changes from 30 on only (restored: b may be in its backup) must still get the delete of 20.
    expect(soleWriter(s)).toEqual({ origin: 'agent-a', minCounter: 20 });
  });
});

describe('lww', () => {
  it('concurrent writes to one field: the later tag wins; disjoint fields both apply', () => {
    const { merged, result } = fork(lww, { op: 'put', fields: { color: 'blue', x: 1 } }, { op: 'put', fields: { color: 'green', y: 2 } });
    expect(result.outcome).toBe('concurrent');
    expect(visibleFields(merged)).toEqual({ color: 'green', size: 1, x: 1, y: 2 });
    expect(merged.view.contested).toEqual(['color']);
    expect(merged.view.conflicted).toBe(false);
    expect(result.conflict?.fields[0]?.sides.map((s) => s.origin)).toEqual(['a', 'b']);
    expect(result.conflict?.needsOperator).toBe(false);
  });

  it('a causal overwrite wins even with an older clock (skewed host)', () => {
    const base = write(emptyRecord(REF), 'a', 9_000, { op: 'put', fields: { color: 'red' } }, lww);
    const later = write(base.state, 'b', 100, { op: 'put', fields: { color: 'blue' } }, lww);
    expect(visibleFields(applyChange(base.state, later.change, lww).state)).toEqual({ color: 'blue' });
    expect(applyChange(base.state, later.change, lww).outcome).toBe('fast-forward');
  });

  it('delete vs concurrent edit: the later tag decides; the losing put stays held', () => {
    const delLater = fork(lww, { op: 'put', fields: { color: 'blue' } }, { op: 'delete' }, 200, 300);
    expect(visibleFields(delLater.merged)).toBeNull();
    expect(delLater.merged.view.contestedExistence).toBe(true);
    expect(delLater.merged.fields['color']?.length).toBe(1);
    const editLater = fork(lww, { op: 'put', fields: { color: 'blue' } }, { op: 'delete' }, 400, 300);
    // the delete removed what it saw (size); the edit lives on with what it wrote
    expect(visibleFields(editLater.merged)).toEqual({ color: 'blue' });
  });

  it('duplicate and stale deliveries are no-ops', () => {
    const base = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, lww);
    const next = write(base.state, 'a', 200, { op: 'put', fields: { size: 2 } }, lww);
    const dup = applyChange(next.state, next.change, lww);
    expect(dup.outcome).toBe('duplicate');
    expect(dup.changed).toBe(false);
    const stale = applyChange(next.state, base.change, lww);
    expect(stale.outcome).toBe('stale');
    expect(stale.state).toBe(next.state);
  });

  it('out-of-order delivery from one origin still ends with every field', () => {
    const c1 = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, lww);
    const c2 = write(c1.state, 'a', 200, { op: 'put', fields: { size: 2 } }, lww);
    const s = applyChanges([c2.change, c1.change], lww, emptyRecord(REF));
    expect(visibleFields(s)).toEqual({ color: 'red', size: 2 });
  });

  it('re-creating a deleted record does not resurface fields of a losing edit', () => {
    const { merged } = fork(lww, { op: 'put', fields: { color: 'blue' } }, { op: 'delete' }, 200, 300);
    const again = write(merged, 'b', 500, { op: 'put', fields: { size: 9 } }, lww);
    expect(visibleFields(again.state)).toEqual({ size: 9 });
    expect(again.change.unset).toEqual(['color']);
  });
});

describe('merge', () => {
  const merge: StrategyConfig = { default: { strategy: 'merge', fields: { size: { rule: 'max' } } } };
  it('fields changed on one side merge; both sides go to the field rule', () => {
    const { merged } = fork(merge, { op: 'put', fields: { size: 7, x: 1 } }, { op: 'put', fields: { size: 3, color: 'green' } });
    expect(visibleFields(merged)).toEqual({ color: 'green', size: 7, x: 1 });
  });
  it('edit wins over a concurrent delete (observed-remove)', () => {
    const { merged } = fork(merge, { op: 'put', fields: { color: 'blue' } }, { op: 'delete' }, 200, 900);
    expect(visibleFields(merged)).toEqual({ color: 'blue' });
  });
});

describe('manual', () => {
  const manual: StrategyConfig = { default: 'manual' };
  it('keeps both sides, shows a provisional LWW winner, queues a conflict; an operator choice collapses it everywhere', () => {
    const { merged, result, a, b } = fork(manual, { op: 'put', fields: { color: 'blue' } }, { op: 'put', fields: { color: 'green' } });
    expect(visibleFields(merged)).toEqual({ color: 'green', size: 1 });
    expect(merged.view.conflicted).toBe(true);
    const conflict = result.conflict;
    expect(conflict?.needsOperator).toBe(true);
    expect(conflict?.fields.map((f) => [f.field, f.sides.map((s) => ('value' in s ? s.value : null))])).toEqual([['color', ['blue', 'green']]]);
    const resolution = resolveManual(merged, { take: 'a' }, manual);
    expect(resolution).toEqual({ fields: { color: 'blue' }, unset: [] });
    const r = makeResolutionChange(merged, { originSeq: 1, changeId: 'res-1', hlc: t(1000, 'server'), protocol: 1 }, manual, resolution);
    expect(r.change.vv).toEqual({ a: 2, b: 1, server: 1 });
    expect(visibleFields(r.state)).toEqual({ color: 'blue', size: 1 });
    expect(r.state.view.conflicted).toBe(false);
    expect(conflictOf(r.state, manual)).toBeUndefined();
    // Replicas that still hold only one side converge when they get the other side and the resolution, in any order.
    const onA = applyChanges([r.change, b.change], manual, a.state);
    const onB = applyChanges([r.change, a.change], manual, b.state);
    expect(same(onA, r.state)).toBe(true);
    expect(same(onB, r.state)).toBe(true);
    expect(r.change.hash).toBe(recordHash(onA));
  });
  it('taking the deleting side resolves to a delete', () => {
    const { merged } = fork(manual, { op: 'put', fields: { color: 'blue' } }, { op: 'delete' });
    expect(merged.view.conflicted).toBe(true);
    expect(resolveManual(merged, { take: 'b' }, manual)).toEqual({ deleted: true });
    expect(resolveManual(merged, { take: 'a' }, manual)).toEqual({ fields: {}, unset: [] });
  });
  it('refuses given fields that leave a contested field undecided (the record would stay conflicted with no queue item); unset decides one too', () => {
    const { merged } = fork(manual, { op: 'put', fields: { color: 'blue', mode: 'a' } }, { op: 'put', fields: { color: 'green', mode: 'b' } });
    expect(merged.view.contested).toEqual(['color', 'mode']);
    expectFleet(() => resolveManual(merged, { fields: { color: 'red' } }, manual), 'FLEET_RESOLVE_001');
    expect(() => resolveManual(merged, { fields: {} }, manual)).toThrow(/undecided: color, mode/);
    expect(resolveManual(merged, { fields: { color: 'red' }, unset: ['mode'] }, manual)).toEqual({ fields: { color: 'red' }, unset: ['mode'] });
    const r = makeResolutionChange(merged, { originSeq: 1, changeId: 'res-2', hlc: t(1000, 'server'), protocol: 1 }, manual, resolveManual(merged, { fields: { color: 'red', mode: 'c' } }, manual));
    expect(r.state.view.conflicted).toBe(false);
    expect(visibleFields(r.state)).toEqual({ color: 'red', mode: 'c', size: 1 });
  });
  it('fields the rules settle (a counter beside a manual field) need not be restated', () => {
    const mixed: StrategyConfig = { default: { strategy: 'merge', fields: { note: 'manual', hits: { rule: 'counter-sum' } } } };
    const { merged } = fork(mixed, { op: 'put', fields: { note: 'a', hits: counterAdd(undefined, 'a', 1) } }, { op: 'put', fields: { note: 'b', hits: counterAdd(undefined, 'b', 2) } });
    expect(merged.view.conflicted).toBe(true);
    expect(merged.view.contested).toEqual(['hits', 'note']);
    expect(() => resolveManual(merged, { fields: {} }, mixed)).toThrow(/undecided: note$|undecided: note \(/);
    const r = makeResolutionChange(merged, { originSeq: 1, changeId: 'res-3', hlc: t(1000, 'server'), protocol: 1 }, mixed, resolveManual(merged, { fields: { note: 'c' } }, mixed));
    expect(r.state.view.conflicted).toBe(false);
    expect(visibleFields(r.state)?.['note']).toBe('c');
  });
  it('rejects a resolution with nothing to resolve or an unknown side', () => {
    const base = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, manual);
    expectFleet(() => resolveManual(base.state, { take: 'a' }, manual), 'FLEET_RESOLVE_001');
    const { merged } = fork(manual, { op: 'put', fields: { color: 'blue' } }, { op: 'put', fields: { color: 'green' } });
    expectFleet(() => resolveManual(merged, { take: 'zed' }, manual), 'FLEET_RESOLVE_001');
  });
});

describe('custom rules', () => {
  const cfg = (rule: string, extra: Partial<StrategyConfig> = {}): StrategyConfig => ({ default: { strategy: 'custom', rule }, ...extra });
  const both = (rule: string, va: unknown, vb: unknown, extra: Partial<StrategyConfig> = {}) =>
    visibleFields(fork(cfg(rule, extra), { op: 'put', fields: { v: va as never } }, { op: 'put', fields: { v: vb as never } }).merged)?.['v'];

  it('max, min', () => {
    expect(both('max', 9, 4)).toBe(9);
    expect(both('min', 9, 4)).toBe(4);
  });
  it('set-union', () => {
    expect(both('set-union', ['x', 'y'], ['z', 'x'])).toEqual(['x', 'y', 'z']);
  });
  it('counter-sum adds concurrent increments without losing any', () => {
    const c = cfg('counter-sum');
    const base = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { hits: counterAdd(undefined, 'a', 5) } }, c);
    const cur = visibleFields(base.state)?.['hits'];
    const a = write(base.state, 'a', 200, { op: 'put', fields: { hits: counterAdd(cur, 'a', 2) } }, c);
    const b = write(base.state, 'b', 300, { op: 'put', fields: { hits: counterAdd(cur, 'b', -1) } }, c);
    const merged = applyChange(a.state, b.change, c).state;
    expect(counterValue(visibleFields(merged)?.['hits'])).toBe(6);
  });
  it('counterAdd refuses a field that is not a counter (it would drop the value) and totals past 2^53 (they would read 0)', () => {
    expectFleet(() => counterAdd(7, 'a', 1), 'FLEET_CHANGE_001');
    expectFleet(() => counterAdd('seven', 'a', 1), 'FLEET_CHANGE_001');
    expect(counterValue(counterAdd(null, 'a', 2))).toBe(2);
    const near = counterAdd(undefined, 'a', Number.MAX_SAFE_INTEGER - 1);
    expect(counterValue(counterAdd(near, 'a', 1))).toBe(Number.MAX_SAFE_INTEGER);
    expectFleet(() => counterAdd(counterAdd(near, 'a', 1), 'a', 1), 'FLEET_CHANGE_001');
    expect(counterAdd(near, 'b', 5).inc).toEqual({ a: Number.MAX_SAFE_INTEGER - 1, b: 5 }); // each origin's totals are checked on their own
  });
  it('prefer-server and prefer-origin', () => {
    const c = cfg('prefer-server');
    const base = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { v: 0 } }, c);
    const agent = write(base.state, 'a', 900, { op: 'put', fields: { v: 'agent' } }, c);
    const server = write(base.state, 'server', 200, { op: 'put', fields: { v: 'server' } }, c);
    expect(visibleFields(applyChange(agent.state, server.change, c).state)?.['v']).toBe('server');
    const o = cfg('prefer-origin');
    expect(visibleFields(applyChange(agent.state, server.change, o).state)?.['v']).toBe('agent');
  });
  it('user-registered rules', () => {
    const concat = joinRule((a, b) => [a, b].map(String).sort().join('+'));
    expect(both('cat', 'p', 'q', { rules: { cat: concat } })).toBe('p+q');
  });
  it('unknown or reserved rules fail with FLEET_STRATEGY_001', () => {
    expectFleet(() => validateStrategyConfig(cfg('nope')), 'FLEET_STRATEGY_001');
    expectFleet(() => validateStrategyConfig({ default: 'lww', rules: { max: joinRule((a) => a) } }), 'FLEET_STRATEGY_001');
    expectFleet(() => both('nope', 1, 2), 'FLEET_STRATEGY_001');
    expectFleet(() => both('boom', 1, 2, { rules: { boom: () => { throw new Error('x'); } } }), 'FLEET_STRATEGY_001');
    expect(() => { for (const c of Object.values(CONFIGS)) validateStrategyConfig(c); }).not.toThrow();
  });
});

describe('a change reusing a dot the record holds is rejected, and the fold goes on', () => {
  it('the state is returned unchanged, with the reason; the next change applies', () => {
    const first = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, lww);
    const forged = { ...first.change, changeId: 'forged-id', fields: { color: 'black' } };
    const r = applyChange(first.state, forged, lww);
    expect(r.outcome).toBe('rejected');
    expect(r.changed).toBe(false);
    expect(r.state).toBe(first.state);
    expect(r.rejection?.code).toBe('FLEET_CHANGE_002');
    expect(r.rejection?.message).toContain('forged-id');
    const next = write(r.state, 'b', 200, { op: 'put', fields: { size: 3 } }, lww);
    expect(visibleFields(next.state)).toEqual({ color: 'red', size: 3 });
  });

  it('a local write can never be rejected silently: making a change that reuses a dot throws', () => {
    const first = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, lww);
    // originSeq equal to the counter already held, on a state that holds it, with the counter advancing by originSeq
    const stale = { ...first.state, vv: {} };
    expectFleet(() => makeLocalChange(stale, { op: 'put', fields: { color: 'blue' } }, { origin: 'a', originSeq: first.change.vv.a as number, changeId: 'again', hlc: first.change.hlc, protocol: 1 }, lww), 'FLEET_CHANGE_002');
  });

  it('a merge meeting a reused dot keeps the held write and drops the other change whole, never throws', () => {
    const first = write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, lww);
    const forgedPut = applyChange(emptyRecord(REF), { ...first.change, changeId: 'forged-put', fields: { color: 'black', size: 9 } }, lww).state;
    const kept = mergeRecordStates(first.state, forgedPut, lww);
    expect(visibleFields(kept)).toEqual({ color: 'red' }); // `size`, written only by the forged change, is dropped too
    expect(same(kept, first.state)).toBe(true);
    expect(visibleFields(mergeRecordStates(forgedPut, first.state, lww))).toEqual({ color: 'black', size: 9 }); // the held one wins, whichever
    const forgedDelete = applyChange(emptyRecord(REF), forgedCopy(first.change, 'forged-delete', true), lww).state;
    const stillLive = mergeRecordStates(first.state, forgedDelete, lww);
    expect(stillLive.view.status).toBe('live');
    expect(stillLive.deletes).toEqual([]);
  });

  it.each(Object.keys(CONFIGS))('under %s, a forged copy of any change (its dot, another id and content) right after it is rejected, and merging its state into a replica changes nothing', (name) => {
    const config = CONFIGS[name] as StrategyConfig;
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.boolean(), (h, at, asDelete) => {
        const { changes } = runHistory(h, config);
        if (changes.length === 0) return;
        const i = at % changes.length;
        const forged = forgedCopy(changes[i] as Change, `forged-${i}`, asDelete);
        const withForged = [...changes.slice(0, i + 1), forged, ...changes.slice(i + 1)];
        let s = emptyRecord(REF);
        const outcomes: string[] = [];
        for (const c of withForged) {
          const r = applyChange(s, c, config);
          outcomes.push(r.outcome);
          s = r.state;
        }
        expect(outcomes[i + 1]).toBe('rejected');
        expect(outcomes.filter((o) => o === 'rejected')).toHaveLength(1);
        expect(same(s, applyChanges(changes, config, emptyRecord(REF)))).toBe(true);
        const held = applyChanges(changes.slice(0, i + 1), config, emptyRecord(REF));
        expect(same(mergeRecordStates(held, applyChange(emptyRecord(REF), forged, config).state, config), held)).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

describe('bad input is a typed error, never a crash', () => {
  const base = (): Change => write(emptyRecord(REF), 'a', 100, { op: 'put', fields: { color: 'red' } }, lww).change;
  it.each<[string, (c: Change) => unknown, string]>([
    ['another record', (c) => ({ ...c, key: 'other' }), 'FLEET_CHANGE_001'],
    ['no own vv entry', (c) => ({ ...c, vv: { b: 1 } }), 'FLEET_CHANGE_001'],
    ['negative vv', (c) => ({ ...c, vv: { a: -1 } }), 'FLEET_CHANGE_001'],
    ['bad hlc', (c) => ({ ...c, hlc: 'yesterday' }), 'FLEET_CHANGE_001'],
    ['delete with fields', (c) => ({ ...c, op: 'delete' }), 'FLEET_CHANGE_001'],
    ['bad op', (c) => ({ ...c, op: 'upsert' }), 'FLEET_CHANGE_001'],
    ['set and unset', (c) => ({ ...c, unset: ['color'] }), 'FLEET_CHANGE_001'],
    ['non-JSON value', (c) => ({ ...c, fields: { x: Number.NaN } }), 'FLEET_CHANGE_001'],
    ['fields not an object', (c) => ({ ...c, fields: null }), 'FLEET_CHANGE_001'],
  ])('%s', (_name, mutate, code) => {
    const c = base();
    const s = applyChange(emptyRecord(REF), c, lww).state;
    expectFleet(() => applyChange(s, mutate(c) as Change, lww), code);
  });
  it('corrupted stored state', () => {
    expectFleet(() => decodeRecordState('{'), 'FLEET_STATE_001');
    expectFleet(() => decodeRecordState({ format: 1 }), 'FLEET_STATE_001');
    expectFleet(() => decodeRecordState({ ...emptyRecord(REF), format: 2 }), 'FLEET_STATE_001');
  });
});
