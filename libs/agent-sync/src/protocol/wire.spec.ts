import fc from 'fast-check';
import { decodePullRequest, decodePushBatch, encodeJson, MAX_CHANGES_PER_PUSH, splitPushBatch, toWireRecord } from '@fleet/contracts';
import { batchIdOf, recordHash } from '@fleet/sync-core';
import { MemorySyncStore } from '../testing/memory-store';
import { buildPullRequest, buildPushBatch, decodePullPage, DELETED_RECORD_HASH, liveMerkleEntries, pushHealthOf } from './wire';

describe('agent wire (pure)', () => {
  const store = new MemorySyncStore('agent-1');
  for (let i = 0; i < 600; i++) store.put({ scope: 'host.agent-1', collection: 'inv', key: `k${i}` }, { n: i, pad: 'x'.repeat(100) });

  it('a push batch decodes with the contracts, passes the server-side split, is capped, and its id is the batch id', () => {
    const b = buildPushBatch('agent-1', store.peekOutbox(MAX_CHANGES_PER_PUSH), 123);
    expect(b).toBeDefined();
    const decoded = decodePushBatch(b!.payload);
    expect(decoded.changes).toHaveLength(MAX_CHANGES_PER_PUSH);
    expect(decoded.batchId).toBe(batchIdOf(b!.changeIds));
    const { accepted, rejected } = splitPushBatch(decoded, 'agent-1');
    expect(rejected).toEqual([]);
    expect(accepted.map((c) => c.originSeq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  });

  it('a small max_payload cuts the batch by bytes', () => {
    const b = buildPushBatch('agent-1', store.peekOutbox(MAX_CHANGES_PER_PUSH), 0, 16 * 1024);
    expect(b!.payload.byteLength).toBeLessThanOrEqual(16 * 1024);
    expect(b!.changeIds.length).toBeGreaterThan(1);
    expect(b!.changeIds.length).toBeLessThan(500);
  });

  it('nothing to push: undefined', () => {
    expect(buildPushBatch('agent-1', [], 0)).toBeUndefined();
  });

  it('pull request decodes; a pull page round-trips states; error replies become FleetErrors', () => {
    expect(decodePullRequest(encodeJson(buildPullRequest('agent-1', ['host.agent-1', 'fleet'], 'r.5.', 100))).cursor).toBe('r.5.');
    const st = store.getState({ scope: 'host.agent-1', collection: 'inv', key: 'k1' })!;
    const page = decodePullPage(encodeJson({ protocol: 1, records: [toWireRecord(st)], nextCursor: 9, hasMore: false }));
    expect(page.records[0]?.state.existence).toEqual(st.existence);
    expect(page.nextCursor).toBe(9);
    expect(() => decodePullPage(encodeJson({ error: { code: 'FLEET_AUTH_002', message: 'no' } }))).toThrow(expect.objectContaining({ code: 'FLEET_AUTH_002' }));
  });

  it('a pull request is written at protocol 1 without a push-side report, at 2 with one, and decodes either way', () => {
    const v1 = decodePullRequest(encodeJson(buildPullRequest('agent-1', ['fleet'], 7)));
    expect(v1.protocol).toBe(1);
    expect(v1).not.toHaveProperty('health');
    const health = pushHealthOf({ size: 12, oldestAgeMs: 90_500.7, failures: 12, consecutiveFailures: 3 }, 5);
    expect(health).toEqual({ outbox: 12, oldestUnsentAgeMs: 90_500, retryQueue: 12, failedPushes: 5 });
    const v2 = decodePullRequest(encodeJson(buildPullRequest('agent-1', ['fleet'], 7, undefined, undefined, health)));
    expect(v2).toMatchObject({ protocol: 2, health });
  });

  it('the push-side report of an empty outbox says nothing waits, whatever the store says of ages', () => {
    expect(pushHealthOf({ size: 0, oldestAgeMs: 5000, failures: 0, consecutiveFailures: 0 }, 0)).toEqual({ outbox: 0, oldestUnsentAgeMs: 0, retryQueue: 0, failedPushes: 0 });
    // The store's count of failures survives a restart; the manager's counts one that failed before a batch was published.
    expect(pushHealthOf({ size: 3, oldestAgeMs: null, failures: 9, consecutiveFailures: 4 }, 1)).toEqual({ outbox: 3, oldestUnsentAgeMs: 0, retryQueue: 3, failedPushes: 4 });
  });

  it('property: whatever the store reports (negative, fractional, huge, NaN), the report is within the schema and the pull decodes', () => {
    const n = fc.oneof(fc.double(), fc.integer(), fc.constant(Number.MAX_SAFE_INTEGER), fc.constant(Number.NaN), fc.constant(Number.POSITIVE_INFINITY), fc.constant(-0));
    fc.assert(
      fc.property(n, fc.option(n, { nil: null }), n, n, n, (size, age, failures, consecutive, inARow) => {
        const h = pushHealthOf({ size, oldestAgeMs: age, failures, consecutiveFailures: consecutive }, inARow);
        expect(decodePullRequest(encodeJson(buildPullRequest('agent-1', ['fleet'], 0, undefined, undefined, h))).health).toEqual(h);
        expect(h.retryQueue).toBeLessThanOrEqual(h.outbox);
        if (h.outbox === 0) expect(h.oldestUnsentAgeMs).toBe(0);
      }),
    );
  });

  it('tombstones are not Merkle entries (the server trees hold live records only)', () => {
    const st = store.getState({ scope: 'host.agent-1', collection: 'inv', key: 'k1' })!;
    expect(liveMerkleEntries([{ key: 'a', recordHash: recordHash(st) }, { key: 'b', recordHash: DELETED_RECORD_HASH }])).toEqual([{ key: 'a', recordHash: recordHash(st) }]);
  });
});
