import { decodePullRequest, decodePushBatch, encodeJson, MAX_CHANGES_PER_PUSH, splitPushBatch, toWireRecord } from '@fleet/contracts';
import { batchIdOf, recordHash } from '@fleet/sync-core';
import { MemorySyncStore } from '../testing/memory-store';
import { buildPullRequest, buildPushBatch, decodePullPage, DELETED_RECORD_HASH, liveMerkleEntries } from './wire';

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

  it('tombstones are not Merkle entries (the server trees hold live records only)', () => {
    const st = store.getState({ scope: 'host.agent-1', collection: 'inv', key: 'k1' })!;
    expect(liveMerkleEntries([{ key: 'a', recordHash: recordHash(st) }, { key: 'b', recordHash: DELETED_RECORD_HASH }])).toEqual([{ key: 'a', recordHash: recordHash(st) }]);
  });
});
