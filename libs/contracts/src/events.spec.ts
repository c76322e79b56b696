import { FleetError } from '@fleet/errors';
import { encodeJson } from './codec';
import {
  chunkEvents,
  decodeAppendedRefs,
  decodeConflictsDetectedEvent,
  decodeConflictsResolvedEvent,
  decodeRecordsAppliedEvent,
  MAX_ITEMS_PER_VV_EVENT,
  type ConflictDetected,
  type RecordApplied,
} from './events';

const applied = (i: number): RecordApplied => ({ seq: i + 1, rev: i + 1, scope: 'fleet', collection: 'c', key: `k${i}`, hash: 'a'.repeat(64), status: 'live', conflicted: false, vv: { a: i + 1 } });

describe('batched events', () => {
  it('chunkEvents cuts by item count and by bytes, keeping order, and every chunk decodes', () => {
    const items = Array.from({ length: MAX_ITEMS_PER_VV_EVENT * 2 + 5 }, (_, i) => applied(i));
    const chunks = chunkEvents(items, (records) => ({ protocol: 1, records }));
    expect(chunks.map((c) => c.items.length)).toEqual([MAX_ITEMS_PER_VV_EVENT, MAX_ITEMS_PER_VV_EVENT, 5]);
    expect(chunks.flatMap((c) => decodeRecordsAppliedEvent(c.payload).records)).toEqual(items);
    const small = chunkEvents(items.slice(0, 100), (records) => ({ protocol: 1, records }), 1000, 4096);
    expect(small.every((c) => c.payload.byteLength <= 4096)).toBe(true);
    expect(small.flatMap((c) => c.items)).toEqual(items.slice(0, 100));
    expect(chunkEvents([], (records) => ({ protocol: 1, records }))).toEqual([]);
  });

  it('conflict and resolved events decode; an empty batch is refused', () => {
    const c: ConflictDetected = { conflictId: 7, conflictKey: 'b'.repeat(64), seq: 3, ref: { scope: 'fleet', collection: 'c', key: 'k' }, strategy: 'lww' };
    expect(decodeConflictsDetectedEvent(encodeJson({ protocol: 1, conflicts: [c] })).conflicts).toEqual([c]);
    const d = { conflictIds: [7], ref: c.ref, strategy: 'lww' as const, status: 'auto-resolved' as const };
    expect(decodeConflictsResolvedEvent(encodeJson({ protocol: 1, decisions: [d] })).decisions).toEqual([d]);
    expect(() => decodeConflictsDetectedEvent(encodeJson({ protocol: 1, conflicts: [] }))).toThrow(FleetError);
  });

  it('decodeAppendedRefs keeps only which records, and checks them', () => {
    const change = { seq: 4, changeId: '01a2212c-5e6d-71ba-b96a-9a6493a86271', origin: 'a', scope: 'fleet', collection: 'c', key: 'k', op: 'put', fields: {} };
    expect(decodeAppendedRefs(encodeJson({ protocol: 1, changes: [change] })).changes).toEqual([{ seq: 4, scope: 'fleet', collection: 'c', key: 'k' }]);
    expect(() => decodeAppendedRefs(encodeJson({ protocol: 1, changes: [{ ...change, key: 7 }] }))).toThrow(FleetError);
  });
});
