/**
 * version-vector's configuration: every option declared once. Variables are
 * `FLEET_VERSIONVECTOR_<NAME>`, then the shared fallback named in the table (`--help`).
 */
import { databaseUrlOption, defineConfig, envDuration, envInt, logLevelOption, namespaceOption, natsUrlOption, operatorTokenOption, strategyConfigOptions, serviceOptions } from '@fleet/config';
import type { ConfigOf } from '@fleet/config';

export const versionVectorConfig = defineConfig({
  prefix: 'FLEET_VERSIONVECTOR_',
  options: {
    natsUrl: natsUrlOption(),
    databaseUrl: databaseUrlOption(),
    namespace: namespaceOption(),
    logLevel: logLevelOption(),
    ...serviceOptions({ httpPort: '3000', dbPool: '4' }),
    ...strategyConfigOptions(),
    operatorToken: operatorTokenOption('status and verify (NATS `admin.status.version-vector`, `admin.verify.version-vector`)'),
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
    batchConcurrency: {
      env: 'BATCH_CONCURRENCY',
      schema: envInt({ min: 1, max: 8 }),
      default: '2',
      description: 'batches of appended events applied at once: while one waits on PostgreSQL the next reads and folds (records are locked in one sorted order, so batches sharing records wait for each other); 1 = one at a time',
    },
    batchLinger: {
      env: 'BATCH_LINGER',
      schema: envDuration({ min: 0, max: 1000 }),
      default: '5ms',
      description: 'how long to wait for more appended events after the first',
    },
    sweepInterval: {
      env: 'SWEEP_INTERVAL',
      schema: envDuration({ min: 10, max: 600_000 }),
      default: '1s',
      description: 'how often the log sweep applies what the log holds after the projection cursor (changes whose appended event was lost); also run right after each batch of events',
    },
    sweepBatch: {
      env: 'SWEEP_BATCH',
      schema: envInt({ min: 1, max: 10_000 }),
      default: '1000',
      description: 'logged changes scanned per sweep transaction',
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
  },
});

export type VersionVectorConfig = ConfigOf<typeof versionVectorConfig>;
