import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import type { Fields } from './index';
import { applyDelta, canonicalJson, diffFields } from './index';

const fieldsArb: fc.Arbitrary<Fields | null> = fc.option(fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', '__proto__'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }) as fc.Arbitrary<Fields>, { nil: null });

describe('field deltas', () => {
  it('applyDelta(a, diffFields(a, b)) equals b', () => {
    fc.assert(
      fc.property(fieldsArb, fieldsArb, (a, b) => {
        const d = diffFields(a, b);
        expect(canonicalJson(applyDelta(a, d))).toBe(canonicalJson(b));
        // Minimal: a field is sent only if it is new or its value differs.
        if (a !== null) for (const k of Object.keys(d.set)) expect(!Object.hasOwn(a, k) || canonicalJson(a[k] as never) !== canonicalJson(d.set[k] as never)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
  it('sends only what changed, removed fields, and tombstones', () => {
    expect(diffFields({ a: 1, b: [1], c: 3 }, { a: 1, b: [1, 2], d: 4 })).toEqual({ set: { b: [1, 2], d: 4 }, unset: ['c'] });
    expect(diffFields({ a: 1 }, null)).toEqual({ set: {}, unset: [], deleted: true });
    expect(diffFields(null, { a: 1 })).toEqual({ set: { a: 1 }, unset: [] });
    expect(applyDelta(null, { set: { a: 1 }, unset: ['x'] })).toEqual({ a: 1 });
  });
  it.each([
    [{ set: { a: 1 }, unset: ['a'] }],
    [{ set: { a: 1 }, unset: [], deleted: true }],
    [{ set: null, unset: [] }],
  ])('rejects a malformed delta %j', (d) => {
    try {
      applyDelta({}, d as never);
      throw new Error('expected a throw');
    } catch (e) {
      expect(isFleetError(e, 'FLEET_DELTA_001')).toBe(true);
    }
  });
});
