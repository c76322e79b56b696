import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import type { Change, RecordState, StrategyConfig } from './index';
import { applyChange, applyChanges, coalesce, counterAdd, emptyRecord, encodeHlc, makeLocalChange } from './index';
import { FIELDS, historyArb, NODES, REF, runHistory, same } from './history.testkit';

const CONFIGS: Record<string, StrategyConfig> = {
  lww: { default: 'lww' },
  merge: { default: { strategy: 'merge' } },
  manual: { default: 'manual' },
  custom: { default: { strategy: 'custom', rule: 'max', fields: { tags: { rule: 'set-union' }, hits: { rule: 'counter-sum' } } } },
};

type Edit = { del: boolean; set: [number, number][]; unset: number[] };
const editArb: fc.Arbitrary<Edit> = fc.record({
  del: fc.constant(false),
  set: fc.array(fc.tuple(fc.integer({ min: 0, max: FIELDS.length - 1 }), fc.integer({ min: 0, max: 4 })), { maxLength: 3 }),
  unset: fc.array(fc.integer({ min: 0, max: FIELDS.length - 1 }), { maxLength: 2 }),
});

/** `agent-a` makes `edits` locally from `base` without receiving anything: an unsent outbox run. */
function makeRun(base: RecordState, edits: readonly Edit[], config: StrategyConfig, seq0: number): Change[] {
  let state = base;
  const out: Change[] = [];
  edits.forEach((e, i) => {
    const set = Object.fromEntries(e.set.map(([f, n]) => {
      const name = FIELDS[f] as string;
      return [name, name === 'hits' ? counterAdd(state.view.fields[name], 'agent-a', n) : name === 'tags' ? [`t${n}`] : n];
    }));
    const unset = [...new Set(e.unset.map((f) => FIELDS[f] as string))].filter((f) => !(f in set));
    const seq = seq0 + 1 + i * 2; // gaps: the origin's other records take sequence numbers too
    const r = makeLocalChange(state, e.del ? { op: 'delete' } : { op: 'put', fields: set, unset }, { origin: 'agent-a', originSeq: seq, changeId: `run-${seq}`, hlc: encodeHlc({ wallMs: 9_000_000 + i, counter: 0, node: 'agent-a' }), protocol: 1 }, config);
    state = r.state;
    out.push(r.change);
  });
  return out;
}

/** The state without write stamps: what coalescing must preserve (it re-stamps by design). */
function shape(s: RecordState): unknown {
  const strip = (ws: readonly { origin: string }[]) => ws.map(({ origin, ...rest }) => ({ origin, v: 'value' in rest ? rest.value : 'removed' in rest ? '<removed>' : (rest as { alive: boolean }).alive })).sort((x, y) => (JSON.stringify(x) < JSON.stringify(y) ? -1 : 1));
  return { vv: s.vv, deletes: s.deletes, existence: strip(s.existence), fields: Object.fromEntries(Object.entries(s.fields).map(([f, ws]) => [f, strip(ws)])), view: s.view };
}

describe.each(Object.keys(CONFIGS))('coalesce under %s', (name) => {
  const config = CONFIGS[name] as StrategyConfig;
  it('applying the coalesced changes to any state that has not seen the run equals applying the run', () => {
    fc.assert(
      fc.property(historyArb, fc.array(fc.tuple(fc.boolean(), editArb), { minLength: 1, maxLength: 6 }), (h, raw) => {
        const edits = raw.map(([d, e]) => ({ ...e, del: d && e.set.length === 0 }));
        const { changes, finals } = runHistory(h, config);
        const aBase = finals[0] as RecordState;
        const run = makeRun(aBase, edits, config, 1000);
        const squashed = coalesce(run);
        expect(squashed.length).toBeLessThanOrEqual(2);
        expect(squashed[squashed.length - 1]?.changeId).toBe(run[run.length - 1]?.changeId);
        const targets = [aBase, ...finals.slice(1), applyChanges(changes, config, emptyRecord(REF)), emptyRecord(REF)];
        for (const s of targets) {
          const viaRun = applyChanges(run, config, s);
          const viaSquash = applyChanges(squashed, config, s);
          expect(same(shape(viaSquash), shape(viaRun))).toBe(true);
        }
        // The origin re-applies the squash to its own state: it only re-stamps, so its view does not move.
        const own = applyChanges(run, config, aBase);
        expect(same(applyChanges(squashed, config, own).view, own.view)).toBe(true);
      }),
      { numRuns: 80 },
    );
  });
});

describe('coalesce examples', () => {
  const lww: StrategyConfig = { default: 'lww' };
  const mk = (edits: Edit[]) => makeRun(emptyRecord(REF), edits, lww, 0);
  it('later unset removes an earlier set and vice versa; the last change keeps its identity', () => {
    const run = mk([
      { del: false, set: [[0, 1], [1, 1]], unset: [] },
      { del: false, set: [], unset: [0] },
      { del: false, set: [[2, 3]], unset: [1] },
      { del: false, set: [[1, 2]], unset: [] },
    ]);
    const [c, ...rest] = coalesce(run);
    expect(rest).toEqual([]);
    expect(c?.fields).toEqual({ size: 2, tags: ['t3'] });
    expect(c?.unset).toEqual(['color']);
    const last = run[3] as Change;
    expect([c?.changeId, c?.originSeq, c?.hlc, c?.vv, c?.hash]).toEqual([last.changeId, last.originSeq, last.hlc, last.vv, last.hash]);
  });
  it('put then delete is the delete; delete then put is [delete, put]', () => {
    const putDel = mk([{ del: false, set: [[0, 1]], unset: [] }, { del: true, set: [], unset: [] }]);
    expect(coalesce(putDel)).toEqual([putDel[1]]);
    const delPut = mk([{ del: false, set: [[0, 1]], unset: [] }, { del: true, set: [], unset: [] }, { del: false, set: [[1, 1]], unset: [] }, { del: false, set: [[2, 1]], unset: [] }]);
    const out = coalesce(delPut);
    expect(out.map((c) => c.op)).toEqual(['delete', 'put']);
    expect(out[1]?.fields).toEqual({ size: 1, tags: ['t1'] });
  });
  it('does not merge across a change received from another origin', () => {
    const a1 = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { color: 'a' } }, { origin: 'agent-a', originSeq: 1, changeId: 'a1', hlc: encodeHlc({ wallMs: 1, counter: 0, node: 'agent-a' }), protocol: 1 }, lww);
    const b1 = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { color: 'b' } }, { origin: 'agent-b', originSeq: 1, changeId: 'b1', hlc: encodeHlc({ wallMs: 5, counter: 0, node: 'agent-b' }), protocol: 1 }, lww);
    const received = applyChange(a1.state, b1.change, lww).state;
    const a2 = makeLocalChange(received, { op: 'put', fields: { size: 1 } }, { origin: 'agent-a', originSeq: 2, changeId: 'a2', hlc: encodeHlc({ wallMs: 9, counter: 0, node: 'agent-a' }), protocol: 1 }, lww);
    expect(coalesce([a1.change, a2.change])).toEqual([a1.change, a2.change]);
  });
  it.each<[string, (run: Change[]) => Change[]]>([
    ['different origins', (r) => [r[0] as Change, { ...(r[1] as Change), origin: NODES[1] }]],
    ['different records', (r) => [r[0] as Change, { ...(r[1] as Change), key: 'other' }]],
    ['out of order', (r) => [r[1] as Change, r[0] as Change]],
  ])('rejects %s with FLEET_CHANGE_003', (_n, mutate) => {
    const run = mk([{ del: false, set: [[0, 1]], unset: [] }, { del: false, set: [[1, 1]], unset: [] }]);
    try {
      coalesce(mutate(run));
      throw new Error('expected a throw');
    } catch (e) {
      expect(isFleetError(e, 'FLEET_CHANGE_003')).toBe(true);
    }
  });
});
