import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { Headers } from '@fleet/contracts';
import { fitDeadLetter } from './publisher';

/** What the message takes on the wire against max_payload: its header block and its payload. */
function wireBytes(payload: Uint8Array, headers: readonly (readonly [string, string])[], msgId: string): number {
  let n = 12;
  for (const [k, v] of [...headers, ['Nats-Msg-Id', msgId] as const]) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
  return n + payload.byteLength;
}

describe('fitDeadLetter', () => {
  const headers = [
    [Headers.RejectCode, 'FLEET_DECODE_004'],
    [Headers.RejectReason, 'push of 1048000 bytes exceeds 983040'],
  ] as const;

  it('keeps a dead letter that fits whole, and unknown limits as they are', () => {
    const p = new Uint8Array(1000);
    expect(fitDeadLetter(p, headers, 'dl:X:1', 1_048_576)).toEqual({ payload: p, headers });
    expect(fitDeadLetter(new Uint8Array(2_000_000), headers, 'dl:X:1', undefined).payload.byteLength).toBe(2_000_000);
  });

  it('cuts one that would not fit under max_payload, and says how long the original was and its hash', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2048, max: 200_000 }), fc.integer({ min: -600, max: 4000 }), fc.string({ maxLength: 300 }), (max, over, reason) => {
        const payload = Uint8Array.from({ length: Math.max(0, max + over) }, (_, i) => (i * 31 + 7) % 251); // no byte repeats nearby: a prefix is recognisable
        const hs = [...headers, [Headers.RejectReason, reason]] as const;
        const out = fitDeadLetter(payload, hs, 'dl:X:9', max);
        expect(wireBytes(out.payload, out.headers, 'dl:X:9')).toBeLessThanOrEqual(max);
        const marker = out.headers.find(([k]) => k === Headers.DeadLetterTruncated)?.[1];
        if (out.payload.byteLength === payload.byteLength) expect(marker).toBeUndefined();
        else {
          expect(marker).toBe(`${payload.byteLength} sha256:${createHash('sha256').update(payload).digest('hex')}`);
          expect(Buffer.from(out.payload).equals(Buffer.from(payload.subarray(0, out.payload.byteLength)))).toBe(true); // a prefix
        }
      }),
    );
  });
});
