import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import { checkProtocol, decodeJson, decodeWith, encodeJson, formatPath, utf8ByteLength } from './index';
import { z } from 'zod';

describe('codec', () => {
  it('measures UTF-8 like TextEncoder', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => expect(utf8ByteLength(s)).toBe(new TextEncoder().encode(s).byteLength)));
  });
  it('round-trips JSON', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => expect(decodeJson(encodeJson(v))).toEqual(JSON.parse(JSON.stringify(v)))));
  });
  it('refuses to encode what has no JSON form', () => {
    expect(() => encodeJson(undefined)).toThrow(TypeError);
  });
  it('formats paths', () => {
    expect(formatPath(['changes', 3, 'vv', 'a'])).toBe('changes[3].vv.a');
    expect(formatPath(['fields', 'a b', 0])).toBe('fields["a b"][0]');
    expect(formatPath([])).toBe('(root)');
  });
  it('lists at most 16 issues and counts the rest', () => {
    try {
      decodeWith(z.array(z.string()), Array.from({ length: 20 }, (_, i) => i));
      throw new Error('expected failure');
    } catch (e) {
      if (!isFleetError(e, 'FLEET_DECODE_002')) throw e;
      expect(e.message).toContain('[15]: ');
      expect(e.message).not.toContain('[16]: ');
      expect(e.message).toContain('and 4 more');
      expect((e.details?.['issues'] as unknown[]).length).toBe(20);
    }
  });
  it('leaves a missing or non-integer protocol to the schema, rejects an unknown one', () => {
    expect(() => checkProtocol({})).not.toThrow();
    expect(() => checkProtocol({ protocol: '2' })).not.toThrow();
    expect(() => checkProtocol(null)).not.toThrow();
    expect(() => checkProtocol({ protocol: 1 })).not.toThrow();
    expect(() => checkProtocol({ protocol: 2 })).not.toThrow();
    expect(() => checkProtocol({ protocol: 3 })).toThrow(expect.objectContaining({ code: 'FLEET_DECODE_003' }));
  });
});
