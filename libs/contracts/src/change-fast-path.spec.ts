/**
 * The hand-written fast path of `decodeChange` / `decodeLoggedChange` (change.ts) against the zod
 * schemas that define them: on every input, valid or broken, the decoder must give exactly what
 * the schema alone gives (the same value with the same key order, or the same FleetError code and
 * reason). The fast path may only ever decline; it must never accept what the schema refuses.
 */
import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import { checkProtocol, decodeWith } from './codec';
import { ChangeSchema, decodeChange, decodeLoggedChange, LoggedChangeSchema } from './change';
import { MAX_FIELD_VALUE_BYTES, MAX_FIELDS_PER_CHANGE, MAX_HLC_LENGTH, MAX_JSON_DEPTH, MAX_KEY_BYTES, MAX_SCOPE_LENGTH, MAX_VV_ACTORS } from './limits';
import { changeArb, loggedChangesArb } from './testing/arbitraries';

type Outcome = { ok: string } | { code: string; message: string };

function outcome(fn: () => unknown): Outcome {
  try {
    return { ok: JSON.stringify(fn()) };
  } catch (e) {
    if (!isFleetError(e)) throw e;
    return { code: e.code, message: e.message };
  }
}

const bySchema = (input: unknown) =>
  outcome(() => {
    checkProtocol(input);
    return decodeWith(ChangeSchema, input);
  });
const loggedBySchema = (input: unknown) =>
  outcome(() => {
    checkProtocol(input);
    return decodeWith(LoggedChangeSchema, input);
  });

const KEYS = ['changeId', 'origin', 'originSeq', 'scope', 'collection', 'key', 'op', 'fields', 'unset', 'hlc', 'vv', 'hash', 'protocol', 'seq', 'extra', '__proto__'] as const;

let deep: unknown = 'x';
for (let i = 0; i <= MAX_JSON_DEPTH; i++) deep = [deep];

/** Values that break some rule somewhere, plus ordinary ones. */
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<unknown>(
    undefined, null, true, 0, -1, 1, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, '', 'put', 'delete', 'server', '__proto__',
    'a\u0000b', 'a\ud800', 'host.a', 'host.server', 'group.', 'fleet', 'site.x', 'a b', 'A'.repeat(MAX_SCOPE_LENGTH + 1),
    'k'.repeat(MAX_KEY_BYTES + 1), 'é'.repeat(Math.ceil(MAX_KEY_BYTES / 2) + 1), `001732777777777-000000-${'a'.repeat(MAX_HLC_LENGTH)}`,
    '001732777777777-000000-a', '0190a6e0-5b7e-7cc3-8a8a-0123456789ab', '0190A6E0-5B7E-7CC3-8A8A-0123456789AB', 'f'.repeat(64), 'F'.repeat(64),
    [], ['a'], ['a', 'a'], [''], ['__proto__'], [1], {}, { a: 1 }, { a: undefined }, { a: Number.NaN }, { a: new Date(0) }, { a: 'x\u0000' },
    JSON.parse('{"__proto__":1}'), JSON.parse('{"a":{"__proto__":1}}'), Object.create(null), { a: deep }, { a: 'v'.repeat(MAX_FIELD_VALUE_BYTES + 1) },
    Object.fromEntries(Array.from({ length: MAX_FIELDS_PER_CHANGE + 1 }, (_, i) => [`f${i}`, i])),
    Object.fromEntries(Array.from({ length: MAX_VV_ACTORS + 1 }, (_, i) => [`a${i}`, 1])), { 'a.b': 1 }, { a: 0 }, { a: '1' }, [1, , 3], new Map(),
    deep, [[[[[[[[1]]]]]]]],
  ) },
  { weight: 1, arbitrary: fc.anything() },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.integer() },
);

const mutation = fc.record({ key: fc.constantFrom(...KEYS), value: oddValue, remove: fc.boolean() });

function mutate(c: object, muts: readonly { key: string; value: unknown; remove: boolean }[]): Record<string, unknown> {
  const x: Record<string, unknown> = { ...c };
  for (const m of muts) {
    if (m.remove) delete x[m.key];
    else Object.defineProperty(x, m.key, { value: m.value, enumerable: true, configurable: true, writable: true });
  }
  return x;
}

describe('decodeChange fast path agrees with the schema', () => {
  it('on generated valid changes, through the wire and as built', () => {
    fc.assert(
      fc.property(changeArb, (c) => {
        const wire: unknown = JSON.parse(JSON.stringify(c));
        expect(outcome(() => decodeChange(wire))).toEqual(bySchema(wire));
        expect(outcome(() => decodeChange(c))).toEqual(bySchema(c));
      }),
      { numRuns: 300 },
    );
  });

  it('on changes with one to three fields replaced, removed or added', () => {
    fc.assert(
      fc.property(changeArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (c, muts) => {
        const x = mutate(c, muts);
        expect(outcome(() => decodeChange(x))).toEqual(bySchema(x));
      }),
      { numRuns: 4000 },
    );
  });

  it('on broken nested values: fields, unset, vv', () => {
    fc.assert(
      fc.property(changeArb, fc.constantFrom('fields', 'vv'), fc.string({ maxLength: 6 }), oddValue, fc.option(fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 })), (c, where, name, value, unset) => {
        const x: Record<string, unknown> = { ...c, [where]: { ...(c[where] as object), [name]: value } };
        if (unset !== null) x['unset'] = [...unset, ...Object.keys(c.fields).slice(0, 1)];
        expect(outcome(() => decodeChange(x))).toEqual(bySchema(x));
      }),
      { numRuns: 4000 },
    );
  });

  it('decodeLoggedChange, valid and broken', () => {
    fc.assert(
      fc.property(loggedChangesArb(3), fc.array(mutation, { maxLength: 2 }), (cs, muts) => {
        for (const c of cs) {
          const x = mutate(c, muts);
          expect(outcome(() => decodeLoggedChange(x))).toEqual(loggedBySchema(x));
        }
      }),
      { numRuns: 500 },
    );
  });
});
