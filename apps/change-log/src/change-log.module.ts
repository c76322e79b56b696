import { Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import type { ChangeLogConfig } from './config';
import { HealthController } from './health.controller';
import { PushBatchProcessor } from './push-batch.processor';
import { PushHandler } from './push.handler';
import { CHANGE_LOG_CONFIG } from './tokens';

/** Wiring only: PostgreSQL (migrated at start), NATS, the processor, the consumer, health. */
@Module({})
export class ChangeLogModule {
  static forRoot(config: ChangeLogConfig): DynamicModule {
    return {
      module: ChangeLogModule,
      controllers: [HealthController],
      providers: [
        { provide: CHANGE_LOG_CONFIG, useValue: config },
        {
          provide: DataSource,
          useFactory: () => openServerDataSource({ url: config.databaseUrl, poolSize: config.dbPoolSize, applicationName: 'change-log' }),
        },
        {
          provide: Messaging,
          useFactory: () => Messaging.connect({ servers: config.natsServers, name: 'change-log' }, subjects(config.namespace)),
        },
        { provide: PostgresChangeLog, inject: [DataSource], useFactory: (ds: DataSource) => new PostgresChangeLog(ds) },
        {
          provide: PushBatchProcessor,
          inject: [PostgresChangeLog, Messaging],
          useFactory: (log: PostgresChangeLog, m: Messaging) => new PushBatchProcessor(log, m, subjects(config.namespace)),
        },
        PushHandler,
        {
          // Closed last (after the consumer drained), so in-flight appends finish first.
          provide: 'DataSourceCloser',
          inject: [DataSource],
          useFactory: (ds: DataSource) => ({ onApplicationShutdown: () => ds.destroy() }),
        },
      ],
      exports: [DataSource, Messaging, PushHandler],
    };
  }
}
