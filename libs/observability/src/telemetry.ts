import { context, createNoopMeter, metrics, propagation, trace } from '@opentelemetry/api';
import type { Meter, Tracer } from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { NestInstrumentation } from '@opentelemetry/instrumentation-nestjs-core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, NodeTracerProvider, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { FleetError } from '@fleet/errors';
import { createSyncMetrics } from './metrics';
import type { SyncMetrics } from './metrics';

/** Default port of the Prometheus endpoint: the OpenTelemetry exporter's conventional 9464. */
export const DEFAULT_PROMETHEUS_PORT = 9464;
/** The instrumentation scope of the platform's own metrics and spans. */
export const SCOPE = '@fleet/observability';

export interface TelemetryOptions {
  /** `service.name` on every span and metric: the app name (`change-log`, `agent`, ...). */
  readonly serviceName: string;
  readonly serviceVersion?: string;
  /** `service.instance.id`, e.g. the pod name or the agent id. */
  readonly serviceInstanceId?: string;
  /** Port of the Prometheus `/metrics` server. Default 9464. */
  readonly prometheusPort?: number;
  /** Interface the metrics server binds. Default: all interfaces (the exporter's default). */
  readonly prometheusHost?: string;
  /** Do not open the metrics server (tests, or an app serving `metricsHandler` itself). */
  readonly preventServerStart?: boolean;
  /**
   * OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318` (`/v1/traces` is appended when the
   * path is empty) or a full `.../v1/traces` URL. Without it no span leaves the process, but trace
   * context is still created and propagated, so traces stay joined across services that do export.
   */
  readonly otlpEndpoint?: string;
  /** Head sampling ratio for new root traces (children follow their parent). Default 1. */
  readonly traceSampleRatio?: number;
  /** Extra span processors, e.g. a SimpleSpanProcessor over an InMemorySpanExporter in tests. */
  readonly spanProcessors?: readonly SpanProcessor[];
  /** Register the NestJS instrumentation (patches `@nestjs/core` when it is first required). Default true. */
  readonly instrumentNest?: boolean;
}

export interface Telemetry {
  readonly serviceName: string;
  readonly tracer: Tracer;
  readonly meter: Meter;
  /** The typed sync metrics (see metrics.ts), on this process's meter. */
  readonly metrics: SyncMetrics;
  /** The port the metrics server listens on (or would, with preventServerStart). */
  readonly prometheusPort: number;
  /** Resolves once the metrics server listens; rejects if it could not (e.g. the port is taken). */
  readonly metricsReady: Promise<void>;
  /** Serves the Prometheus text format; mount it yourself when preventServerStart is set. */
  readonly metricsHandler: PrometheusExporter['getMetricsRequestHandler'];
  /** Flushes spans, stops the metrics server, and unregisters the globals. Safe to call twice. */
  shutdown(): Promise<void>;
}

let current: Telemetry | undefined;

function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
  return url.toString();
}

/**
 * Starts tracing and metrics for this process and registers them as the OpenTelemetry globals.
 *
 * Call it FIRST in an app's entry file, before anything imports `@nestjs/core`: the NestJS
 * instrumentation patches the module when it is loaded, and a module loaded earlier stays
 * unpatched (no error, just no spans). Keep the entry file's imports to this one, start telemetry,
 * then `require` (or dynamically `import`) the Nest bootstrap. Under jest the module system is
 * jest's own, so nothing is patched there; everything else works.
 *
 * Idempotent per process: a second call with the same service name returns the running instance
 * (its options are ignored); a call with another name throws FLEET_OBS_002. After `shutdown()`
 * it may be started again (tests do).
 */
export function startTelemetry(options: TelemetryOptions): Telemetry {
  if (current) {
    if (current.serviceName === options.serviceName) return current;
    throw new FleetError('FLEET_OBS_002', `running: ${current.serviceName}, requested: ${options.serviceName}`);
  }

  const resource = resourceFromAttributes({
    [ATTR_SERVICE_NAME]: options.serviceName,
    'service.namespace': 'fleet-sync',
    ...(options.serviceVersion === undefined ? {} : { [ATTR_SERVICE_VERSION]: options.serviceVersion }),
    ...(options.serviceInstanceId === undefined ? {} : { 'service.instance.id': options.serviceInstanceId }),
  });

  // --- traces ---
  const processors: SpanProcessor[] = [...(options.spanProcessors ?? [])];
  if (options.otlpEndpoint !== undefined && options.otlpEndpoint !== '') {
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl(options.otlpEndpoint) })));
  }
  const ratio = options.traceSampleRatio ?? 1;
  const tracerProvider = new NodeTracerProvider({
    resource,
    spanProcessors: processors,
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) }),
  });
  // W3C trace context is what the messaging lib writes into NATS headers (`traceparent`).
  tracerProvider.register({
    propagator: new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  });

  // --- metrics ---
  const prometheusPort = options.prometheusPort ?? DEFAULT_PROMETHEUS_PORT;
  let settle!: (error: Error | void) => void;
  const metricsReady = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  // A metrics server that cannot start must not crash the service; whoever cares awaits metricsReady.
  metricsReady.catch(() => undefined);
  const exporter = new PrometheusExporter(
    {
      port: prometheusPort,
      endpoint: '/metrics',
      preventServerStart: options.preventServerStart ?? false,
      ...(options.prometheusHost === undefined ? {} : { host: options.prometheusHost }),
    },
    (error) => settle(error),
  );
  if (options.preventServerStart) settle();
  const meterProvider = new MeterProvider({ resource, readers: [exporter] });
  metrics.setGlobalMeterProvider(meterProvider);

  const unregister = options.instrumentNest === false
    ? () => undefined
    : registerInstrumentations({ instrumentations: [new NestInstrumentation()], tracerProvider, meterProvider });

  const meter = meterProvider.getMeter(SCOPE);
  let stopped: Promise<void> | undefined;
  const telemetry: Telemetry = {
    serviceName: options.serviceName,
    tracer: tracerProvider.getTracer(SCOPE),
    meter,
    metrics: createSyncMetrics(meter),
    prometheusPort,
    metricsReady,
    metricsHandler: (req, res) => exporter.getMetricsRequestHandler(req, res),
    shutdown() {
      stopped ??= (async () => {
        unregister();
        // Spans first (the batch processor flushes), then metrics (stops the HTTP server).
        const results = await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
        trace.disable();
        metrics.disable();
        propagation.disable();
        context.disable();
        if (current === telemetry) current = undefined;
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      })();
      return stopped;
    },
  };
  current = telemetry;
  return telemetry;
}

/** The running telemetry, if `startTelemetry` was called and not shut down. */
export function currentTelemetry(): Telemetry | undefined {
  return current;
}

let noopMetrics: SyncMetrics | undefined;

/**
 * The sync metrics of the running telemetry, or no-op instruments when telemetry is not started
 * (unit tests, tools): code that records metrics never has to check.
 */
export function syncMetrics(): SyncMetrics {
  if (current) return current.metrics;
  noopMetrics ??= createSyncMetrics(createNoopMeter());
  return noopMetrics;
}

/** `onRefusedRequest` of a service's JetStreamServer: counts the refusal (`requestsRefused`) and logs why. */
export function reportRefusedRequest(service: string, warn: (message: string) => void): (subject: string, reason: string) => void {
  return (subject, reason) => {
    syncMetrics().requestsRefused.add(1, { service });
    warn(`request on ${subject} not answered: ${reason}`);
  };
}
