import { Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { HealthModule, operatorStatusController, STATUS_FACTS, SYNC_METRICS, SyncMetricsModule } from '@fleet/observability';
import type { SyncMetrics } from '@fleet/observability';
import { RecordsProjection, postgresReadinessCheck, ServiceInfraModule } from '@fleet/server-store';
import type { StrategyConfig } from '@fleet/sync-core';
import { appendedController } from './appended.controller';
import { ClassifyProcessor } from './classify.processor';
import { LogSweeper } from './log-sweeper';
import { verifyController, versionVectorOperatorCheck, versionVectorStatusFacts } from './operator';
import type { VersionVectorConfig } from './config';
import { STRATEGY_CONFIG, VERSION_VECTOR_CONFIG } from './tokens';


/** Wiring only: config, connections, metrics, health, the projection, the appended consumer, the log sweep and the operator API (status, verify). */
@Module({})
export class VersionVectorModule {
  static forRoot(config: VersionVectorConfig, strategies: StrategyConfig, transport: JetStreamServer): DynamicModule {
    const s = subjects(config.namespace);
    return {
      module: VersionVectorModule,
      imports: [
        ServiceInfraModule.forRoot({ applicationName: 'version-vector', databaseUrl: config.databaseUrl, dbPoolSize: config.dbPoolSize, transport, values: [{ provide: VERSION_VECTOR_CONFIG, useValue: config }, { provide: STRATEGY_CONFIG, useValue: strategies }] }),
        SyncMetricsModule.forRoot(),
        HealthModule.forRootAsync({
          inject: [DataSource, JetStreamServer],
          useFactory: (ds: DataSource, js: JetStreamServer) => ({
            checks: [postgresReadinessCheck(ds), natsReadinessCheck(js)],
          }),
        }),
      ],
      controllers: [appendedController(config), verifyController(config, strategies), operatorStatusController('version-vector', config.namespace, s.queueGroups.versionVector, versionVectorOperatorCheck(config))],
      providers: [
        { provide: STATUS_FACTS, inject: [DataSource], useFactory: (ds: DataSource) => () => versionVectorStatusFacts(ds) },
        {
          provide: ClassifyProcessor,
          inject: [DataSource, JetStreamServer, SYNC_METRICS],
          useFactory: (ds: DataSource, js: JetStreamServer, metrics: SyncMetrics) =>
            new ClassifyProcessor(ds, new RecordsProjection(strategies, { stateCacheSize: config.stateCache }), {
                publish: (subject, payload, opts) => js.bus.publish(subject, payload, opts),
                deadLetter: (payload, code, reason, origin) => js.bus.deadLetter(payload, undefined, code, reason, origin),
              }, s, metrics),
        },
        LogSweeper,
      ],
    };
  }
}
