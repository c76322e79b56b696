import fc from 'fast-check';
import { decodeAppendedEvent, encodeJson, MAX_APPENDED_EVENT_BYTES, MAX_CHANGES_PER_APPENDED_EVENT, PROTOCOL_VERSION } from '@fleet/contracts';
import { loggedChangesArb } from '@fleet/contracts/src/testing/arbitraries';
import type { LoggedChange } from '@fleet/sync-core';
import { chunkEvents, encodeAppendedEvents } from './push-batch.processor';

describe('encodeAppendedEvents', () => {
  it('writes exactly what encodeJson writes for each chunk, and the chunks decode', () => {
    fc.assert(
      fc.property(loggedChangesArb(30), (changes) => {
        const events = encodeAppendedEvents(changes);
        expect(events.map((e) => e.changes)).toEqual(chunkEvents(changes));
        expect(events.flatMap((e) => e.changes)).toEqual(changes);
        for (const e of events) {
          expect(Buffer.from(e.payload).equals(Buffer.from(encodeJson({ protocol: PROTOCOL_VERSION, changes: e.changes })))).toBe(true);
          expect(decodeAppendedEvent(e.payload).changes).toEqual(e.changes);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('splits at the count and byte limits', () => {
    const big = 'x'.repeat(20_000);
    const mk = (seq: number, text = 'v'): LoggedChange => ({
      seq,
      changeId: `0190a6e0-5b7e-7cc3-8a8a-${String(seq).padStart(12, '0')}`,
      origin: 'a',
      originSeq: seq,
      scope: 'host.a',
      collection: 'c',
      key: 'k',
      op: 'put',
      fields: { text },
      hlc: '001732777777777-000000-a',
      vv: { a: seq },
      hash: 'f'.repeat(64),
      protocol: PROTOCOL_VERSION,
    });
    const many = Array.from({ length: MAX_CHANGES_PER_APPENDED_EVENT * 2 + 1 }, (_, i) => mk(i + 1));
    expect(encodeAppendedEvents(many).map((e) => e.changes.length)).toEqual([MAX_CHANGES_PER_APPENDED_EVENT, MAX_CHANGES_PER_APPENDED_EVENT, 1]);
    const large = Array.from({ length: 100 }, (_, i) => mk(i + 1, big));
    const events = encodeAppendedEvents(large);
    expect(events.length).toBeGreaterThan(1);
    for (const e of events) expect(e.payload.byteLength).toBeLessThanOrEqual(MAX_APPENDED_EVENT_BYTES);
  });
});
