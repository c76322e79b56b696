import fc from 'fast-check';
import { resyncCursor } from '@fleet/contracts';
import { behindAfter, cursorText, MAX_CURSOR_TEXT, mergeFacts, pullEntry, pushReportOf, verifyEntry } from './pull-facts';
import type { AgentPullEntry } from './pull-facts';

describe('pull facts', () => {
  it('behind: 0 once a page reached the end, else the head minus the position answered (log seq, or a resync/snapshot position)', () => {
    expect(behindAfter({ from: 0, to: 40, headSeq: 100, hasMore: false })).toBe(0);
    expect(behindAfter({ from: 0, to: 40, headSeq: 100, hasMore: true })).toBe(60);
    expect(behindAfter({ from: 0, to: resyncCursor(70, { scope: 'fleet', collection: 'c', key: 'k' }, 'snapshot'), headSeq: 100, hasMore: true })).toBe(30);
    // The head read with a read-ahead page may be older than the position: never negative.
    expect(behindAfter({ from: 0, to: 120, headSeq: 100, hasMore: true })).toBe(0);
  });

  it('keeps cursors short', () => {
    const long = resyncCursor(7, { scope: 'fleet', collection: 'c', key: 'k'.repeat(1000) });
    expect(cursorText(long)).toHaveLength(MAX_CURSOR_TEXT);
    expect(cursorText(long).endsWith('...')).toBe(true);
    expect(cursorText(42)).toBe('42');
  });

  it('a pull that reached the end is a caught-up time; one with more is not', () => {
    expect(pullEntry('a', 1000, { from: 5, to: 9, headSeq: 9, hasMore: false })).toMatchObject({ caughtUpAt: 1000, behind: 0, pulls: 1, pullFrom: '5', pullTo: '9' });
    expect(pullEntry('a', 1000, { from: 5, to: 9, headSeq: 20, hasMore: true })).toMatchObject({ caughtUpAt: null, behind: 11 });
  });

  it('merges to the latest pull and verification by time, the earliest first pull, the pulls added', () => {
    const early = pullEntry('a', 1000, { from: 0, to: 10, headSeq: 50, hasMore: true });
    const late = pullEntry('a', 2000, { from: 10, to: 50, headSeq: 50, hasMore: false });
    const v = verifyEntry('a', 1500, 3);
    for (const m of [mergeFacts(mergeFacts(early, late), v), mergeFacts(v, mergeFacts(late, early))]) {
      expect(m).toEqual({
        agentId: 'a', firstPulledAt: 1000, pulledAt: 2000, pullFrom: '10', pullTo: '50', headSeq: 50, behind: 0, caughtUpAt: 2000, pulls: 2, verifiedAt: 1500, verifyDiffs: 3,
        healthAt: null, outbox: null, oldestUnsentAgeMs: null, retryQueue: null, failedPushes: null,
      });
    }
    // A later exchange that found the roots equal clears the differences.
    expect(mergeFacts(v, verifyEntry('a', 1800, 0))).toMatchObject({ verifiedAt: 1800, verifyDiffs: 0 });
  });

  it('keeps the push-side report of the latest pull that carried one; a later pull without one leaves it (the score calls it stale)', () => {
    const health = { outbox: 40, oldestUnsentAgeMs: 600_000, retryQueue: 40, failedPushes: 7 };
    const reported = pullEntry('a', 1000, { from: 0, to: 10, headSeq: 10, hasMore: false, health });
    expect(reported).toMatchObject({ healthAt: 1000, ...health });
    expect(pushReportOf(reported)).toEqual({ at: 1000, ...health });
    const better = pullEntry('a', 3000, { from: 10, to: 10, headSeq: 10, hasMore: false, health: { outbox: 0, oldestUnsentAgeMs: 0, retryQueue: 0, failedPushes: 0 } });
    const silent = pullEntry('a', 2000, { from: 10, to: 10, headSeq: 10, hasMore: false });
    expect(pushReportOf(silent)).toBeNull();
    expect(mergeFacts(silent, reported)).toMatchObject({ pulledAt: 2000, healthAt: 1000, ...health });
    expect(mergeFacts(mergeFacts(reported, better), silent)).toMatchObject({ pulledAt: 3000, healthAt: 3000, outbox: 0, failedPushes: 0 });
    // A verification carries no report and takes none away.
    expect(mergeFacts(reported, verifyEntry('a', 5000, 0))).toMatchObject({ healthAt: 1000, outbox: 40 });
  });

  const healthArb = fc.option(fc.record({ outbox: fc.nat({ max: 50 }), oldestUnsentAgeMs: fc.nat({ max: 1e6 }), retryQueue: fc.nat({ max: 50 }), failedPushes: fc.nat({ max: 30 }) }), { nil: undefined });
  const entry: fc.Arbitrary<AgentPullEntry> = fc.oneof(
    fc
      .record({ at: fc.nat({ max: 50 }), to: fc.nat({ max: 100 }), head: fc.nat({ max: 100 }), more: fc.boolean(), health: healthArb })
      .map((x) => pullEntry('a', x.at, { from: 0, to: x.to, headSeq: x.head, hasMore: x.more, health: x.health })),
    fc.record({ at: fc.nat({ max: 50 }), n: fc.nat({ max: 5 }) }).map((x) => verifyEntry('a', x.at, x.n)),
  );

  it('property: the order facts arrive in (replicas, flushes) changes nothing but ties', () => {
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 12 }), fc.context(), (list, ctx) => {
        // Distinct times, so that no tie decides (ties go to the later recorded, as in the upsert).
        const seen = new Set<number>();
        const distinct = list.filter((e) => {
          const t = e.pulledAt ?? e.verifiedAt ?? -1;
          if (seen.has(t)) return false;
          seen.add(t);
          return true;
        });
        ctx.log(String(distinct.length));
        const fold = (xs: readonly AgentPullEntry[]) => xs.reduce((a, b) => mergeFacts(a, b));
        const forward = fold(distinct);
        expect(fold([...distinct].reverse())).toEqual(forward);
        // Two replicas coalescing halves, merged afterwards.
        const half = Math.floor(distinct.length / 2);
        if (half > 0) expect(mergeFacts(fold(distinct.slice(half)), fold(distinct.slice(0, half)))).toEqual(forward);
        expect(forward.pulls).toBe(distinct.filter((e) => e.pulledAt !== null).length);
        // The push-side report is the latest one carried, whatever came after it without one.
        const reports = distinct.filter((e) => e.healthAt !== null).sort((a, b) => (b.healthAt as number) - (a.healthAt as number));
        expect(pushReportOf(forward)).toEqual(reports[0] === undefined ? null : pushReportOf(reports[0]));
      }),
    );
  });
});
