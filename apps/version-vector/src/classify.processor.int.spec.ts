/**
 * ClassifyProcessor against a real PostgreSQL: one batch of appended events, applied in one projection
 * transaction, publishes one event per kind and records its metrics per outcome and strategy (summed
 * before they are added, so each count must still come out exact). The publisher is a recording
 * double of the processor's own port; the NATS path is covered by the conflict-resolver harness tests.
 */
import { AggregationTemporality, MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { decodeAppendedEvent, encodeJson, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import { createSyncMetrics } from '@fleet/observability';
import { openServerDataSource, PostgresChangeLog, RecordsProjection } from '@fleet/server-store';
import { createTestDatabase, testChange, type TestDatabase } from '@fleet/server-store/src/testing';
import type { DataSource } from 'typeorm';
import { ClassifyProcessor, type EventPublisher } from './classify.processor';

class CollectingReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** Each data point of a metric, as `attributes JSON -> value`. */
function points(rm: ResourceMetrics, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const sm of rm.scopeMetrics) {
    for (const m of sm.metrics) {
      if (m.descriptor.name !== name) continue;
      for (const p of m.dataPoints) out.set(JSON.stringify(p.attributes), typeof p.value === 'number' ? p.value : (p.value as { count: number }).count);
    }
  }
  return out;
}

let db: TestDatabase;
let ds: DataSource;
beforeAll(async () => {
  db = await createTestDatabase('fleet_vv_classify');
  ds = await openServerDataSource({ url: db.url });
});
afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});

it('a batch of events: one projection transaction, one event per kind, metrics summed exactly per outcome and strategy', async () => {
  const log = new PostgresChangeLog(ds);
  const s = subjects('vvtest');
  const published: { subject: string; payload: unknown }[] = [];
  const publisher: EventPublisher = {
    publish: async (subject, payload) => void published.push({ subject, payload: JSON.parse(new TextDecoder().decode(payload)) }),
    deadLetter: async () => undefined,
  };
  const reader = new CollectingReader();
  const metrics = createSyncMetrics(new MeterProvider({ readers: [reader] }).getMeter('test'));
  const processor = new ClassifyProcessor(ds, new RecordsProjection({ default: 'lww', collections: { merged: { strategy: 'merge' } } }), publisher, s, metrics);

  // Two origins writing the same 3 keys of each collection while apart (6 conflicts: 3 lww, 3 merge),
  // and 4 keys only one of them writes (fast-forwards). In one group scope, so both may write it.
  const both = ['k0', 'k1', 'k2'];
  const edits = [
    ...['inventory', 'merged'].flatMap((collection) =>
      both.flatMap((key, i) => [
        testChange('oa', 1 + i + (collection === 'merged' ? 10 : 0), { scope: 'group.g', collection, key, vv: { oa: 1 + i + (collection === 'merged' ? 10 : 0) } }),
        testChange('ob', 1 + i + (collection === 'merged' ? 10 : 0), { scope: 'group.g', collection, key, vv: { ob: 1 + i + (collection === 'merged' ? 10 : 0) } }),
      ]),
    ),
    ...['a0', 'a1', 'a2', 'a3'].map((key, i) => testChange('oa', 20 + i, { scope: 'group.g', key, vv: { oa: 20 + i } })),
  ];
  const { appended } = await log.appendBatch(edits);
  expect(appended).toHaveLength(16);
  // Three events, as the change log emits one per appended batch.
  const event = (from: number, to: number): { data: Uint8Array } => ({ data: encodeJson({ protocol: PROTOCOL_VERSION, changes: appended.slice(from, to) }) });
  const events = [event(0, 5), event(5, 12), event(12, 16)];
  for (const e of events) expect(decodeAppendedEvent(e.data).changes.length).toBeGreaterThan(0); // what the change log publishes
  const { result, failures } = await processor.processMany(events);
  expect(failures.size).toBe(0);
  expect(result.conflicts).toHaveLength(6);
  expect(result.records).toHaveLength(10);

  const kinds = published.map((p) => p.subject).sort();
  expect(kinds).toEqual([s.classified('applied'), s.classified('conflict')].sort());
  const conflictEvent = published.find((p) => p.subject === s.classified('conflict'))?.payload as { conflicts: unknown[] };
  expect(conflictEvent.conflicts).toHaveLength(6);

  const { resourceMetrics } = await reader.collect();
  const ingested = points(resourceMetrics, 'fleet_sync.changes.ingested');
  expect(Object.fromEntries(ingested)).toEqual({
    [JSON.stringify({ outcome: 'applied', side: 'server' })]: 10, // 6 first writes of the shared keys + 4 single writes
    [JSON.stringify({ outcome: 'conflict', side: 'server' })]: 6,
  });
  const detected = points(resourceMetrics, 'fleet_sync.conflicts.detected');
  expect(Object.fromEntries(detected)).toEqual({
    [JSON.stringify({ strategy: 'lww', side: 'server' })]: 3,
    [JSON.stringify({ strategy: 'merge', side: 'server' })]: 3,
  });
  // One time-to-consistency sample per change applied or in conflict.
  expect([...points(resourceMetrics, 'fleet_sync.time_to_consistency').values()].reduce((a, b) => a + b, 0)).toBe(16);
});
