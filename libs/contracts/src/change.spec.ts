import fc from 'fast-check';
import { isFleetError, type ErrorCode } from '@fleet/errors';
import { decodeChange, decodeLoggedChange, encodeJson, decodeJson, MAX_FIELD_VALUE_BYTES, MAX_FIELDS_PER_CHANGE, MAX_KEY_BYTES, MAX_VV_ACTORS, MAX_JSON_DEPTH, MAX_CHANGE_FIELDS_BYTES } from './index';
import { changeArb, sampleChange } from './testing/arbitraries';

function failure(fn: () => unknown): { code: ErrorCode; message: string } {
  try {
    fn();
  } catch (e) {
    if (isFleetError(e)) return { code: e.code, message: e.message };
    throw new Error(`expected a FleetError, got ${String(e)}`);
  }
  throw new Error('expected decoding to fail');
}

describe('decodeChange', () => {
  it('round-trips every generated valid change through the wire', () => {
    fc.assert(
      fc.property(changeArb, (c) => {
        expect(decodeChange(decodeJson(encodeJson(c)))).toEqual(c);
      }),
    );
  });

  it('accepts the sample', () => {
    expect(decodeChange(sampleChange())).toEqual(sampleChange());
  });

  const bad: [string, Record<string, unknown>, ErrorCode, RegExp][] = [
    ['uppercase uuid', { changeId: '0190A6E0-5B7E-7CC3-8A8A-0123456789AB' }, 'FLEET_DECODE_002', /changeId: expected a lowercase UUIDv7/],
    ['uuid v4', { changeId: '0190a6e0-5b7e-4cc3-8a8a-0123456789ab' }, 'FLEET_DECODE_002', /changeId/],
    ['origin with a dot', { origin: 'a.b' }, 'FLEET_DECODE_002', /origin: expected an origin/],
    ['originSeq 0', { originSeq: 0 }, 'FLEET_DECODE_002', /originSeq: expected a positive integer/],
    ['originSeq fractional', { originSeq: 1.5 }, 'FLEET_DECODE_002', /originSeq/],
    ['originSeq beyond 2^53', { originSeq: 2 ** 53 }, 'FLEET_DECODE_002', /originSeq/],
    ['originSeq as string', { originSeq: '7' }, 'FLEET_DECODE_002', /originSeq/],
    ['unknown scope kind', { scope: 'site.x' }, 'FLEET_DECODE_002', /scope: expected a scope/],
    ['host scope of server', { scope: 'host.server' }, 'FLEET_DECODE_002', /scope/],
    ['empty group', { scope: 'group.' }, 'FLEET_DECODE_002', /scope/],
    ['collection with space', { collection: 'a b' }, 'FLEET_DECODE_002', /collection/],
    ['empty key', { key: '' }, 'FLEET_DECODE_002', /key: key is empty/],
    ['key with NUL', { key: 'a\u0000b' }, 'FLEET_DECODE_002', /key: key contains a NUL/],
    ['key with a lone surrogate', { key: 'a\ud800' }, 'FLEET_DECODE_002', /lone UTF-16 surrogate/],
    ['op', { op: 'upsert' }, 'FLEET_DECODE_002', /op: expected "put" or "delete"/],
    ['fields array', { fields: [1] }, 'FLEET_DECODE_002', /fields: expected a JSON object/],
    ['fields null', { fields: null }, 'FLEET_DECODE_002', /fields: expected a JSON object/],
    ['delete with fields', { op: 'delete' }, 'FLEET_DECODE_002', /fields: a delete carries no fields/],
    ['delete with unset', { op: 'delete', fields: {}, unset: ['a'] }, 'FLEET_DECODE_002', /unset: a delete carries no unset list/],
    ['unset twice', { unset: ['x', 'x'] }, 'FLEET_DECODE_002', /unset\[1\]: field "x" is listed twice/],
    ['unset and written', { unset: ['version'] }, 'FLEET_DECODE_002', /both written and unset/],
    ['unset empty name', { unset: [''] }, 'FLEET_DECODE_002', /unset\[0\]: field name is empty/],
    ['field value NUL', { fields: { a: { b: ['x\u0000'] } } }, 'FLEET_DECODE_002', /fields\.a\.b\[0\]: string contains a NUL/],
    ['__proto__ field', { fields: JSON.parse('{"__proto__":{"polluted":1}}') }, 'FLEET_DECODE_002', /__proto__/],
    ['nested __proto__', { fields: JSON.parse('{"a":{"__proto__":1}}') }, 'FLEET_DECODE_002', /fields\.a\.__proto__: the key "__proto__" is not allowed/],
    ['non-finite number', { fields: { a: Infinity } }, 'FLEET_DECODE_002', /fields\.a: expected a finite number/],
    ['undefined value', { fields: { a: undefined } }, 'FLEET_DECODE_002', /fields\.a: expected a JSON value, received undefined/],
    ['Date value', { fields: { a: new Date(0) } }, 'FLEET_DECODE_002', /non-plain object/],
    ['empty hlc', { hlc: '' }, 'FLEET_DECODE_002', /hlc/],
    ['hlc with space', { hlc: '001732777777777-000000-a b' }, 'FLEET_DECODE_002', /hlc: expected an HLC timestamp/],
    ['hlc too long', { hlc: `001732777777777-000000-${'a'.repeat(200)}` }, 'FLEET_DECODE_004', /hlc: hlc is longer than 192/],
    ['vv negative', { vv: { 'agent-1': -1 } }, 'FLEET_DECODE_002', /vv\.agent-1: expected a positive integer/],
    ['vv bad actor', { vv: { 'agent-1': 1, 'a b': 1 } }, 'FLEET_DECODE_002', /vv/],
    ['vv with __proto__', { vv: JSON.parse('{"agent-1":1,"__proto__":2}') }, 'FLEET_DECODE_002', /vv\.__proto__: expected an origin/],
    ['vv array', { vv: [1] }, 'FLEET_DECODE_002', /vv: expected an object/],
    ['origin __proto__', { origin: '__proto__' }, 'FLEET_DECODE_002', /origin: expected an origin/],
    ['vv without origin', { vv: { other: 1 } }, 'FLEET_DECODE_002', /vv: has no entry for the change's origin "agent-1"/],
    ['hash uppercase', { hash: 'A'.repeat(64) }, 'FLEET_DECODE_002', /hash: expected 64 lowercase hex/],
    ['hash short', { hash: 'a'.repeat(63) }, 'FLEET_DECODE_002', /hash/],
    ['unknown key', { extra: 1 }, 'FLEET_DECODE_002', /Unrecognized key/],
    ['protocol missing', { protocol: undefined }, 'FLEET_DECODE_002', /protocol/],
    ['protocol string', { protocol: '1' }, 'FLEET_DECODE_002', /protocol: expected protocol 1 or 2/],
    ['protocol 3', { protocol: 3 }, 'FLEET_DECODE_003', /protocol is 3, this build speaks 1, 2/],
    ['protocol 0', { protocol: 0 }, 'FLEET_DECODE_003', /protocol is 0/],
    ['key too long', { key: 'é'.repeat(MAX_KEY_BYTES / 2 + 1) }, 'FLEET_DECODE_004', /key: key is 514 bytes, the limit is 512/],
    ['field value too large', { fields: { blob: 'x'.repeat(MAX_FIELD_VALUE_BYTES) } }, 'FLEET_DECODE_004', /fields\.blob: value is \d+ bytes as JSON/],
    [
      'fields too large together',
      { fields: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}`, 'x'.repeat(MAX_CHANGE_FIELDS_BYTES / 5)])) },
      'FLEET_DECODE_004',
      /fields: fields are \d+ bytes/,
    ],
    ['too many fields', { fields: Object.fromEntries(Array.from({ length: MAX_FIELDS_PER_CHANGE + 1 }, (_, i) => [`f${i}`, i])) }, 'FLEET_DECODE_004', /fields: has 257 fields/],
    ['too many actors', { vv: Object.fromEntries(Array.from({ length: MAX_VV_ACTORS + 1 }, (_, i) => [i === 0 ? 'agent-1' : `a${i}`, 1])) }, 'FLEET_DECODE_004', /vv: has 65 actors/],
    ['too deep', { fields: { a: JSON.parse('['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1)) } }, 'FLEET_DECODE_004', /nested deeper than 32/],
  ];
  it.each(bad)('rejects %s', (_name, overrides, code, reason) => {
    const input = sampleChange(overrides);
    for (const [k, v] of Object.entries(overrides)) if (v === undefined) delete input[k];
    const f = failure(() => decodeChange(input));
    expect(f.code).toBe(code);
    expect(f.message).toMatch(reason);
  });

  it.each([['null', null], ['number', 42], ['string', 'change'], ['array', [sampleChange()]], ['empty object', {}]])('rejects a %s with FLEET_DECODE_002', (_n, input) => {
    expect(failure(() => decodeChange(input)).code).toBe('FLEET_DECODE_002');
  });

  it('lists every missing field in one reason', () => {
    const f = failure(() => decodeChange({ protocol: 1 }));
    for (const k of ['changeId', 'origin', 'originSeq', 'scope', 'collection', 'key', 'op', 'hlc', 'vv', 'hash']) expect(f.message).toContain(`${k}: required`);
  });

  it('roots paths with a prefix', () => {
    expect(failure(() => decodeChange(sampleChange({ vv: { 'agent-1': 0 } }), ['changes', 3])).message).toContain('changes[3].vv.agent-1: expected a positive integer');
  });

  it('never throws anything but a FleetError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.anything(), (v) => {
        try {
          decodeChange(v);
        } catch (e) {
          expect(isFleetError(e)).toBe(true);
        }
      }),
    );
  });

  it('never throws anything but a FleetError on a mutated valid change', () => {
    fc.assert(
      fc.property(changeArb, fc.constantFrom(...Object.keys(sampleChange())), fc.anything(), (c, k, v) => {
        try {
          decodeChange({ ...c, [k]: v });
        } catch (e) {
          expect(isFleetError(e)).toBe(true);
        }
      }),
    );
  });

  it('decodes a logged change (with seq) and refuses one without', () => {
    expect(decodeLoggedChange({ ...sampleChange(), seq: 9 }).seq).toBe(9);
    expect(failure(() => decodeLoggedChange(sampleChange())).message).toMatch(/seq:/);
  });
});
