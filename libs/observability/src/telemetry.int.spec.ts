import { createServer } from 'node:net';
import { isFleetError } from '@fleet/errors';
import { currentTelemetry, startTelemetry, syncMetrics } from './telemetry';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

describe('startTelemetry (Prometheus endpoint)', () => {
  afterEach(async () => {
    await currentTelemetry()?.shutdown();
  });

  it('serves a recorded sync metric on /metrics', async () => {
    const port = await freePort();
    const t = startTelemetry({ serviceName: 'obs-test', prometheusPort: port, prometheusHost: '127.0.0.1', instrumentNest: false });
    await t.metricsReady;
    t.metrics.conflictsDetected.add(2, { strategy: 'merge', side: 'server' });
    t.metrics.outboxOldestAge.record(12.5);
    t.metrics.timeToConsistency.record(0.3, { side: 'server' });

    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/# HELP fleet_sync_conflicts_detected_total Concurrent changes/);
    expect(text).toMatch(/fleet_sync_conflicts_detected_total\{[^}]*strategy="merge"[^}]*\} 2/);
    expect(text).toMatch(/fleet_sync_outbox_oldest_age\{[^}]*\} 12\.5/);
    // histogram uses the catalog's buckets (seconds), not OTel's millisecond defaults
    expect(text).toMatch(/fleet_sync_time_to_consistency_bucket\{[^}]*le="0\.5"[^}]*\} 1/);
    expect(text).toMatch(/target_info\{[^}]*service_name="obs-test"/);
  });

  it('is idempotent for the same service, refuses another, and restarts after shutdown', async () => {
    const port = await freePort();
    const a = startTelemetry({ serviceName: 'obs-a', prometheusPort: port, preventServerStart: true, instrumentNest: false });
    expect(startTelemetry({ serviceName: 'obs-a' })).toBe(a);
    expect(syncMetrics()).toBe(a.metrics);
    let caught: unknown;
    try {
      startTelemetry({ serviceName: 'obs-b' });
    } catch (e) {
      caught = e;
    }
    expect(isFleetError(caught, 'FLEET_OBS_002')).toBe(true);
    await a.shutdown();
    await a.shutdown();
    expect(currentTelemetry()).toBeUndefined();
    // no-op metrics when nothing runs: recording is safe
    syncMetrics().outboxSize.record(1);
    const b = startTelemetry({ serviceName: 'obs-b', preventServerStart: true, instrumentNest: false });
    expect(b).not.toBe(a);
  });

  it('reports a metrics port that is taken through metricsReady, without crashing', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const t = startTelemetry({ serviceName: 'obs-busy', prometheusPort: port, prometheusHost: '127.0.0.1', instrumentNest: false });
      await expect(t.metricsReady).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('propagates W3C trace context', async () => {
    const { context, propagation, trace } = await import('@opentelemetry/api');
    const t = startTelemetry({ serviceName: 'obs-trace', preventServerStart: true, instrumentNest: false });
    const headers: Record<string, string> = {};
    t.tracer.startActiveSpan('outbox.publish', (span) => {
      propagation.inject(context.active(), headers);
      span.end();
    });
    expect(headers['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const extracted = propagation.extract(context.active(), headers);
    expect(trace.getSpanContext(extracted)?.traceId).toBe(headers['traceparent']?.split('-')[1]);
  });
});
