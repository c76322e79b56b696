import fc from 'fast-check';
import type { Fields, JsonValue, LocalEdit, RecordState, StrategyConfig } from './index';
import { emptyRecord, encodeHlc, foldRowEvents, makeLocalChange, rowEdit, visibleFields, type RowEvent } from './index';

const ROW_KEYS = ['a', 'b', 'c', 'd'] as const;
/** Fields only an agent writes: a row image never holds them. */
const AGENT_KEYS = ['x', 'y'] as const;
const valueArb: fc.Arbitrary<JsonValue> = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom('s', 't'), fc.constant(null), fc.constant([1, { n: 2 }]));
const imageArb: fc.Arbitrary<Fields> = fc.dictionary(fc.constantFrom(...ROW_KEYS), valueArb, { maxKeys: 4 });
const maybeImageArb = fc.option(imageArb, { nil: null });
const agentFieldsArb: fc.Arbitrary<Fields> = fc.dictionary(fc.constantFrom(...AGENT_KEYS), valueArb, { maxKeys: 2 });

const CONFIG: StrategyConfig = { default: 'lww' };
const REF = { scope: 'fleet', collection: 'config', key: 'k' };

let changes = 0;

/** sync-core's record after `edits` in turn (each a server change ticking its own counter). */
function write(state: RecordState, edits: readonly LocalEdit[]): RecordState {
  let s = state;
  edits.forEach((edit, i) => {
    const meta = { origin: 'server', originSeq: 1000 + i, changeId: `c${++changes}`, hlc: encodeHlc({ wallMs: 1_000_000 + i, counter: 0, node: 'server' }), protocol: 1 };
    s = makeLocalChange(s, edit, meta, CONFIG, 'tick').state;
  });
  return s;
}

/** A record that holds the row image `before` (if any) and some fields of its own. */
function recordWith(before: Fields | null, own: Fields): RecordState {
  const agent = makeLocalChange(emptyRecord(REF), { op: 'put', fields: own }, { origin: 'agent-a', originSeq: 1, changeId: 'own', hlc: encodeHlc({ wallMs: 500_000, counter: 0, node: 'agent-a' }), protocol: 1 }, CONFIG).state;
  return before === null ? agent : write(agent, [{ op: 'put', fields: before }]);
}

describe('rowEdit', () => {
  it('takes the record from the row image before to the row image after, and leaves fields the row never held alone', () => {
    fc.assert(
      fc.property(maybeImageArb, maybeImageArb, agentFieldsArb, (before, after, own) => {
        const edit = rowEdit(before, after);
        const state = recordWith(before, own);
        const next = edit === null ? state : write(state, [edit]);
        if (after === null) {
          // A deleted row deletes the record; no row before or after touches nothing.
          expect(visibleFields(next)).toEqual(before === null ? visibleFields(state) : null);
        } else {
          expect(visibleFields(next)).toEqual({ ...own, ...after });
        }
      }),
    );
  });

  it('writes only what changed: nothing for an unchanged row, no field whose value is equal', () => {
    fc.assert(
      fc.property(imageArb, imageArb, (before, after) => {
        const edit = rowEdit(before, after);
        if (edit === null) {
          expect(after).toEqual(before);
          return;
        }
        expect(edit.op).toBe('put');
        if (edit.op !== 'put') return;
        for (const [k, v] of Object.entries(edit.fields ?? {})) expect(Object.hasOwn(before, k) && JSON.stringify(before[k]) === JSON.stringify(v)).toBe(false);
        for (const k of edit.unset ?? []) expect(Object.hasOwn(after, k)).toBe(false);
      }),
    );
    expect(rowEdit({ a: 1 }, { a: 1 })).toBeNull();
    expect(rowEdit(null, null)).toBeNull();
    expect(rowEdit(null, {})).toEqual({ op: 'put', fields: {} });
    expect(rowEdit({ a: { p: 1, q: 2 } }, { a: { q: 2, p: 1 } })).toBeNull(); // key order is not a change
  });
});

describe('foldRowEvents', () => {
  /** A consistent history of one transaction: each event starts from the row image the previous one left. */
  const historyArb = fc
    .array(fc.tuple(fc.constantFrom('r1', 'r2', 'r3'), maybeImageArb), { minLength: 1, maxLength: 12 })
    .chain((steps) => fc.record({ start: fc.dictionary(fc.constantFrom('r1', 'r2', 'r3'), maybeImageArb), steps: fc.constant(steps) }))
    .map(({ start, steps }) => {
      const current = new Map<string, Fields | null>(['r1', 'r2', 'r3'].map((r) => [r, start[r] ?? null]));
      const events: RowEvent<string>[] = steps.map(([ref, after]) => {
        const before = current.get(ref) ?? null;
        current.set(ref, after);
        return { ref, before, after };
      });
      return { events, end: current, start: new Map(['r1', 'r2', 'r3'].map((r) => [r, start[r] ?? null])) };
    });

  it('keeps per record the image before its first event and after its last, in first-appearance order', () => {
    fc.assert(
      fc.property(historyArb, ({ events, start, end }) => {
        const folded = foldRowEvents(events, (r) => r);
        expect(folded.map((e) => e.ref)).toEqual([...new Set(events.map((e) => e.ref))]);
        for (const e of folded) {
          expect(e.before).toEqual(start.get(e.ref));
          expect(e.after).toEqual(end.get(e.ref));
        }
      }),
    );
  });

  it('the folded edit gives the row fields the events leave, as the events one by one do', () => {
    fc.assert(
      fc.property(historyArb, agentFieldsArb, ({ events, start, end }, own) => {
        for (const e of foldRowEvents(events, (r) => r)) {
          const base = recordWith(start.get(e.ref) ?? null, own);
          const edit = rowEdit(e.before, e.after);
          const folded = edit === null ? base : write(base, [edit]);
          const oneByOne = write(base, events.filter((x) => x.ref === e.ref).flatMap((x) => { const ed = rowEdit(x.before, x.after); return ed === null ? [] : [ed]; }));
          const after = end.get(e.ref) ?? null;
          const rowPart = (s: RecordState): Fields | null => {
            const v = visibleFields(s);
            return v === null ? null : Object.fromEntries(Object.entries(v).filter(([k]) => (ROW_KEYS as readonly string[]).includes(k)));
          };
          // The row's own fields end the same either way (a deleted and re-inserted row may keep the agent's fields when folded).
          if (after === null) {
            if (e.before !== null) expect(visibleFields(folded)).toBeNull();
          } else {
            expect(rowPart(folded)).toEqual(after);
            expect(rowPart(oneByOne)).toEqual(after);
          }
        }
      }),
    );
  });
});
