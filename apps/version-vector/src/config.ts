/**
 * version-vector's configuration: every option declared once. Variables are
 * `FLEET_VERSIONVECTOR_<NAME>`, then the shared fallback named in the table (`--help`).
 */
import { databaseUrlOption, defineConfig, envDuration, envInt, envUrl, logLevelOption, namespaceOption, natsUrlOption, strategyConfigOptions } from '@fleet/config';
import type { ConfigOf } from '@fleet/config';

export const versionVectorConfig = defineConfig({
  prefix: 'FLEET_VERSIONVECTOR_',
  options: {
    natsUrl: natsUrlOption(),
    databaseUrl: databaseUrlOption(),
    namespace: namespaceOption(),
    logLevel: logLevelOption(),
    ...strategyConfigOptions(),
    httpPort: {
      env: 'HTTP_PORT',
      schema: envInt({ min: 0, max: 65535 }),
      default: '3000',
      description: 'port of /health/live and /health/ready (0: any free port)',
      fallback: ['FLEET_HTTP_PORT'],
    },
    metricsPort: {
      env: 'METRICS_PORT',
      schema: envInt({ min: 0, max: 65535 }),
      default: '9464',
      description: 'port of the Prometheus /metrics endpoint (0: no metrics server)',
      fallback: ['FLEET_METRICS_PORT'],
    },
    otlpEndpoint: {
      env: 'OTLP_ENDPOINT',
      schema: envUrl(['http', 'https']),
      optional: true,
      description: 'OTLP/HTTP traces endpoint; unset: spans are not exported (trace context still propagates)',
      fallback: ['OTEL_EXPORTER_OTLP_ENDPOINT'],
    },
    streamReplicas: {
      env: 'STREAM_REPLICAS',
      schema: envInt({ min: 1, max: 5 }),
      default: '1',
      description: 'JetStream replicas of the streams this service declares; at most the number of NATS servers',
      fallback: ['FLEET_STREAM_REPLICAS'],
    },
    dbPoolSize: { env: 'DB_POOL', schema: envInt({ min: 1, max: 200 }), default: '4', description: 'PostgreSQL pool size' },
    stateCache: {
      env: 'STATE_CACHE',
      schema: envInt({ min: 0, max: 1_000_000 }),
      default: '20000',
      description: 'record states kept in memory after commit (LRU), so a record applied again is not re-read and re-validated; 0 disables',
    },
    batchMessages: {
      env: 'BATCH_MESSAGES',
      schema: envInt({ min: 1, max: 100 }),
      default: '20',
      description: 'appended events applied to the projection in one transaction',
    },
    batchLinger: {
      env: 'BATCH_LINGER',
      schema: envDuration({ min: 0, max: 1000 }),
      default: '5ms',
      description: 'how long to wait for more appended events after the first',
    },
    ackWait: {
      env: 'ACK_WAIT',
      schema: envDuration({ min: 1000, max: 600_000 }),
      default: '30s',
      description: 'JetStream ack wait of the appended-events consumer',
    },
    maxDeliver: {
      env: 'MAX_DELIVER',
      schema: envInt({ min: 2, max: 100 }),
      default: '10',
      description: 'deliveries of a transiently failing event before it is dead-lettered (FLEET_MSG_001)',
    },
    shutdownTimeout: {
      env: 'SHUTDOWN_TIMEOUT',
      schema: envDuration({ min: 1000, max: 600_000 }),
      default: '25s',
      description: 'SIGTERM: time to drain before exiting anyway; keep under terminationGracePeriodSeconds',
    },
  },
});

export type VersionVectorConfig = ConfigOf<typeof versionVectorConfig>;
