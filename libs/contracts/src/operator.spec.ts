import { isFleetError } from '@fleet/errors';
import { decodeAgentSyncReply, decodeFleetHealthReply, encodeJson } from './index';

const at = '2026-11-28T14:05:40.021Z';
const push = { reportedAt: at, outbox: 3, oldestUnsentAgeMs: 42_000, retryQueue: 3, failedPushes: 22, stale: false };
const agent = {
  agentId: 'host-07',
  firstPullAt: at,
  lastPullAt: at,
  pullFrom: '10',
  pullTo: '12',
  headSeqAtPull: 12,
  behind: 0,
  caughtUpAt: at,
  pulls: 4,
  lastVerifiedAt: null,
  verifyDifferences: null,
  lastPushAt: at,
  health: { score: 85, status: 'degraded', reasons: ['22 failed pushes in a row (-15)'] },
};
const fleet = (protocol: number, worst: unknown[]) => ({ protocol, at, score: 93, status: 'degraded', reasons: [], agents: 2, byStatus: { healthy: 1, degraded: 1, unhealthy: 0 }, worst });

function decodeError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isFleetError(e)) return `${e.code} ${e.message}`;
    throw e;
  }
  return 'decoded';
}

describe('agent sync views: `push` is protocol 2', () => {
  it("a reply of protocol 2 carries each agent's push side, or null when it never reported", () => {
    const r = decodeAgentSyncReply(encodeJson({ protocol: 2, at, agents: { 'host-07': { ...agent, push }, 'host-01': { ...agent, agentId: 'host-01', push: null } } }));
    expect(r.ok && r.value.agents['host-07']?.push).toEqual(push);
    expect(r.ok && r.value.agents['host-01']?.push).toBeNull();
    const h = decodeFleetHealthReply(encodeJson(fleet(2, [{ ...agent, push }])));
    expect(h.ok && h.value.worst[0]?.push?.failedPushes).toBe(22);
  });

  it('a reply of protocol 1 has none (what an older fleetctl reads), and one that carries it is refused', () => {
    expect(decodeAgentSyncReply(encodeJson({ protocol: 1, at, agents: { 'host-07': agent } })).ok).toBe(true);
    expect(decodeError(() => decodeAgentSyncReply(encodeJson({ protocol: 1, at, agents: { 'host-07': { ...agent, push } } })))).toMatch(/^FLEET_DECODE_002 .*agents\.host-07\.push: needs protocol 2/);
    expect(decodeError(() => decodeFleetHealthReply(encodeJson(fleet(1, [agent, { ...agent, push }]))))).toMatch(/^FLEET_DECODE_002 .*worst\[1\]\.push: needs protocol 2/);
  });

  it('refuses a push side out of shape', () => {
    expect(decodeError(() => decodeAgentSyncReply(encodeJson({ protocol: 2, at, agents: { 'host-07': { ...agent, push: { ...push, outbox: -1 } } } })))).toMatch(/^FLEET_DECODE_002 .*push\.outbox/);
    const { stale: _, ...noStale } = push;
    expect(decodeError(() => decodeAgentSyncReply(encodeJson({ protocol: 2, at, agents: { 'host-07': { ...agent, push: noStale } } })))).toMatch(/push\.stale/);
  });
});
