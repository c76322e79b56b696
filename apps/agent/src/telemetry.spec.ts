import type { SyncMetrics } from '@fleet/observability';
import { AgentMetrics, failureCode } from './telemetry';

type Call = [metric: string, value: number, attributes: Record<string, string> | undefined];

/** A SyncMetrics whose instruments write down every call. */
function recording(): { metrics: SyncMetrics; calls: Call[] } {
  const calls: Call[] = [];
  const metrics = new Proxy(
    {},
    {
      get: (_t, name: string) => ({
        add: (v: number, a?: Record<string, string>) => void calls.push([name, v, a]),
        record: (v: number, a?: Record<string, string>) => void calls.push([name, v, a]),
      }),
    },
  ) as SyncMetrics;
  return { metrics, calls };
}

describe('AgentMetrics (the agent-side instruments of `agent run`)', () => {
  let now = 1_000_000;
  const clock = () => now;

  it('times each push batch and pull page from the sync manager\'s operation reports, and counts failures by code', () => {
    const { metrics, calls } = recording();
    const m = new AgentMetrics(metrics, { outboxStats: () => ({ size: 0, oldestAt: null }), syncState: () => ({ lastPullAt: null }) }, clock);
    m.report({ type: 'operation', op: 'pull', outcome: 'ok', ms: 250 });
    m.report({ type: 'operation', op: 'push', outcome: 'failed', ms: 1000 });
    m.report({ type: 'failed', op: 'push', error: 'FleetError FLEET_MSG_002: wrong last sequence' });
    m.report({ type: 'failed', op: 'pull', error: 'timeout' });
    m.report({ type: 'operation', op: 'verify', outcome: 'ok', ms: 10 }); // not a push or pull
    m.report({ type: 'failed', op: 'verify', error: 'FLEET_MERKLE_003' });
    m.report({ type: 'transition', from: 'idle', to: 'pulling' }); // transitions only say whether it backs off
    expect(calls).toEqual([
      ['roundDuration', 0.25, { direction: 'pull', outcome: 'ok' }],
      ['roundDuration', 1, { direction: 'push', outcome: 'failed' }],
      ['failedSyncAttempts', 1, { direction: 'push', code: 'FLEET_MSG_002' }],
      ['failedSyncAttempts', 1, { direction: 'pull', code: 'FLEET_INFRA_001' }],
    ]);
  });

  it('samples the outbox, the lag per direction and the retry gauge; an idle host has no push lag', () => {
    const { metrics, calls } = recording();
    let outbox = { size: 0, oldestAt: null as number | null };
    const m = new AgentMetrics(metrics, { outboxStats: () => outbox, syncState: () => ({ lastPullAt: now - 30_000 }) }, clock);
    m.sample();
    expect(calls).toEqual([
      ['outboxSize', 0, undefined],
      ['outboxOldestAge', 0, undefined],
      ['syncLag', 30, { direction: 'pull' }],
      ['syncLag', 0, { direction: 'push' }],
      ['retryQueueSize', 0, { side: 'agent' }],
    ]);
    // Changes waiting since 40 s, none acknowledged since, backing off.
    calls.length = 0;
    outbox = { size: 7, oldestAt: now - 40_000 };
    m.report({ type: 'transition', from: 'pushing', to: 'backoff' });
    m.sample();
    expect(calls).toContainEqual(['outboxSize', 7, undefined]);
    expect(calls).toContainEqual(['outboxOldestAge', 40, undefined]);
    expect(calls).toContainEqual(['syncLag', 40, { direction: 'push' }]);
    expect(calls).toContainEqual(['retryQueueSize', 1, { side: 'agent' }]);
    // A push acknowledged 10 s ago, after the oldest waiting change was made: lag counts from it.
    calls.length = 0;
    now += 5000;
    m.report({ type: 'operation', op: 'push', outcome: 'ok', ms: 20 });
    now += 10_000;
    m.report({ type: 'transition', from: 'backoff', to: 'idle' });
    m.sample();
    expect(calls).toContainEqual(['syncLag', 10, { direction: 'push' }]);
    expect(calls).toContainEqual(['retryQueueSize', 0, { side: 'agent' }]);
  });

  it('counts wire bytes by direction and message', () => {
    const { metrics, calls } = recording();
    const m = new AgentMetrics(metrics, { outboxStats: () => ({ size: 0, oldestAt: null }), syncState: () => ({ lastPullAt: null }) }, clock);
    m.wire('out', 'push', 512);
    m.wire('in', 'notify', 0); // a nudge's empty payload: nothing to add
    expect(calls).toEqual([['wireBytes', 512, { direction: 'out', message: 'push' }]]);
    expect(failureCode('publish to a.push.h1: FLEET_INFRA_001 dependency unavailable')).toBe('FLEET_INFRA_001');
    expect(failureCode('pull: FLEET_AUTH_002: scope is not readable')).toBe('FLEET_AUTH_002');
  });
});
