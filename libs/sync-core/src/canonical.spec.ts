import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import { canonicalJson, contentHash, isJsonValue, jsonEquals, jsonString } from './index';

describe('canonicalJson', () => {
  it('sorts keys at every depth and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: null, y: true }], c: 'x' } })).toBe('{"a":{"c":"x","d":[1,{"y":true,"z":null}]},"b":1}');
  });
  it('does not depend on key insertion order, and round-trips through JSON.parse', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = canonicalJson(v);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        const reversed = JSON.parse(JSON.stringify(v), (_k, x: unknown) => (x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).reverse()) : x));
        expect(canonicalJson(reversed)).toBe(text);
      }),
      { numRuns: 200 },
    );
  });
  it.each([
    ['undefined', undefined],
    ['undefined field', { a: undefined }],
    ['NaN', Number.NaN],
    ['Infinity', [Infinity]],
    ['bigint', 1n],
    ['function', () => 1],
    ['Date', new Date(0)],
    ['sparse array', [1, , 3]],
  ])('rejects %s with FLEET_JSON_001', (_n, v) => {
    expect(isJsonValue(v)).toBe(false);
    try {
      canonicalJson(v);
      throw new Error('expected a throw');
    } catch (e) {
      expect(isFleetError(e, 'FLEET_JSON_001')).toBe(true);
    }
  });
  it('rejects cycles', () => {
    const o: Record<string, unknown> = {};
    o['self'] = o;
    expect(isJsonValue(o)).toBe(false);
  });
  it('a key named __proto__ is data', () => {
    const v = JSON.parse('{"__proto__":{"x":1},"a":2}') as unknown;
    expect(canonicalJson(v)).toBe('{"__proto__":{"x":1},"a":2}');
  });
});

describe('jsonString', () => {
  it('is JSON.stringify of the string, for any string', () => {
    const odd = fc.constantFrom('', '"', '\\', '\u0000', '\u001f', '\u007f', '\u2028', '\ud800', '\udc00', '\ud83d\ude00', 'a"b\\c\nd', 'é', '</script>');
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.array(odd).map((a) => a.join(''))), (s) => {
        expect(jsonString(s)).toBe(JSON.stringify(s));
      }),
      { numRuns: 2000 },
    );
  });
  it('leaves canonicalJson equal to JSON.stringify of each primitive and key, keys sorted', () => {
    const oracle = (v: unknown): string =>
      Array.isArray(v)
        ? `[${v.map(oracle).join(',')}]`
        : v !== null && typeof v === 'object'
          ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${oracle((v as Record<string, unknown>)[k])}`).join(',')}}`
          : JSON.stringify(v);
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(oracle(v));
      }),
      { numRuns: 500 },
    );
  });
});

describe('contentHash', () => {
  it('is sha256 hex of the canonical text, equal for equal content', () => {
    expect(contentHash({ a: 1, b: 2 })).toBe(contentHash({ b: 2, a: 1 }));
    expect(contentHash({})).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
    expect(contentHash({ a: 1 })).not.toBe(contentHash({ a: '1' }));
    expect(jsonEquals({ a: [1, 2] }, { a: [1, 2] })).toBe(true);
    expect(jsonEquals({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
  });
});
