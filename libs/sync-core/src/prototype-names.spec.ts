/**
 * User-controlled names (field names, origins, collections, rule names) that are also names of
 * Object.prototype's members must be plain data everywhere in the core: a register, a vector entry, a
 * counter total, a strategy override. Regression: `joinStates` read `a.fields[f] ?? []`, so a field named
 * `toString` present on one side only picked up Object.prototype.toString and threw a TypeError.
 *
 * The core itself also holds `__proto__` as a plain name (vectors, fields): contracts refuse it at the
 * boundary, but nothing here may depend on that.
 */
import fc from 'fast-check';
import type { Fields, JsonValue, StrategyConfig, VersionVector } from './index';
import {
  applyChanges,
  applyDelta,
  autoResolution,
  canonicalJson,
  coalesce,
  collectionStrategy,
  conflictOf,
  counterAdd,
  counterValue,
  decodeRecordState,
  diffFields,
  emptyRecord,
  encodeHlc,
  encodeRecordState,
  makeLocalChange,
  makeResolutionChange,
  mergeRecordStates,
  recordHash,
  resolveManual,
  validateStrategyConfig,
  visibleFields,
  vvCompare,
  vvCovers,
  vvDecode,
  vvDominates,
  vvEncode,
  vvGet,
  vvIncrement,
  vvMerge,
  vvNormalize,
} from './index';
import type { HistoryNames } from './history.testkit';
import { FIELDS, historyArb, NODES, REF, runHistory, same, scramble } from './history.testkit';

/** Names of Object.prototype members (and `toJSON`, which JSON.stringify looks up), plus ordinary ones. */
const PROTO_NAMES = ['toString', 'constructor', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString', '__defineGetter__', '__lookupSetter__', 'toJSON', '__proto__'] as const;

const fieldNamesArb = fc.uniqueArray(fc.constantFrom<string>(...PROTO_NAMES, 'color', 'size'), { minLength: FIELDS.length, maxLength: FIELDS.length });
const nodeNamesArb = fc.uniqueArray(fc.constantFrom<string>(...PROTO_NAMES.filter((n) => n !== 'toJSON'), 'server', 'agent-a'), { minLength: NODES.length, maxLength: NODES.length });
const namesArb: fc.Arbitrary<HistoryNames> = fc.record({ nodes: nodeNamesArb, fields: fieldNamesArb });

/** The test kit's configurations, with the per-field overrides keyed by the generated names (slot i = FIELDS[i]). */
function configsFor(names: HistoryNames): Record<string, StrategyConfig> {
  const [color, size, tags, hits, owner] = names.fields as [string, string, string, string, string];
  return {
    lww: { default: 'lww' },
    merge: { default: { strategy: 'merge' } },
    manual: { default: 'manual' },
    custom: {
      default: {
        strategy: 'custom',
        rule: 'max',
        onDelete: 'delete-wins',
        // Computed keys: `__proto__` is an own key here, as it is in a parsed JSON configuration.
        fields: { [tags]: { rule: 'set-union' }, [hits]: { rule: 'counter-sum' }, [owner]: { rule: 'prefer-server' }, [color]: { rule: 'prefer-origin' }, [size]: 'manual' },
      },
    },
  };
}

const t = (ms: number, node: string): string => encodeHlc({ wallMs: ms, counter: 0, node });

describe('prototype-ish names in the record CRDT', () => {
  const lww: StrategyConfig = { default: 'lww' };

  it.each(['toString', 'constructor', 'hasOwnProperty', 'valueOf', '__proto__'])('merging states where only one side holds field %s (regression: TypeError)', (name) => {
    const a = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { [name]: 1 } }, { origin: 'a', originSeq: 1, changeId: 'a-1', hlc: t(1, 'a'), protocol: 1 }, lww);
    const b = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { x: 2 } }, { origin: 'b', originSeq: 1, changeId: 'b-1', hlc: t(2, 'b'), protocol: 1 }, lww);
    const ab = mergeRecordStates(a.state, b.state, lww);
    const ba = mergeRecordStates(b.state, a.state, lww);
    expect(canonicalJson(ab)).toBe(canonicalJson(ba));
    expect(same(ab, applyChanges([a.change, b.change], lww, emptyRecord(REF)))).toBe(true);
    const visible = visibleFields(ab) as Fields;
    expect(Object.keys(visible).sort()).toEqual([name, 'x'].sort());
    expect(Object.hasOwn(visible, name) && visible[name]).toBe(1);
    expect(Object.getPrototypeOf(ab.fields)).toBe(Object.prototype);
    // With the empty state (an agent's first pull) too.
    expect(same(mergeRecordStates(emptyRecord(REF), a.state, lww), a.state)).toBe(true);
  });

  it('a conflict on a field named constructor: conflictOf, automatic and manual resolution', () => {
    const manual: StrategyConfig = { default: 'manual' };
    const base = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { constructor: 0 } }, { origin: 'toString', originSeq: 1, changeId: 'x-1', hlc: t(1, 'toString'), protocol: 1 }, manual);
    const a = makeLocalChange(base.state, { op: 'put', fields: { constructor: 1 } }, { origin: 'toString', originSeq: 2, changeId: 'x-2', hlc: t(2, 'toString'), protocol: 1 }, manual);
    const b = makeLocalChange(base.state, { op: 'put', fields: { constructor: 2 }, unset: [] }, { origin: 'valueOf', originSeq: 1, changeId: 'y-1', hlc: t(3, 'valueOf'), protocol: 1 }, manual);
    const merged = mergeRecordStates(a.state, b.state, manual);
    expect(merged.view.contested).toEqual(['constructor']);
    const conflict = conflictOf(merged, manual);
    expect(conflict?.fields.map((f) => [f.field, f.sides.map((s) => s.origin)])).toEqual([['constructor', ['toString', 'valueOf']]]);
    expect(conflict?.vv).toEqual({ toString: 2, valueOf: 1 });
    expect(autoResolution(merged)).toEqual({ fields: { constructor: 2 }, unset: [] });
    const take = resolveManual(merged, { take: 'toString' }, manual);
    expect(take).toEqual({ fields: { constructor: 1 }, unset: [] });
    const settled = makeResolutionChange(merged, { originSeq: 1, changeId: 's-1', hlc: t(4, 'server'), protocol: 1 }, manual, take);
    expect(settled.state.view.contested).toEqual([]);
    expect(visibleFields(settled.state)).toEqual({ constructor: 1 });
  });

  it('a stored view listing a contested field the registers lack reads no prototype member', () => {
    const s = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { x: 1 } }, { origin: 'a', originSeq: 1, changeId: 'a-1', hlc: t(1, 'a'), protocol: 1 }, lww).state;
    const stale = { ...s, view: { ...s.view, contested: ['toString'] } };
    expect(conflictOf(stale, lww)?.fields).toMatchObject([{ field: 'toString', sides: [] }]);
  });

  it('strategy overrides and collections named like prototype members', () => {
    const config: StrategyConfig = { default: 'lww', collections: { constructor: { strategy: 'manual' as const, fields: { toString: { rule: 'max' } } } } };
    validateStrategyConfig(config);
    expect(collectionStrategy(config, 'constructor').strategy).toBe('manual');
    expect(collectionStrategy(config, 'toString')).toEqual({ strategy: 'lww' });
    expect(collectionStrategy(config, 'hasOwnProperty')).toEqual({ strategy: 'lww' });
    expect(() => validateStrategyConfig({ default: { strategy: 'custom', rule: 'toString' } })).toThrow(/unknown rule toString/);
    expect(() => validateStrategyConfig({ default: { strategy: 'custom', rule: 'constructor' } })).toThrow(/unknown rule constructor/);
  });

  describe.each(['lww', 'merge', 'manual', 'custom'])('convergence with prototype-ish field names and origins under %s', (strategy) => {
    it('any permutation and duplication of delivery gives the same state, view, conflict and hash', () => {
      fc.assert(
        fc.property(historyArb, namesArb, fc.integer(), fc.integer({ min: 0, max: 6 }), (h, names, seed, dups) => {
          const config = configsFor(names)[strategy] as StrategyConfig;
          const { changes } = runHistory(h, config, names);
          const inOrder = applyChanges(changes, config, emptyRecord(REF));
          const scrambled = applyChanges(scramble(changes, seed, dups), config, emptyRecord(REF));
          expect(same(scrambled, inOrder)).toBe(true);
          expect(same(conflictOf(scrambled, config) ?? null, conflictOf(inOrder, config) ?? null)).toBe(true);
          expect(recordHash(scrambled)).toBe(recordHash(inOrder));
          expect(same(decodeRecordState(encodeRecordState(inOrder)), inOrder)).toBe(true);
        }),
        { numRuns: 120 },
      );
    });

    it('state join: commutative, associative, idempotent, equal to the union, and every node converges', () => {
      fc.assert(
        fc.property(historyArb, namesArb, fc.integer(), (h, names, seed) => {
          const config = configsFor(names)[strategy] as StrategyConfig;
          const { changes, finals } = runHistory(h, config, names);
          const all = applyChanges(changes, config, emptyRecord(REF));
          const parts = [0, 1, 2].map((i) => scramble(changes, seed + i, 0).slice(0, (seed >>> i) % (changes.length + 1)));
          const [a, b, c] = parts.map((p) => applyChanges(p, config, emptyRecord(REF))) as [typeof all, typeof all, typeof all];
          const m = (x: typeof all, y: typeof all) => mergeRecordStates(x, y, config);
          expect(same(m(a, b), m(b, a))).toBe(true);
          expect(same(m(m(a, b), c), m(a, m(b, c)))).toBe(true);
          expect(same(m(a, a), a)).toBe(true);
          expect(same(m(a, b), applyChanges([...(parts[0] ?? []), ...(parts[1] ?? [])], config, emptyRecord(REF)))).toBe(true);
          // Anti-entropy by states: the nodes' final states joined in any order are the state of all changes.
          const joined = finals.reduce((x, y) => m(x, y), emptyRecord(REF));
          expect(same(joined, all)).toBe(true);
          expect(same([...finals].reverse().reduce((x, y) => m(y, x), emptyRecord(REF)), all)).toBe(true);
        }),
        { numRuns: 100 },
      );
    });
  });

  it('coalescing a run of one origin with such field names equals applying the run', () => {
    fc.assert(
      fc.property(historyArb, namesArb, (h, names) => {
        const config: StrategyConfig = { default: 'lww' };
        const { changes } = runHistory(h, config, names);
        const origin = names.nodes[0] as string;
        const own = changes.filter((c) => c.origin === origin);
        // Only an origin's consecutive writes with nothing foreign in between form one run; coalesce must keep every field write.
        const merged = coalesce(own);
        const direct = applyChanges(own, config, emptyRecord(REF));
        const viaCoalesce = applyChanges(merged, config, emptyRecord(REF));
        expect(canonicalJson(visibleFields(viaCoalesce))).toBe(canonicalJson(visibleFields(direct)));
      }),
      { numRuns: 80 },
    );
  });

  it('field deltas with such names round-trip', () => {
    const fieldsArb = fc.option(fc.dictionary(fc.constantFrom<string>(...PROTO_NAMES, 'a'), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>, { maxKeys: 5 }) as fc.Arbitrary<Fields>, { nil: null });
    fc.assert(
      fc.property(fieldsArb, fieldsArb, (a, b) => {
        expect(canonicalJson(applyDelta(a, diffFields(a, b)))).toBe(canonicalJson(b));
      }),
    );
  });
});

describe('prototype-ish origins in vectors and counters', () => {
  const actorArb = fc.constantFrom<string>(...PROTO_NAMES, 'a', 'server');
  const vvArb: fc.Arbitrary<VersionVector> = fc
    .array(fc.tuple(actorArb, fc.integer({ min: 0, max: 4 })), { maxLength: 5 })
    .map((entries) => Object.fromEntries(entries) as VersionVector);
  const eq = (a: VersionVector, b: VersionVector): boolean => vvEncode(a) === vvEncode(b);

  it('an absent actor reads 0, whatever its name', () => {
    for (const name of PROTO_NAMES) {
      expect(vvGet({}, name)).toBe(0);
      expect(vvCovers({ a: 1 }, { actor: name, counter: 1 })).toBe(false);
      expect(vvCompare({ [name]: 1 }, {})).toBe('after');
      expect(vvCompare({}, { [name]: 1 })).toBe('before');
      const v = vvIncrement({}, name);
      expect(Object.keys(v)).toEqual([name]);
      expect(vvGet(v, name)).toBe(1);
      expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    }
  });

  it('compare is a partial order consistent with merge; encode/decode and normalize are exact', () => {
    const flip = { before: 'after', after: 'before', equal: 'equal', concurrent: 'concurrent' } as const;
    fc.assert(
      fc.property(vvArb, vvArb, vvArb, actorArb, (a, b, c, actor) => {
        expect(vvCompare(b, a)).toBe(flip[vvCompare(a, b)]);
        expect(vvCompare(a, a)).toBe('equal');
        const ab = vvMerge(a, b);
        expect(vvDominates(ab, a) && vvDominates(ab, b)).toBe(true);
        expect(eq(ab, vvMerge(b, a))).toBe(true);
        expect(eq(vvMerge(ab, c), vvMerge(a, vvMerge(b, c)))).toBe(true);
        expect(vvGet(ab, actor)).toBe(Math.max(vvGet(a, actor), vvGet(b, actor)));
        if (vvDominates(a, b) && vvDominates(b, c)) expect(vvDominates(a, c)).toBe(true);
        expect(eq(vvDecode(vvEncode(a)), a)).toBe(true);
        expect(vvEncode(vvNormalize(a))).toBe(vvEncode(a));
        const inc = vvIncrement(a, actor);
        expect(vvGet(inc, actor)).toBe(vvGet(a, actor) + 1);
        expect(vvCompare(inc, a)).toBe('after');
        // Every actor of a merged vector is an own key, never the prototype.
        expect(Object.getPrototypeOf(ab)).toBe(Object.prototype);
      }),
    );
  });

  it('counterAdd by an origin named like a prototype member adds numbers (regression: string concatenation)', () => {
    for (const origin of PROTO_NAMES) {
      let v = counterAdd(undefined, origin, 2);
      expect(v.inc[origin]).toBe(2);
      v = counterAdd(v, origin, 3);
      v = counterAdd(v, 'other', 1);
      v = counterAdd(v, origin, -4);
      expect(counterValue(v)).toBe(2);
      expect(Object.hasOwn(v.inc, origin) && Object.hasOwn(v.dec, origin)).toBe(true);
      // The stored form is JSON with the origin as a plain key.
      expect(canonicalJson(v)).toBe(canonicalJson(JSON.parse(JSON.stringify(v))));
    }
  });
});
