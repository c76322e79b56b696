import fc from 'fast-check';
import {
  DEFAULT_SCHEDULER_CONFIG as C,
  adjustInterval,
  backoffDelay,
  initialSchedulerState,
  jitteredDelay,
  scheduleNextSync,
  schedulerConfig,
  targetDelay,
} from './scheduler';
import type { RandomSource, SchedulerState } from './scheduler';

/** A seeded PRNG (mulberry32) standing in for the injected random source. */
function seeded(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const mid: RandomSource = () => 0.5;
const state = (intervalMs: number, slow = false): SchedulerState => ({ intervalMs, slow });

describe('adaptive scheduler', () => {
  it('starts at the base interval', () => {
    expect(initialSchedulerState()).toEqual({ intervalMs: 60_000, slow: false });
    expect(targetDelay(initialSchedulerState())).toBe(60_000);
  });

  it('shortens by x0.8 after changes, floored at the minimum', () => {
    expect(adjustInterval(state(60_000), { changes: 3, latencyMs: 50 }).intervalMs).toBeCloseTo(48_000);
    expect(adjustInterval(state(11_000), { changes: 1, latencyMs: 50 }).intervalMs).toBe(10_000);
  });

  it('lengthens by x1.2 when idle, capped at the maximum', () => {
    expect(adjustInterval(state(60_000), { changes: 0, latencyMs: 50 }).intervalMs).toBeCloseTo(72_000);
    expect(adjustInterval(state(3_500_000), { changes: 0, latencyMs: 50 }).intervalMs).toBe(3_600_000);
  });

  it('stretches the next delay x1.5 on a slow network, without ratcheting the stored interval', () => {
    const slow = adjustInterval(state(60_000), { changes: 0, latencyMs: 1500 });
    expect(slow).toEqual({ intervalMs: 72_000, slow: true });
    expect(targetDelay(slow)).toBeCloseTo(108_000);
    // Exactly 1000 ms is not "> 1000".
    expect(adjustInterval(state(60_000), { changes: 0, latencyMs: 1000 }).slow).toBe(false);
    // Once the link recovers, the delay falls back to the interval at once.
    const recovered = adjustInterval(slow, { changes: 0, latencyMs: 20 });
    expect(targetDelay(recovered)).toBeCloseTo(86_400);
    // The stretch is capped too.
    expect(targetDelay(state(3_000_000, true))).toBe(3_600_000);
  });

  it('schedules at now + the jittered delay', () => {
    const r = scheduleNextSync(initialSchedulerState(), { changes: 0, latencyMs: 10 }, 1_000_000, mid);
    expect(r.state.intervalMs).toBeCloseTo(72_000);
    expect(r.delayMs).toBe(72_000);
    expect(r.atMs).toBe(1_072_000);
  });

  it('jitters within +-10% of the target', () => {
    expect(jitteredDelay(state(60_000), () => 0)).toBe(54_000);
    expect(jitteredDelay(state(60_000), () => 0.999999)).toBe(66_000);
    // At a bound the window is clipped, not the value: still spread, never outside.
    expect(jitteredDelay(state(10_000), () => 0)).toBe(10_000);
    expect(jitteredDelay(state(10_000), () => 0.999999)).toBe(11_000);
    expect(jitteredDelay(state(3_600_000), () => 0)).toBe(3_240_000);
  });

  it('spreads a fleet: 1000 agents with the same history do not sync together', () => {
    const random = seeded(42);
    const delays = Array.from({ length: 1000 }, () => jitteredDelay(state(60_000), random));
    expect(new Set(delays).size).toBeGreaterThan(900);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(54_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(66_000);
    // Roughly uniform: each tenth of the window gets a share.
    const deciles = new Array<number>(10).fill(0);
    for (const d of delays) deciles[Math.min(9, Math.floor((d - 54_000) / 1200))]! += 1;
    for (const n of deciles) expect(n).toBeGreaterThan(50);
  });

  it('property: the interval and every delay stay within [min, max] whatever happens', () => {
    const outcome = fc.record({ changes: fc.nat(1000), latencyMs: fc.nat(10_000) });
    fc.assert(
      fc.property(fc.array(outcome, { maxLength: 200 }), fc.integer(), (outcomes, seed) => {
        const random = seeded(seed);
        let s = initialSchedulerState();
        let now = 0;
        for (const o of outcomes) {
          const next = scheduleNextSync(s, o, now, random);
          expect(next.state.intervalMs).toBeGreaterThanOrEqual(C.minMs);
          expect(next.state.intervalMs).toBeLessThanOrEqual(C.maxMs);
          expect(next.delayMs).toBeGreaterThanOrEqual(C.minMs);
          expect(next.delayMs).toBeLessThanOrEqual(C.maxMs);
          expect(next.atMs).toBe(now + next.delayMs);
          s = next.state;
          now = next.atMs;
        }
      }),
    );
  });

  it('is deterministic given its inputs', () => {
    const run = (): number[] => {
      const random = seeded(7);
      let s = initialSchedulerState();
      return [0, 1, 0, 0, 5].map((changes) => {
        const r = scheduleNextSync(s, { changes, latencyMs: 1200 }, 0, random);
        s = r.state;
        return r.delayMs;
      });
    };
    expect(run()).toEqual(run());
  });

  it('validates configuration and inputs', () => {
    expect(schedulerConfig()).toEqual(C);
    expect(schedulerConfig({ jitter: 0.2 }).jitter).toBe(0.2);
    expect(() => schedulerConfig({ minMs: 100, maxMs: 50 })).toThrow(expect.objectContaining({ code: 'FLEET_CONFIG_001' }));
    expect(() => schedulerConfig({ baseMs: 5 })).toThrow(expect.objectContaining({ code: 'FLEET_CONFIG_001' }));
    expect(() => schedulerConfig({ jitter: 1 })).toThrow(expect.objectContaining({ code: 'FLEET_CONFIG_001' }));
    expect(() => jitteredDelay(state(60_000), () => 1)).toThrow(expect.objectContaining({ code: 'FLEET_SCHED_001' }));
    expect(() => jitteredDelay(state(60_000), () => Number.NaN)).toThrow(expect.objectContaining({ code: 'FLEET_SCHED_001' }));
    expect(() => adjustInterval(state(60_000), { changes: -1, latencyMs: 0 })).toThrow(expect.objectContaining({ code: 'FLEET_SCHED_001' }));
  });
});

describe('backoffDelay', () => {
  const opts = { baseMs: 500, maxMs: 60_000 };

  it('doubles the window per attempt up to the cap (full jitter)', () => {
    const top: RandomSource = () => 0.999999999;
    expect(backoffDelay(0, opts, top)).toBe(499);
    expect(backoffDelay(1, opts, top)).toBe(999);
    expect(backoffDelay(3, opts, top)).toBe(3999);
    expect(backoffDelay(10, opts, top)).toBe(59_999);
    expect(backoffDelay(5000, opts, top)).toBe(59_999);
    expect(backoffDelay(3, opts, () => 0)).toBe(0);
    expect(backoffDelay(2000, { baseMs: 0, maxMs: 10 }, top)).toBe(0);
  });

  it('property: always in [0, min(max, base * 2^attempt))', () => {
    fc.assert(
      fc.property(fc.nat(2000), fc.nat(10_000), fc.nat(1_000_000), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, baseMs, maxMs, r) => {
        const d = backoffDelay(attempt, { baseMs, maxMs }, () => r);
        expect(d).toBeGreaterThanOrEqual(0);
        const cap = baseMs === 0 ? 0 : Math.min(maxMs, baseMs * 2 ** attempt);
        if (cap === 0) expect(d).toBe(0);
        else expect(d).toBeLessThan(cap);
        expect(Number.isInteger(d)).toBe(true);
      }),
    );
  });

  it('spreads retries of a fleet over the window', () => {
    const random = seeded(1);
    const delays = Array.from({ length: 1000 }, () => backoffDelay(4, opts, random));
    expect(new Set(delays).size).toBeGreaterThan(900);
    expect(Math.max(...delays)).toBeLessThan(8000);
  });

  it('rejects a negative or fractional attempt and a bad random source', () => {
    expect(() => backoffDelay(-1, opts, mid)).toThrow(expect.objectContaining({ code: 'FLEET_SCHED_001' }));
    expect(() => backoffDelay(1.5, opts, mid)).toThrow(expect.objectContaining({ code: 'FLEET_SCHED_001' }));
    expect(() => backoffDelay(1, opts, () => -0.1)).toThrow(expect.objectContaining({ code: 'FLEET_SCHED_001' }));
  });
});
