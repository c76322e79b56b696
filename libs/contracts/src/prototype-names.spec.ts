/**
 * The decoders with names of Object.prototype's members. What the contracts allow:
 * - field names, unset names and nested JSON keys: anything storable but `__proto__`;
 * - origins / agent ids (so vector actors and counter totals): subject tokens but `__proto__` (`toString`,
 *   `constructor`, `hasOwnProperty`, `valueOf` are valid agent ids);
 * - collections: `[A-Za-z0-9][A-Za-z0-9_.:-]*` (`constructor` yes, `__proto__` cannot match);
 * - keys and group names: free text / subject tokens, `__proto__` included (never used as object keys).
 * Everything allowed must decode to exactly what was sent, by the fast path and the schema alike, and go
 * through the wire form of a record state unchanged.
 */
import fc from 'fast-check';
import { applyChanges, canonicalJson, emptyRecord, mergeRecordStates, recordHash } from '@fleet/sync-core';
import type { Change, Fields, JsonValue, StrategyConfig } from '@fleet/sync-core';
import { isFleetError } from '@fleet/errors';
import {
  ChangeSchema,
  ConflictResolveRequestSchema,
  decodeChange,
  decodeLoggedChange,
  decodePullResponse,
  decodeWith,
  encodeJson,
  FieldNameSchema,
  FieldsSchema,
  fromWireRecord,
  isAgentId,
  isOrigin,
  isScope,
  isValidFields,
  LoggedChangeSchema,
  PROTOCOL_VERSION,
  singleWriteState,
  toWireRecord,
  wireRecordIssues,
  wireStateText,
} from './index';
import { hashArb, hlcArb, jsonValueArb, uuidV7Arb } from './testing/arbitraries';

const PROTO = ['toString', 'constructor', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString', '__defineGetter__', '__lookupSetter__', 'toJSON'] as const;

const protoNameArb = fc.constantFrom<string>(...PROTO);
const fieldNameArb = fc.oneof(protoNameArb, fc.constantFrom('a', 'b', 'size'));
const originArb = fc.oneof({ weight: 3, arbitrary: protoNameArb }, { weight: 1, arbitrary: fc.constantFrom('server', 'agent-1') });
const fieldsArb: fc.Arbitrary<Fields> = fc.dictionary(fieldNameArb, jsonValueArb, { maxKeys: 5 });
/** A nested value whose keys are prototype-ish too. */
const nestedArb: fc.Arbitrary<JsonValue> = fc.dictionary(protoNameArb, jsonValueArb, { maxKeys: 3 });

/** Valid changes full of prototype-ish names (collections, origins, vector actors, fields, unset, keys, group names). */
const protoChangeArb: fc.Arbitrary<Change> = fc
  .record({
    changeId: uuidV7Arb,
    origin: originArb,
    originSeq: fc.integer({ min: 1, max: 1_000_000 }),
    scopeKind: fc.constantFrom('fleet', 'group', 'host'),
    group: fc.oneof(protoNameArb, fc.constant('__proto__')),
    collection: fc.oneof(protoNameArb.filter((n) => /^[A-Za-z0-9]/.test(n)), fc.constant('settings')),
    key: fc.oneof(protoNameArb, fc.constantFrom('__proto__', 'k1')),
    op: fc.constantFrom('put' as const, 'delete' as const),
    fields: fieldsArb,
    nested: fc.option(nestedArb, { nil: undefined }),
    unset: fc.uniqueArray(fieldNameArb, { maxLength: 3 }),
    hlc: hlcArb,
    others: fc.dictionary(originArb, fc.integer({ min: 1, max: 1000 }), { maxKeys: 3 }),
    own: fc.integer({ min: 1, max: 1000 }),
    hash: hashArb,
  })
  .map(({ scopeKind, group, nested, others, own, unset, fields, ...c }): Change => {
    const scope = scopeKind === 'fleet' ? 'fleet' : scopeKind === 'group' ? `group.${group}` : c.origin === 'server' ? 'fleet' : `host.${c.origin}`;
    const allFields: Fields = nested === undefined ? fields : { ...fields, valueOf: nested };
    const base = { ...c, scope, vv: { ...others, [c.origin]: own }, protocol: PROTOCOL_VERSION };
    if (c.op === 'delete') return { ...base, fields: {} };
    const u = unset.filter((n) => !Object.hasOwn(allFields, n));
    return u.length === 0 ? { ...base, fields: allFields } : { ...base, fields: allFields, unset: u };
  });

/** What arrives on the wire: JSON text parsed again (own `__proto__` keys and all). */
const viaJson = <T>(v: T): unknown => JSON.parse(JSON.stringify(v));

function expectDecodeError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(isFleetError(e, 'FLEET_DECODE_002')).toBe(true);
    expect((e as Error).message).toMatch(pattern);
    return;
  }
  throw new Error(`expected FLEET_DECODE_002 matching ${pattern}`);
}

describe('what the contracts allow as names', () => {
  it.each(PROTO)('%s is a field name, an agent id, an origin, a group name and a key', (name) => {
    expect(FieldNameSchema.safeParse(name).success).toBe(true);
    expect(isAgentId(name) && isOrigin(name)).toBe(true);
    expect(isScope(`host.${name}`) && isScope(`group.${name}`)).toBe(true);
    expect(isValidFields({ [name]: 1, nested: { [name]: [name] } })).toBe(true);
    expect(FieldsSchema.safeParse({ [name]: 1 }).success).toBe(true);
  });

  it('__proto__ is refused as a field name, unset name, nested key, origin, agent id and vector actor; allowed as a key and a group name', () => {
    expect(FieldNameSchema.safeParse('__proto__').success).toBe(false);
    expect(FieldNameSchema.safeParse('').success).toBe(false);
    expect(isOrigin('__proto__') || isAgentId('__proto__') || isScope('host.__proto__')).toBe(false);
    expect(isValidFields(JSON.parse('{"__proto__":1}'))).toBe(false);
    expect(FieldsSchema.safeParse(JSON.parse('{"a":{"b":{"__proto__":1}}}')).success).toBe(false);
    expect(isScope('group.__proto__')).toBe(true);
    const change = viaJson(applyOne({ key: '__proto__', scope: 'group.__proto__' }).change) as Change;
    expect(decodeChange(change)).toEqual(change);
  });

  it('an operator choice (manual resolution) refuses `__proto__` and empty names in unset; accepts prototype-ish ones', () => {
    const req = (choice: unknown) => ({ protocol: PROTOCOL_VERSION, id: 1, choice });
    expectDecodeError(() => decodeWith(ConflictResolveRequestSchema, req({ fields: {}, unset: ['__proto__'] })), /choice/);
    expectDecodeError(() => decodeWith(ConflictResolveRequestSchema, req({ fields: {}, unset: [''] })), /choice/);
    expect(decodeWith(ConflictResolveRequestSchema, req({ fields: { toString: 1 }, unset: ['constructor', 'valueOf'] })).choice).toEqual({ fields: { toString: 1 }, unset: ['constructor', 'valueOf'] });
    expect(decodeWith(ConflictResolveRequestSchema, req({ take: 'hasOwnProperty' })).choice).toEqual({ take: 'hasOwnProperty' });
    expectDecodeError(() => decodeWith(ConflictResolveRequestSchema, req({ take: '__proto__' })), /choice/);
  });
});

/** A change made by sync-core with the given reference (a valid one, with a real hash). */
function applyOne(over: { key?: string; scope?: string; collection?: string; origin?: string; fields?: Fields }): { change: Change } {
  const origin = over.origin ?? 'toString';
  const change: Change = {
    scope: over.scope ?? 'fleet',
    collection: over.collection ?? 'constructor',
    key: over.key ?? 'k',
    changeId: '0190a6e0-5b7e-7cc3-8a8a-0123456789ab',
    origin,
    originSeq: 1,
    op: 'put',
    fields: over.fields ?? { toString: 1, constructor: { valueOf: 2 } },
    hlc: `001767225600000-000000-${origin}`,
    vv: { [origin]: 1 },
    hash: '0'.repeat(64),
    protocol: PROTOCOL_VERSION,
  };
  return { change: { ...change, hash: recordHash(applyChanges([change], { default: 'lww' })) } };
}

describe('change decoders with prototype-ish names', () => {
  it('decode exactly what was sent, fast path and schema alike (Change and LoggedChange)', () => {
    fc.assert(
      fc.property(protoChangeArb, fc.integer({ min: 1, max: 1_000_000 }), (c, seq) => {
        const sent = viaJson(c);
        const decoded = decodeChange(sent);
        expect(canonicalJson(decoded)).toBe(canonicalJson(c));
        expect(Object.hasOwn(decoded.vv, c.origin)).toBe(true);
        const schema = ChangeSchema.safeParse(sent);
        expect(schema.success).toBe(true);
        expect(canonicalJson(schema.data)).toBe(canonicalJson(decoded));
        const logged = viaJson({ ...c, seq });
        expect(canonicalJson(decodeLoggedChange(logged))).toBe(canonicalJson({ ...c, seq }));
        expect(LoggedChangeSchema.safeParse(logged).success).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('refuse `__proto__` wherever a name becomes an object key (fast path and schema alike)', () => {
    fc.assert(
      fc.property(protoChangeArb.filter((c) => c.op === 'put'), fc.constantFrom('field', 'unset', 'nested', 'origin', 'actor'), (c, where) => {
        // Spread copies an own `__proto__` key as an own key (what JSON.parse of a hostile message yields).
        const proto = (v: unknown): object => JSON.parse(`{"__proto__":${JSON.stringify(v)}}`) as object;
        const broken: unknown =
          where === 'field'
            ? { ...c, fields: { ...proto(1), ...c.fields } }
            : where === 'unset'
              ? { ...c, unset: [...(c.unset ?? []), '__proto__'] }
              : where === 'nested'
                ? { ...c, fields: { ...c.fields, zz: proto({ polluted: 1 }) } }
                : where === 'origin'
                  ? { ...c, origin: '__proto__' }
                  : { ...c, vv: { ...proto(1), ...c.vv } };
        expect(Object.getPrototypeOf(broken)).toBe(Object.prototype);
        expectDecodeError(() => decodeChange(broken), /__proto__|origin/);
        expect(ChangeSchema.safeParse(broken).success).toBe(false);
        expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
      }),
      { numRuns: 100 },
    );
  });
});

describe('wire records with prototype-ish names', () => {
  const configs: StrategyConfig[] = [{ default: 'lww' }, { default: 'manual' }, { default: { strategy: 'custom', rule: 'max', fields: { toString: 'manual' as const, constructor: { rule: 'set-union' } } } }];

  it('a record state goes through the wire form and a pull response unchanged, and joins', () => {
    fc.assert(
      fc.property(fc.array(protoChangeArb, { minLength: 1, maxLength: 6 }), fc.constantFrom(...configs), (cs, config) => {
        // Several origins' changes to ONE record (the first one's reference), each its own dot.
        const first = cs[0] as Change;
        const changes = cs.map((c, i) => ({ ...c, scope: first.scope, collection: first.collection, key: first.key, originSeq: i + 1, vv: { ...c.vv, [c.origin]: (c.vv[c.origin] as number) + i * 1000 } }));
        let state;
        try {
          state = applyChanges(changes, config, emptyRecord(first));
        } catch {
          return; // a reused dot (FLEET_CHANGE_002): not a history
        }
        const wire = toWireRecord(state);
        const received = viaJson(wire);
        expect(wireRecordIssues(received)).toEqual([]);
        const page = decodePullResponse(encodeJson({ protocol: PROTOCOL_VERSION, records: [received], nextCursor: 1, hasMore: false }));
        const back = fromWireRecord(page.records[0] as typeof wire);
        const joined = mergeRecordStates(emptyRecord(first), back, config);
        expect(canonicalJson(joined)).toBe(canonicalJson(state));
        expect(recordHash(joined)).toBe(recordHash(state));
        // Joined into a state holding only some of the fields: the same state again.
        const part = applyChanges(changes.slice(0, 1), config, emptyRecord(first));
        expect(canonicalJson(mergeRecordStates(part, back, config))).toBe(canonicalJson(state));
        expect(canonicalJson(mergeRecordStates(back, part, config))).toBe(canonicalJson(state));
        expect(wireStateText(joined)).toBe(wireStateText(state));
        const single = singleWriteState(wire);
        if (single !== undefined) {
          expect(single.text).toBe(wireStateText(joined));
          expect(single.hash).toBe(recordHash(joined));
          expect(canonicalJson(single.fields)).toBe(canonicalJson(joined.view.fields));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('toWireRecord keeps a `__proto__` register (a sync-core state may hold one) as a field, never as a prototype', () => {
    const c = { ...applyOne({}).change, fields: JSON.parse('{"__proto__":1,"toString":2}') as Fields };
    const state = applyChanges([c], { default: 'lww' });
    const wire = toWireRecord(state);
    expect(Object.getPrototypeOf(wire.f)).toBe(Object.prototype);
    expect(Object.keys(wire.f ?? {})).toEqual(['__proto__', 'toString']);
    expect(wireStateText(state)).toContain('"__proto__":[[0,1]]');
    // The checks refuse it on the way in, as they do for changes.
    expect(wireRecordIssues(viaJson(wire)).map((i) => i.path.join('.'))).toEqual(['f.__proto__']);
    expect(singleWriteState(wire)).toBeUndefined();
    expect(Object.keys(fromWireRecord(wire).fields)).toEqual(['__proto__', 'toString']);
  });
});
