import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createNoopMeter } from '@opentelemetry/api';
import { Metrics, createSyncMetrics, metricCatalogMarkdown, prometheusName } from './metrics';
import type { MetricDefinition } from './metrics';

const entries = Object.entries(Metrics) as [string, MetricDefinition][];

describe('metric catalog', () => {
  it('names every metric once, in the fleet_sync namespace, OTel style', () => {
    const names = entries.map(([, d]) => d.name);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^fleet_sync(\.[a-z][a-z0-9_]*)+$/);
  });

  it('keeps units out of names and gives every metric a unit and a description', () => {
    for (const [, d] of entries) {
      expect(d.name).not.toMatch(/(_seconds|_bytes|_total)$/);
      expect(d.unit).not.toBe('');
      expect(d.description.length).toBeGreaterThan(20);
      if (d.buckets) expect([...d.buckets]).toEqual([...d.buckets].sort((a, b) => a - b));
      for (const k of Object.keys(d.attributes)) expect(k).toMatch(/^[a-z][a-z_]*$/);
      expect(Object.keys(d.attributes)).not.toContain('agent');
    }
  });

  it('derives the Prometheus series names', () => {
    expect(prometheusName(Metrics.wireBytes)).toBe('fleet_sync_wire_bytes_total');
    expect(prometheusName(Metrics.syncLag)).toBe('fleet_sync_lag');
    expect(prometheusName(Metrics.manualQueueLength)).toBe('fleet_sync_conflicts_manual_queue_size');
  });

  it('creates a recorder for every entry', () => {
    const m = createSyncMetrics(createNoopMeter());
    expect(Object.keys(m).sort()).toEqual(Object.keys(Metrics).sort());
    m.outboxSize.record(3);
    m.conflictsResolved.add(1, { strategy: 'merge', by: 'auto' });
    m.deadLettered.add(1, { code: 'FLEET_DECODE_002', source: 'push' });
    // @ts-expect-error an attribute value outside the declared set does not compile
    m.wireBytes.add(10, { direction: 'sideways', message: 'push' });
    // @ts-expect-error a metric with attributes requires them
    m.syncLag.record(1);
  });
});

describe('docs/observability.md', () => {
  it('carries the current catalog table', () => {
    const doc = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'observability.md'), 'utf8');
    expect(doc).toContain(metricCatalogMarkdown());
  });
});
