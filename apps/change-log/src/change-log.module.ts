import { Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { HealthModule, SYNC_METRICS, SyncMetricsModule } from '@fleet/observability';
import type { SyncMetrics } from '@fleet/observability';
import { PostgresChangeLog, postgresReadinessCheck, ServiceInfraModule } from '@fleet/server-store';
import type { ChangeLogConfig } from './config';
import { Failpoints } from './failpoints';
import { PROCESSOR_FAILPOINTS, PushBatchProcessor } from './push-batch.processor';
import { pushController } from './push.controller';
import { CHANGE_LOG_CONFIG } from './tokens';


/** Wiring only: config, connections, metrics, health, the processor and the push consumer. */
@Module({})
export class ChangeLogModule {
  static forRoot(config: ChangeLogConfig, transport: JetStreamServer): DynamicModule {
    const s = subjects(config.namespace);
    return {
      module: ChangeLogModule,
      imports: [
        ServiceInfraModule.forRoot({ applicationName: 'change-log', databaseUrl: config.databaseUrl, dbPoolSize: config.dbPoolSize, transport, values: [{ provide: CHANGE_LOG_CONFIG, useValue: config }] }),
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
