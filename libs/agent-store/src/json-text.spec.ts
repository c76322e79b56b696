/** The write path's JSON encoders are `JSON.stringify`, byte for byte, on every input. */
import fc from 'fast-check';
import { changeArb } from '@fleet/contracts/src/testing/arbitraries';
import type { Change } from '@fleet/sync-core';
import { historyArb, runHistory } from '@fleet/sync-core/src/history.testkit';
import { changeText, objectText } from './json-text';

const ORDER = ['scope', 'collection', 'key', 'changeId', 'origin', 'originSeq', 'op', 'fields', 'unset', 'hlc', 'vv', 'hash', 'protocol'] as const;

/** The same change with its keys in makeLocalChange's order (the fast path's shape). */
function inMadeOrder(c: Change): Change {
  const out: Record<string, unknown> = {};
  for (const k of ORDER) if (Object.hasOwn(c, k)) out[k] = (c as unknown as Record<string, unknown>)[k];
  return out as unknown as Change;
}

const oddValue = fc.oneof(
  fc.jsonValue(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom<unknown>(undefined, Number.NaN, -0, 1e21, 1e-7, Number.POSITIVE_INFINITY, () => 1, Symbol('s'), new Date(0), [undefined], { a: undefined }, '\u2028', '\ud800', 'a"b\\c'),
);

describe('json-text', () => {
  it('objectText is JSON.stringify for any object', () => {
    fc.assert(
      fc.property(fc.oneof(fc.dictionary(fc.string({ unit: 'binary' }), oddValue, { maxKeys: 6 }), fc.constantFrom<object>({}, [], [1, 'a'], new Date(0), { toJSON: () => 'x' }, JSON.parse('{"__proto__":1}') as object)), (o) => {
        expect(objectText(o)).toBe(JSON.stringify(o));
      }),
      { numRuns: 2000 },
    );
  });

  it('changeText is JSON.stringify for changes made by makeLocalChange, any change, and odd ones', () => {
    fc.assert(
      fc.property(historyArb, (input) => {
        for (const c of runHistory(input, { default: 'lww' }).changes) expect(changeText(c)).toBe(JSON.stringify(c));
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(changeArb, (c) => {
        expect(changeText(c)).toBe(JSON.stringify(c));
        const made = inMadeOrder(c);
        expect(changeText(made)).toBe(JSON.stringify(made));
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(changeArb, fc.constantFrom(...ORDER), oddValue, (c, k, v) => {
        const odd = { ...inMadeOrder(c), [k]: v } as unknown as Change;
        expect(changeText(odd)).toBe(JSON.stringify(odd));
      }),
      { numRuns: 1000 },
    );
  });
});
