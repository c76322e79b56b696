/**
 * The stored form of a record state: the direct encoder of the write path (`encodeStoredState`) is byte
 * for byte the generic one (`toWireRecord` without the reference), and decodes back to the same state.
 */
import fc from 'fast-check';
import { applyChange, emptyRecord, encodeRecordState, makeLocalChange } from '@fleet/sync-core';
import type { RecordState, StrategyConfig } from '@fleet/sync-core';
import { historyArb, REF, runHistory } from '@fleet/sync-core/src/history.testkit';
import { decodeStoredState, encodeStoredState, encodeStoredStateGeneric } from './stored-state';

const CONFIGS: StrategyConfig[] = [
  { default: 'lww' },
  { default: { strategy: 'merge' } },
  { default: 'manual' },
  { default: { strategy: 'custom', rule: 'max', onDelete: 'delete-wins', fields: { tags: { rule: 'set-union' }, hits: { rule: 'counter-sum' } } } },
];

function check(state: RecordState, config: StrategyConfig): void {
  if (state.existence.length === 0) return; // never written: the store holds no row for it
  const text = encodeStoredState(state);
  expect(text).toBe(encodeStoredStateGeneric(state));
  expect(encodeRecordState(decodeStoredState(state.ref, text, config))).toBe(encodeRecordState(state));
}

describe('encodeStoredState', () => {
  it('is the generic encoding, for every state of generated histories (and decodes back)', () => {
    fc.assert(
      fc.property(historyArb, fc.constantFrom(...CONFIGS), (input, config) => {
        const { changes, finals } = runHistory(input, config);
        for (const s of finals) check(s, config);
        // Every intermediate state of one replica receiving all changes in order.
        let s = emptyRecord(REF);
        for (const c of changes) {
          s = applyChange(s, c, config).state;
          check(s, config);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('falls back to the generic path for records with many distinct stamps', () => {
    const config: StrategyConfig = { default: 'lww' };
    let s = emptyRecord(REF);
    for (let i = 0; i < 20; i++) {
      const origin = `agent-${String(i).padStart(2, '0')}`;
      // Each origin writes from the empty record: 20 concurrent writes, all kept.
      const made = makeLocalChange(emptyRecord(REF), { op: 'put', fields: { [`f${i % 3}`]: i, common: origin } }, {
        origin,
        originSeq: 1,
        changeId: `0190a000-0000-7000-8000-${String(i).padStart(12, '0')}`,
        hlc: `00170000000${String(1000 + i)}-000000-${origin}`,
        protocol: 1,
      }, config);
      s = applyChange(s, made.change, config).state;
    }
    expect(s.existence.length).toBe(20);
    check(s, config);
  });
});
