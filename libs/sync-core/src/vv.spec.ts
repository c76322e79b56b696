import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import type { VersionVector } from './index';
import { vvCompare, vvCovers, vvDecode, vvDominates, vvEncode, vvIncrement, vvMerge, vvNormalize } from './index';

const vvArb: fc.Arbitrary<VersionVector> = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'server'), fc.integer({ min: 0, max: 4 }), { maxKeys: 4 });
const eq = (a: VersionVector, b: VersionVector): boolean => vvEncode(a) === vvEncode(b);

describe('version vectors', () => {
  it('compare: each outcome (missing entries are 0)', () => {
    expect(vvCompare({ a: 1 }, { a: 2 })).toBe('before');
    expect(vvCompare({ a: 2, b: 1 }, { a: 2 })).toBe('after');
    expect(vvCompare({ a: 1, b: 0 }, { a: 1 })).toBe('equal');
    expect(vvCompare({}, {})).toBe('equal');
    expect(vvCompare({ a: 2 }, { b: 1 })).toBe('concurrent');
    expect(vvCompare({ a: 2, b: 1 }, { a: 1, b: 2 })).toBe('concurrent');
  });
  it('increment, covers, dominates', () => {
    const v = vvIncrement(vvIncrement({}, 'a'), 'b');
    expect(v).toEqual({ a: 1, b: 1 });
    expect(vvCovers(v, { actor: 'a', counter: 1 })).toBe(true);
    expect(vvCovers(v, { actor: 'a', counter: 2 })).toBe(false);
    expect(vvCovers(v, { actor: 'z', counter: 1 })).toBe(false);
    expect(vvDominates(v, { a: 1 })).toBe(true);
    expect(vvDominates(v, v)).toBe(true);
    expect(vvDominates({ a: 1 }, v)).toBe(false);
  });
  it('canonical encoding sorts and drops zeros', () => {
    expect(vvEncode({ b: 2, a: 1, c: 0 })).toBe('{"a":1,"b":2}');
    expect(vvDecode('{"b":2,"a":1,"c":0}')).toEqual({ a: 1, b: 2 });
  });
  it('compare is antisymmetric and a partial order consistent with merge', () => {
    const flip = { before: 'after', after: 'before', equal: 'equal', concurrent: 'concurrent' } as const;
    fc.assert(
      fc.property(vvArb, vvArb, vvArb, (a, b, c) => {
        expect(vvCompare(b, a)).toBe(flip[vvCompare(a, b)]);
        expect(vvCompare(a, a)).toBe('equal');
        expect(vvDominates(vvMerge(a, b), a)).toBe(true);
        expect(vvDominates(vvMerge(a, b), b)).toBe(true);
        if (vvDominates(a, b) && vvDominates(b, c)) expect(vvDominates(a, c)).toBe(true);
        // merge is the least upper bound
        if (vvDominates(c, a) && vvDominates(c, b)) expect(vvDominates(c, vvMerge(a, b))).toBe(true);
        expect(vvCompare(vvIncrement(a, 'a'), a)).toBe('after');
      }),
      { numRuns: 300 },
    );
  });
  it('merge is commutative, associative, idempotent', () => {
    fc.assert(
      fc.property(vvArb, vvArb, vvArb, (a, b, c) => {
        expect(eq(vvMerge(a, b), vvMerge(b, a))).toBe(true);
        expect(eq(vvMerge(vvMerge(a, b), c), vvMerge(a, vvMerge(b, c)))).toBe(true);
        expect(eq(vvMerge(a, a), vvNormalize(a))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
  it.each([['{"a":-1}'], ['{"a":1.5}'], ['{"":1}'], ['[1]'], ['nope']])('rejects %s with FLEET_VV_001', (text) => {
    try {
      vvDecode(text);
      throw new Error('expected a throw');
    } catch (e) {
      expect(isFleetError(e, 'FLEET_VV_001')).toBe(true);
    }
  });
});
