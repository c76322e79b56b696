import { FleetError } from '@fleet/errors';
import { subjects } from '@fleet/contracts';
import { createNoopMeter } from '@opentelemetry/api';
import { createSyncMetrics } from '@fleet/observability';
import type { ConflictDesk, ConflictEntry } from '@fleet/server-store';
import type { LoggedChange } from '@fleet/sync-core';
import { ResolverService } from './resolver.service';

const change = { seq: 9, changeId: '0190a000-0000-7000-8000-000000000009', origin: 'server', scope: 'host.a1', collection: 'settings', key: 'k' } as unknown as LoggedChange;
const entry = {
  id: 4,
  ref: { scope: 'host.a1', collection: 'settings', key: 'k' },
  seq: 3,
  strategy: 'manual',
  status: 'resolved',
  conflict: {},
  outcome: null,
  resolvedBy: 'operator',
  resolutionChangeId: change.changeId,
  detectedAt: new Date(0),
  resolvedAt: new Date(1),
} as unknown as ConflictEntry;

function service(publish: () => Promise<unknown>): ResolverService {
  const desk = { resolveByOperator: async () => ({ entry, change, detectedAt: new Date(0) }), pendingCount: async () => 0 } as unknown as ConflictDesk;
  return new ResolverService(desk, () => ({ publish }), subjects('rs'), createSyncMetrics(createNoopMeter()), { intervalMs: 0, ageMs: 0 });
}

describe('ResolverService.resolve (an operator decision)', () => {
  it('announced once published', async () => {
    const r = await service(async () => undefined).resolve(4, { take: 'a1' });
    expect(r).toMatchObject({ announced: true, change });
  });

  it('committed, its announcement failed after the retries: answered with announced false, not an error (a retry would be refused as already resolved)', async () => {
    const r = await service(async () => {
      throw new FleetError('FLEET_INFRA_001', 'publish to rs.log.appended: TimeoutError');
    }).resolve(4, { take: 'a1' });
    expect(r.announced).toBe(false);
    expect(r.change).toBe(change);
    expect(r.item.status).toBe('resolved');
  }, 30_000);

  it('an announcement refused for good (not transient) is answered the same way: the decision is committed all the same', async () => {
    const r = await service(async () => {
      throw new FleetError('FLEET_AUTH_001', 'not allowed');
    }).resolve(4, { take: 'a1' });
    expect(r).toMatchObject({ announced: false, change });
  });
});
