import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import type { Hlc } from './index';
import { DEFAULT_MAX_DRIFT_MS, HLC_MAX_COUNTER, decodeHlc, encodeHlc, hlcCompare, hlcInit, hlcNow, hlcReceive } from './index';

const nodeArb = fc.stringMatching(/^[a-z0-9-]{1,8}$/);
const hlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: fc.integer({ min: 0, max: 2 ** 45 }), counter: fc.integer({ min: 0, max: HLC_MAX_COUNTER }), node: nodeArb });

describe('hlc', () => {
  it('encoding sorts like hlcCompare, and decodes back', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, (a, b) => {
        const [ea, eb] = [encodeHlc(a), encodeHlc(b)];
        expect(Math.sign(ea < eb ? -1 : ea > eb ? 1 : 0)).toBe(hlcCompare(a, b));
        expect(decodeHlc(ea)).toEqual(a);
      }),
      { numRuns: 300 },
    );
  });

  type Event = { kind: 'now'; phys: number } | { kind: 'recv'; phys: number; remote: Hlc };
  const eventArb: fc.Arbitrary<Event> = fc.oneof(
    fc.record({ kind: fc.constant('now' as const), phys: fc.integer({ min: 0, max: 10_000_000 }) }),
    fc.record({ kind: fc.constant('recv' as const), phys: fc.integer({ min: 0, max: 10_000_000 }), remote: hlcArb.map((h) => ({ ...h, wallMs: h.wallMs % 20_000_000 })) }),
  );

  it('is strictly monotonic under any sequence of local and receive events (physical time may jump back)', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 60 }), fc.integer({ min: 0, max: 1_000_000 }), (events, maxDriftMs) => {
        let state = hlcInit('me');
        let prev: Hlc | undefined;
        for (const e of events) {
          const r = e.kind === 'now' ? hlcNow(state, e.phys) : hlcReceive(state, e.remote, e.phys, { maxDriftMs });
          if (prev !== undefined) expect(hlcCompare(r.ts, prev)).toBe(1);
          if (e.kind === 'recv') {
            const drifted = e.remote.wallMs > e.phys + maxDriftMs;
            expect('drifted' in r && r.drifted).toBe(drifted);
            // Causality: past what we received, unless it was beyond the drift bound.
            if (!drifted) expect(hlcCompare(r.ts, { ...e.remote, node: 'me' }) >= 0 && (r.ts.wallMs > e.remote.wallMs || r.ts.counter > e.remote.counter)).toBe(true);
            // Never dragged past now + maxDrift by a receive (beyond where we already were).
            expect(r.ts.wallMs).toBeLessThanOrEqual(Math.max(prev?.wallMs ?? 0, e.phys + maxDriftMs) + 1);
          }
          expect(r.ts.wallMs).toBeGreaterThanOrEqual(e.phys);
          prev = r.ts;
          state = r.state;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a far-future remote is flagged and caps the clock at now + maxDrift', () => {
    const year = 365 * 24 * 3600_000;
    const r = hlcReceive(hlcInit('me'), { wallMs: 1_000 + year, counter: 5, node: 'skewed' }, 1_000);
    expect(r.drifted).toBe(true);
    expect(r.ts.wallMs).toBe(1_000 + DEFAULT_MAX_DRIFT_MS);
    const ok = hlcReceive(hlcInit('me'), encodeHlc({ wallMs: 1_500, counter: 5, node: 'peer' }), 1_000);
    expect(ok).toEqual({ state: { wallMs: 1_500, counter: 6, node: 'me' }, ts: { wallMs: 1_500, counter: 6, node: 'me' }, drifted: false });
  });

  it('carries a full counter into the milliseconds', () => {
    const r = hlcNow({ wallMs: 50, counter: HLC_MAX_COUNTER, node: 'me' }, 10);
    expect(r.ts).toEqual({ wallMs: 51, counter: 0, node: 'me' });
  });

  it.each([
    ['bad string', () => decodeHlc('12-3-x')],
    ['space in node', () => hlcInit('a b')],
    ['negative time', () => hlcNow(hlcInit('a'), -1)],
    ['fractional time', () => hlcNow(hlcInit('a'), 1.5)],
    ['bad remote', () => hlcReceive(hlcInit('a'), 'nope', 1)],
  ])('%s is FLEET_CLOCK_001', (_n, fn) => {
    try {
      fn();
      throw new Error('expected a throw');
    } catch (e) {
      expect(isFleetError(e, 'FLEET_CLOCK_001')).toBe(true);
    }
  });
});
