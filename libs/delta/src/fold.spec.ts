import fc from 'fast-check';
import { applyChanges, canonicalJson, emptyRecord, mergeRecordStates } from '@fleet/sync-core';
import type { LoggedChange, StrategyConfig } from '@fleet/sync-core';
import { forgedCopy, historyArb, REF, runHistory } from '@fleet/sync-core/src/history.testkit';
import { decodePullResponse, encodeJson, fromWireRecord } from '@fleet/contracts';
import { foldDeltas, foldWire, singleChangeWire } from './fold';
import { toWireRecord } from '@fleet/contracts';
import { joinChange } from '@fleet/sync-core';

const configs: StrategyConfig[] = [{ default: 'lww' }, { default: 'merge' }, { default: 'manual' }];

describe('delta states', () => {
  it.each(configs.map((c) => [c.default, c] as const))('agent state at cursor c joined with the delta of (c, n] equals the fold of all changes <= n (%s)', (_n, config) => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.nat(), (input, a, b) => {
        const changes: LoggedChange[] = runHistory(input, config).changes.map((ch, i) => ({ ...ch, seq: i + 1 }));
        const c = a % (changes.length + 1);
        const n = c + (b % (changes.length - c + 1));
        const atCursor = c === 0 ? emptyRecord(REF) : applyChanges(changes.slice(0, c), config);
        const want = n === 0 ? emptyRecord(REF) : applyChanges(changes.slice(0, n), config);
        // through the wire: encode, decode with the contract, back to a state
        const wire = decodePullResponse(encodeJson({ protocol: 1, records: foldWire(changes.slice(c, n)), nextCursor: n, hasMore: false })).records;
        let got = atCursor;
        for (const w of wire) got = mergeRecordStates(got, fromWireRecord(w), config);
        // and a page delivered twice, or overlapping the agent's state, changes nothing
        for (const w of wire) got = mergeRecordStates(got, fromWireRecord(w), config);
        if (n > 0) expect(canonicalJson(got)).toBe(canonicalJson(want));
        else expect(got.existence).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it.each(configs.map((c) => [c.default, c] as const))('a forged copy of a change (its dot, another id) right after it: dropped whether it shares a page with it or comes later (%s)', (_n, config) => {
    fc.assert(
      fc.property(historyArb, fc.nat(), fc.nat(), fc.nat(), (input, at, a, b) => {
        const made = runHistory(input, config).changes;
        if (made.length === 0) return;
        const i = at % made.length;
        const forged = { ...forgedCopy(made[i] as LoggedChange, `forged-${i}`), seq: 0 };
        const changes: LoggedChange[] = [...made.slice(0, i + 1), forged, ...made.slice(i + 1)].map((ch, k) => ({ ...ch, seq: k + 1 }));
        const c = a % (changes.length + 1);
        const n = c + (b % (changes.length - c + 1));
        if (n === 0) return;
        const atCursor = c === 0 ? emptyRecord(REF) : applyChanges(changes.slice(0, c), config);
        const want = applyChanges(changes.slice(0, n).filter((ch) => ch.changeId !== forged.changeId), config);
        const wire = decodePullResponse(encodeJson({ protocol: 1, records: foldWire(changes.slice(c, n)), nextCursor: n, hasMore: false })).records;
        let got = atCursor;
        for (const w of wire) got = mergeRecordStates(got, fromWireRecord(w), config);
        expect(canonicalJson(got)).toBe(canonicalJson(want));
      }),
      { numRuns: 300 },
    );
  });

  it('a delta holds only the fields its changes wrote', () => {
    const changes = runHistory({ steps: [{ kind: 'write', node: 0, del: false, set: [[0, 1], [1, 2]], unset: [] }, { kind: 'write', node: 0, del: false, set: [[1, 3]], unset: [] }], skews: [0, 0, 0] }, configs[0] as StrategyConfig).changes.map((ch, i) => ({ ...ch, seq: i + 1 }));
    const [delta] = foldDeltas(changes.slice(1));
    expect(Object.keys(delta?.fields ?? {})).toEqual(['size']);
  });

  it('the direct wire form of a single change equals the wire form of its join from an empty state', () => {
    fc.assert(
      fc.property(historyArb, (input) => {
        for (const ch of runHistory(input, configs[1] as StrategyConfig).changes) {
          expect(singleChangeWire(ch)).toEqual(toWireRecord(joinChange(emptyRecord(ch), ch).state));
          expect(canonicalJson(singleChangeWire(ch))).toBe(canonicalJson(toWireRecord(joinChange(emptyRecord(ch), ch).state)));
        }
      }),
      { numRuns: 300 },
    );
  });
});
