import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import { currentPushReport, fleetHealth, serverSyncHealth, serverSyncHealthInput, statusRank, syncHealthScore, worstAgents } from './health-score';
import type { HealthStatus, PushReport, SyncHealthInput } from './health-score';

const perfect: SyncHealthInput = { syncLagSeconds: 0, pendingOperations: 0, failedOperations: 0, conflictRate: 0, consistencyViolations: 0 };

const input = fc.record({
  syncLagSeconds: fc.oneof(fc.double({ min: 0, max: 1e7, noNaN: true }), fc.constant(Number.POSITIVE_INFINITY)),
  pushLagSeconds: fc.double({ min: 0, max: 1e7, noNaN: true }),
  pendingOperations: fc.nat({ max: 1_000_000 }),
  failedOperations: fc.nat({ max: 1000 }),
  conflictRate: fc.double({ min: 0, max: 1, noNaN: true }),
  consistencyViolations: fc.nat({ max: 100 }),
});

/** An input at least as bad as `a` in every signal. */
const worsePair = input.chain((a) =>
  fc
    .record({
      syncLagSeconds: fc.double({ min: 0, max: 1e6, noNaN: true }),
      pushLagSeconds: fc.double({ min: 0, max: 1e6, noNaN: true }),
      pendingOperations: fc.nat({ max: 100_000 }),
      failedOperations: fc.nat({ max: 100 }),
      conflictRate: fc.double({ min: 0, max: 1, noNaN: true }),
      consistencyViolations: fc.nat({ max: 20 }),
    })
    .map((d) => {
      const b: SyncHealthInput = {
        syncLagSeconds: a.syncLagSeconds + d.syncLagSeconds,
        pushLagSeconds: a.pushLagSeconds + d.pushLagSeconds,
        pendingOperations: a.pendingOperations + d.pendingOperations,
        failedOperations: a.failedOperations + d.failedOperations,
        conflictRate: a.conflictRate + d.conflictRate,
        consistencyViolations: a.consistencyViolations + d.consistencyViolations,
      };
      return [a, b] as const;
    }),
);

describe('syncHealthScore', () => {
  it('gives 100 and healthy with no reasons to a perfect agent', () => {
    expect(syncHealthScore(perfect)).toEqual({ score: 100, status: 'healthy', reasons: [] });
  });

  it('charges nothing at the targets', () => {
    expect(syncHealthScore({ syncLagSeconds: 300, pendingOperations: 100, failedOperations: 0, conflictRate: 0.01, consistencyViolations: 0 }).score).toBe(100);
  });

  it('charges each full weight at the limits, to 0', () => {
    const r = syncHealthScore({ syncLagSeconds: 86_400, pendingOperations: 10_000, failedOperations: 20, conflictRate: 0.2, consistencyViolations: 10 });
    expect(r.score).toBe(0);
    expect(r.status).toBe('unhealthy');
    expect(r.reasons.length).toBeGreaterThanOrEqual(5);
  });

  it('weighs lag: 30 points at a day, half of it at the midpoint', () => {
    expect(syncHealthScore({ ...perfect, syncLagSeconds: 86_400 }).score).toBe(70);
    expect(syncHealthScore({ ...perfect, syncLagSeconds: 300 + (86_400 - 300) / 2 }).score).toBe(85);
  });

  it('makes an agent unhealthy after a day without sync, even with a good score', () => {
    const r = syncHealthScore({ ...perfect, syncLagSeconds: 86_400 });
    expect(r.status).toBe('unhealthy');
    expect(r.reasons.join('\n')).toMatch(/24h/);
    expect(syncHealthScore({ ...perfect, syncLagSeconds: Number.POSITIVE_INFINITY }).status).toBe('unhealthy');
  });

  it('caps at degraded on the first consistency violation, and charges 10 at once', () => {
    const r = syncHealthScore({ ...perfect, consistencyViolations: 1 });
    expect(r.score).toBe(89);
    expect(r.status).toBe('degraded');
  });

  it('takes the worse lag of the two directions, names the push side when it is the one behind, and makes a day of it unhealthy', () => {
    expect(syncHealthScore({ ...perfect, pushLagSeconds: 300 })).toEqual({ score: 100, status: 'healthy', reasons: [] });
    const pushBehind = syncHealthScore({ ...perfect, syncLagSeconds: 60, pushLagSeconds: 300 + (86_400 - 300) / 2 });
    expect(pushBehind.score).toBe(85);
    expect(pushBehind.reasons).toEqual([expect.stringMatching(/^oldest unsent change waiting 43350s, over the 300s target \(-15\)$/)]);
    // The same lag in the pull direction scores the same and says so.
    expect(syncHealthScore({ ...perfect, syncLagSeconds: 43_350, pushLagSeconds: 60 })).toMatchObject({ score: 85, reasons: [expect.stringMatching(/^sync lag 43350s/)] });
    const day = syncHealthScore({ ...perfect, pushLagSeconds: 2 * 86_400 });
    expect(day).toMatchObject({ score: 70, status: 'unhealthy' });
    expect(day.reasons).toContain('oldest unsent change waiting 172800s (>= 24h): unhealthy');
  });

  it('charges failed pushes in a row, and makes 20 of them degraded at least (a broken push path)', () => {
    const few = syncHealthScore({ ...perfect, failedOperations: 4 });
    expect(few).toEqual({ score: 97, status: 'healthy', reasons: ['4 failed pushes in a row (-3)'] });
    const broken = syncHealthScore({ ...perfect, failedOperations: 20 });
    expect(broken).toMatchObject({ score: 85, status: 'degraded' });
    expect(broken.reasons).toEqual(['20 failed pushes in a row (-15)', '20 failed pushes in a row (>= 20): degraded at least']);
  });

  it('lists the worst signal first', () => {
    const r = syncHealthScore({ ...perfect, pendingOperations: 10_000, failedOperations: 1 });
    expect(r.reasons[0]).toMatch(/pending/);
    expect(r.reasons[1]).toMatch(/failed/);
  });

  it('refuses NaN and negative inputs with FLEET_OBS_001', () => {
    for (const bad of [{ ...perfect, conflictRate: Number.NaN }, { ...perfect, pendingOperations: -1 }, { ...perfect, pushLagSeconds: Number.NaN }, { ...perfect, pushLagSeconds: -1 }]) {
      let caught: unknown;
      try {
        syncHealthScore(bad);
      } catch (e) {
        caught = e;
      }
      expect(isFleetError(caught, 'FLEET_OBS_001')).toBe(true);
    }
  });

  it('property: the score is an integer within 0..100 and the status agrees with it', () => {
    fc.assert(
      fc.property(input, (i) => {
        const r = syncHealthScore(i);
        expect(Number.isInteger(r.score)).toBe(true);
        expect(r.score).toBeGreaterThanOrEqual(0);
        expect(r.score).toBeLessThanOrEqual(100);
        if (r.score < 50) expect(r.status).toBe('unhealthy');
        if (r.status === 'healthy') expect(r.score).toBeGreaterThanOrEqual(80);
        expect(r.reasons.length === 0).toBe(r.score === 100 && r.status === 'healthy');
      }),
    );
  });

  it('property: monotone, a worse input never gives a better score or status', () => {
    fc.assert(
      fc.property(worsePair, ([a, b]) => {
        const ra = syncHealthScore(a);
        const rb = syncHealthScore(b);
        expect(rb.score).toBeLessThanOrEqual(ra.score);
        expect(statusRank(rb.status)).toBeGreaterThanOrEqual(statusRank(ra.status));
      }),
    );
  });
});

const status = fc.constantFrom<HealthStatus>('healthy', 'degraded', 'unhealthy');
const agent = fc.record({ score: fc.integer({ min: 0, max: 100 }), status });

describe('fleetHealth', () => {
  it('is healthy with score 100 for an empty fleet', () => {
    expect(fleetHealth([])).toEqual({ score: 100, status: 'healthy', reasons: [], agents: 0, byStatus: { healthy: 0, degraded: 0, unhealthy: 0 } });
  });

  it('does not let a mean hide dead agents', () => {
    const fleet = [...Array.from({ length: 85 }, () => ({ score: 100, status: 'healthy' as const })), ...Array.from({ length: 15 }, () => ({ score: 0, status: 'unhealthy' as const }))];
    const r = fleetHealth(fleet);
    expect(r.score).toBe(85);
    expect(r.status).toBe('unhealthy');
    expect(r.byStatus).toEqual({ healthy: 85, degraded: 0, unhealthy: 15 });
  });

  it('is degraded when more than 5% of agents are not healthy', () => {
    const fleet = [...Array.from({ length: 94 }, () => ({ score: 100, status: 'healthy' as const })), ...Array.from({ length: 6 }, () => ({ score: 60, status: 'degraded' as const }))];
    expect(fleetHealth(fleet).status).toBe('degraded');
    // exactly 5% (95 healthy, 5 degraded) is still healthy
    expect(fleetHealth([{ score: 100, status: 'healthy' }, ...fleet.slice(0, 94), ...fleet.slice(95)]).status).toBe('healthy');
  });

  it('refuses a score outside 0..100', () => {
    expect(() => fleetHealth([{ score: 101, status: 'healthy' }])).toThrow(/out of range/);
  });

  it('property: bounded, and monotone when any agent gets worse', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(agent, fc.nat({ max: 100 }), fc.nat({ max: 2 })), { minLength: 1, maxLength: 60 }),
        (rows) => {
          const a = rows.map(([x]) => x);
          const ranks: HealthStatus[] = ['healthy', 'degraded', 'unhealthy'];
          const b = rows.map(([x, drop, up]) => ({
            score: Math.max(0, x.score - drop),
            status: ranks[Math.min(2, statusRank(x.status) + up)] as HealthStatus,
          }));
          const fa = fleetHealth(a);
          const fb = fleetHealth(b);
          for (const f of [fa, fb]) {
            expect(f.score).toBeGreaterThanOrEqual(0);
            expect(f.score).toBeLessThanOrEqual(100);
            expect(f.byStatus.healthy + f.byStatus.degraded + f.byStatus.unhealthy).toBe(f.agents);
          }
          expect(fb.score).toBeLessThanOrEqual(fa.score);
          expect(statusRank(fb.status)).toBeGreaterThanOrEqual(statusRank(fa.status));
        },
      ),
    );
  });
});

describe('serverSyncHealth (what the server can vouch for)', () => {
  const NOW = 1_800_000_000_000;
  const MIN = 60_000;

  it('scores lag from the last caught-up pull, else the first pull, else never (Infinity)', () => {
    expect(serverSyncHealthInput({ caughtUpAt: NOW - 2 * MIN, firstPulledAt: NOW - 60 * MIN, verifyDiffs: null }, NOW)).toEqual({
      syncLagSeconds: 120, pushLagSeconds: 0, pendingOperations: 0, failedOperations: 0, conflictRate: 0, consistencyViolations: 0,
    });
    expect(serverSyncHealthInput({ caughtUpAt: null, firstPulledAt: NOW - 10 * MIN, verifyDiffs: 3 }, NOW)).toMatchObject({ syncLagSeconds: 600, consistencyViolations: 3 });
    expect(serverSyncHealthInput({ caughtUpAt: null, firstPulledAt: null, verifyDiffs: null }, NOW).syncLagSeconds).toBe(Number.POSITIVE_INFINITY);
    // A clock step back between replicas does not make a negative lag (FLEET_OBS_001).
    expect(serverSyncHealthInput({ caughtUpAt: NOW + 5000, firstPulledAt: NOW, verifyDiffs: 0 }, NOW).syncLagSeconds).toBe(0);
  });

  it('drops for an agent that stopped pulling: healthy, then degraded-in-score, then unhealthy after a day', () => {
    const at = (ago: number) => serverSyncHealth({ caughtUpAt: NOW - ago, firstPulledAt: NOW - 2 * 86_400_000, verifyDiffs: 0 }, NOW);
    expect(at(MIN)).toEqual({ score: 100, status: 'healthy', reasons: [] });
    const halfDay = at(12 * 60 * MIN);
    expect(halfDay.score).toBeLessThan(90);
    expect(halfDay.score).toBeGreaterThan(80);
    const day = at(24 * 60 * MIN);
    expect(day).toMatchObject({ score: 70, status: 'unhealthy' });
    expect(serverSyncHealth({ caughtUpAt: null, firstPulledAt: null, verifyDiffs: null }, NOW).status).toBe('unhealthy');
  });

  it('caps at degraded when the last Merkle exchange found differences', () => {
    expect(serverSyncHealth({ caughtUpAt: NOW, firstPulledAt: NOW, verifyDiffs: 1 }, NOW)).toMatchObject({ score: 89, status: 'degraded' }); // 10 at once, plus 1 of the 10 that grow to 10 buckets
  });

  it('property: an older last caught-up pull never gives a better score or status', () => {
    fc.assert(
      fc.property(fc.nat({ max: 10 * 86_400_000 }), fc.nat({ max: 10 * 86_400_000 }), fc.option(fc.nat({ max: 20 }), { nil: null }), (ago, more, diffs) => {
        const a = serverSyncHealth({ caughtUpAt: NOW - ago, firstPulledAt: null, verifyDiffs: diffs }, NOW);
        const b = serverSyncHealth({ caughtUpAt: NOW - ago - more, firstPulledAt: null, verifyDiffs: diffs }, NOW);
        expect(b.score).toBeLessThanOrEqual(a.score);
        expect(statusRank(b.status)).toBeGreaterThanOrEqual(statusRank(a.status));
        expect(b.score).toBeGreaterThanOrEqual(50);
      }),
    );
  });

  describe('with the push side the agent reports', () => {
    const report = (o: Partial<PushReport> = {}): PushReport => ({ at: NOW - 10_000, outbox: 0, oldestUnsentAgeMs: 0, retryQueue: 0, failedPushes: 0, ...o });
    const pulling = { caughtUpAt: NOW - 10_000, firstPulledAt: NOW - 86_400_000, verifyDiffs: 0, pulledAt: NOW - 10_000 };

    it('maps the report: the oldest unsent change is the push lag, the outbox is pending, failed pushes are failures', () => {
      expect(serverSyncHealthInput({ ...pulling, push: report({ outbox: 250, oldestUnsentAgeMs: 7_200_000, retryQueue: 250, failedPushes: 9 }) }, NOW)).toEqual({
        syncLagSeconds: 10, pushLagSeconds: 7200, pendingOperations: 250, failedOperations: 9, conflictRate: 0, consistencyViolations: 0,
      });
      // An empty outbox has no lag, whatever age came with it.
      expect(serverSyncHealthInput({ ...pulling, push: report({ outbox: 0, oldestUnsentAgeMs: 7_200_000 }) }, NOW).pushLagSeconds).toBe(0);
    });

    it('scores a host that pulls but cannot push: named reasons, degraded after 20 failures, unhealthy after a day', () => {
      const idle = serverSyncHealth({ ...pulling, push: report() }, NOW);
      expect(idle).toEqual({ score: 100, status: 'healthy', reasons: [] });
      const failing = serverSyncHealth({ ...pulling, push: report({ outbox: 30, oldestUnsentAgeMs: 600_000, retryQueue: 30, failedPushes: 6 }) }, NOW);
      expect(failing.score).toBeLessThan(100);
      expect(failing.reasons).toEqual(['6 failed pushes in a row (-4.5)', 'oldest unsent change waiting 600s, over the 300s target (-0.1)']);
      expect(serverSyncHealth({ ...pulling, push: report({ outbox: 30, oldestUnsentAgeMs: 3_600_000, retryQueue: 30, failedPushes: 25 }) }, NOW).status).toBe('degraded');
      const days = serverSyncHealth({ ...pulling, push: report({ outbox: 5000, oldestUnsentAgeMs: 3 * 86_400_000, retryQueue: 5000, failedPushes: 40 }) }, NOW);
      expect(days.status).toBe('unhealthy');
      expect(days.score).toBeLessThan(50);
      expect(days.reasons[0]).toBe('oldest unsent change waiting 259200s, over the 300s target (-30)');
      // A small backlog stuck for a day: unhealthy by the cap, not by the score.
      const stuck = serverSyncHealth({ ...pulling, push: report({ outbox: 3, oldestUnsentAgeMs: 86_400_000, retryQueue: 3, failedPushes: 2 }) }, NOW);
      expect(stuck).toMatchObject({ score: 69, status: 'unhealthy' });
      expect(stuck.reasons).toContain('oldest unsent change waiting 86400s (>= 24h): unhealthy');
    });

    it('leaves out a report a later pull did not renew (stale), and scores no report as before', () => {
      const bad = report({ outbox: 30, oldestUnsentAgeMs: 2 * 86_400_000, failedPushes: 30 });
      expect(currentPushReport({ pulledAt: NOW - 10_000, push: bad })).toBe(bad);
      expect(currentPushReport({ pulledAt: NOW - 5_000, push: bad })).toBeUndefined();
      expect(serverSyncHealth({ ...pulling, pulledAt: NOW - 5_000, push: bad }, NOW)).toEqual({ score: 100, status: 'healthy', reasons: [] });
      expect(serverSyncHealth({ ...pulling, push: null }, NOW)).toEqual(serverSyncHealth({ caughtUpAt: pulling.caughtUpAt, firstPulledAt: pulling.firstPulledAt, verifyDiffs: 0 }, NOW));
    });

    const reportArb = fc.record({ outbox: fc.nat({ max: 20_000 }), oldestUnsentAgeMs: fc.nat({ max: 10 * 86_400_000 }), retryQueue: fc.nat({ max: 20_000 }), failedPushes: fc.nat({ max: 100 }) });
    it('property: a worse report (every figure at least as bad) never gives a better score or status; the score stays within 15..100', () => {
      fc.assert(
        fc.property(reportArb, reportArb, fc.nat({ max: 3 * 86_400_000 }), fc.option(fc.nat({ max: 20 }), { nil: null }), (a, d, ago, diffs) => {
          const facts = { caughtUpAt: NOW - ago, firstPulledAt: null, verifyDiffs: diffs, pulledAt: NOW - 1000 };
          const worse = { outbox: a.outbox + d.outbox, oldestUnsentAgeMs: a.oldestUnsentAgeMs + d.oldestUnsentAgeMs, retryQueue: a.retryQueue + d.retryQueue, failedPushes: a.failedPushes + d.failedPushes };
          // An outbox that goes from empty to non-empty must not lose its lag: a worse report waits at least as long.
          const ra = serverSyncHealth({ ...facts, push: report({ ...a, at: NOW - 1000 }) }, NOW);
          const rb = serverSyncHealth({ ...facts, push: report({ ...worse, at: NOW - 1000 }) }, NOW);
          expect(rb.score).toBeLessThanOrEqual(ra.score);
          expect(statusRank(rb.status)).toBeGreaterThanOrEqual(statusRank(ra.status));
          expect(rb.score).toBeGreaterThanOrEqual(15);
          // A report never scores better than no report.
          const none = serverSyncHealth(facts, NOW);
          expect(ra.score).toBeLessThanOrEqual(none.score);
          expect(statusRank(ra.status)).toBeGreaterThanOrEqual(statusRank(none.status));
        }),
      );
    });
  });

  it('orders the worst agents by score, then status, then id', () => {
    const h = (agentId: string, score: number, status: HealthStatus) => ({ agentId, health: { score, status } });
    const list = [h('b', 70, 'unhealthy'), h('a', 100, 'healthy'), h('c', 70, 'degraded'), h('d', 70, 'unhealthy'), h('e', 50, 'unhealthy')];
    expect(worstAgents(list, 3).map((x) => x.agentId)).toEqual(['e', 'b', 'd']);
    expect(worstAgents(list, 0)).toEqual([]);
  });
});
