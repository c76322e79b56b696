import { Global, Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { HealthModule, SYNC_METRICS, SyncMetricsModule } from '@fleet/observability';
import type { SyncMetrics } from '@fleet/observability';
import { openServerDataSource, PostgresChangeLog, postgresReadinessCheck } from '@fleet/server-store';
import type { ChangeLogConfig } from './config';
import { Failpoints } from './failpoints';
import { PROCESSOR_FAILPOINTS, PushBatchProcessor } from './push-batch.processor';
import { pushController } from './push.controller';
import { CHANGE_LOG_CONFIG } from './tokens';

/**
 * The connections, shared app-wide: PostgreSQL (migrated at start) and the JetStream transport
 * (built in bootstrap.ts, handed to Nest both as the microservice strategy and as a provider, so
 * the health check and the processor reach the same connection).
 */
@Global()
@Module({})
class InfraModule {
  static forRoot(config: ChangeLogConfig, transport: JetStreamServer): DynamicModule {
    return {
      module: InfraModule,
      providers: [
        { provide: CHANGE_LOG_CONFIG, useValue: config },
        { provide: JetStreamServer, useValue: transport },
        {
          provide: DataSource,
          useFactory: () => openServerDataSource({ url: config.databaseUrl, poolSize: config.dbPoolSize, applicationName: 'change-log' }),
        },
        {
          // onApplicationShutdown runs after the microservice drained (Nest: beforeShutdown, dispose, shutdown).
          provide: 'DataSourceCloser',
          inject: [DataSource],
          useFactory: (ds: DataSource) => ({ onApplicationShutdown: () => ds.destroy() }),
        },
      ],
      exports: [CHANGE_LOG_CONFIG, JetStreamServer, DataSource],
    };
  }
}

/** Wiring only: config, connections, metrics, health, the processor and the push consumer. */
@Module({})
export class ChangeLogModule {
  static forRoot(config: ChangeLogConfig, transport: JetStreamServer): DynamicModule {
    const s = subjects(config.namespace);
    return {
      module: ChangeLogModule,
      imports: [
        InfraModule.forRoot(config, transport),
        SyncMetricsModule.forRoot(),
        HealthModule.forRootAsync({
          inject: [DataSource, JetStreamServer],
          useFactory: (ds: DataSource, js: JetStreamServer) => ({
            checks: [postgresReadinessCheck(ds), natsReadinessCheck(js)],
          }),
        }),
      ],
      controllers: [pushController(config)],
      providers: [
        {
          provide: PostgresChangeLog,
          inject: [DataSource],
          useFactory: (ds: DataSource) => new PostgresChangeLog(ds, { lockTimeoutMs: config.lockTimeout }),
        },
        {
          provide: PushBatchProcessor,
          inject: [PostgresChangeLog, JetStreamServer, SYNC_METRICS],
          useFactory: (log: PostgresChangeLog, js: JetStreamServer, metrics: SyncMetrics) =>
            new PushBatchProcessor(log, { publish: (subject, payload, opts) => js.bus.publish(subject, payload, opts) }, s, {
              metrics,
              failpoints: Failpoints.parse(config.failpoints, PROCESSOR_FAILPOINTS),
            }),
        },
      ],
    };
  }
}
