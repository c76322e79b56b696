import { Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { hostname } from 'node:os';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { HealthModule, operatorStatusController, STATUS_FACTS, SYNC_METRICS, SyncMetricsModule } from '@fleet/observability';
import type { SyncMetrics } from '@fleet/observability';
import { ConflictDesk, PostgresChangeLog, ServerWriter, postgresReadinessCheck, ServiceInfraModule } from '@fleet/server-store';
import type { StrategyConfig } from '@fleet/sync-core';
import { CaptureRunner, captureReadinessCheck } from './capture';
import type { ConflictResolverConfig } from './config';
import { conflictEventsController } from './conflict-events.controller';
import { conflictsApiController } from './conflicts-api.controller';
import { ConflictsHttpController } from './conflicts.controller';
import { checkResolverOperator } from './operator-token';
import { ConflictResolverPublisher } from './publisher';
import { RecordsController } from './records.controller';
import { ResolverService } from './resolver.service';
import { CONFLICT_RESOLVER_CONFIG, STRATEGY_CONFIG } from './tokens';


/** Wiring only: config, connections, metrics, health, the ServerWriter, the consumer and the operator API (HTTP and NATS). */
@Module({})
export class ConflictResolverModule {
  static forRoot(config: ConflictResolverConfig, strategies: StrategyConfig, transport: JetStreamServer): DynamicModule {
    const s = subjects(config.namespace);
    // Made by its provider; the health module (imported, so outside this module's injector) reads it when probed.
    let capture: CaptureRunner | undefined;
    const node = config.node ?? `server-${(process.env['HOSTNAME'] ?? hostname()).replace(/[^\x21-\x7e]/g, '')}-${process.pid}`;
    return {
      module: ConflictResolverModule,
      imports: [
        ServiceInfraModule.forRoot({ applicationName: 'conflict-resolver', databaseUrl: config.databaseUrl, dbPoolSize: config.dbPoolSize, transport, values: [{ provide: CONFLICT_RESOLVER_CONFIG, useValue: config }, { provide: STRATEGY_CONFIG, useValue: strategies }] }),
        SyncMetricsModule.forRoot(),
        HealthModule.forRootAsync({
          inject: [DataSource, JetStreamServer],
          useFactory: (ds: DataSource, js: JetStreamServer) => ({
            checks: [postgresReadinessCheck(ds), natsReadinessCheck(js), captureReadinessCheck(() => capture)],
          }),
        }),
      ],
      controllers: [
        conflictEventsController(config),
        conflictsApiController(config),
        ConflictsHttpController,
        RecordsController,
        operatorStatusController('conflict-resolver', config.namespace, s.queueGroups.admin, (authorization, action) => checkResolverOperator(config.operatorToken, authorization, action)),
      ],
      providers: [
        { provide: STATUS_FACTS, inject: [ConflictDesk], useFactory: (desk: ConflictDesk) => async () => ({ pendingConflicts: await desk.pendingCount() }) },
        { provide: ConflictResolverPublisher, inject: [JetStreamServer], useFactory: (js: JetStreamServer) => new ConflictResolverPublisher(js, s) },
        {
          provide: ServerWriter,
          inject: [DataSource],
          useFactory: (ds: DataSource) => new ServerWriter(ds, { changeLog: new PostgresChangeLog(ds), config: strategies, node }),
        },
        {
          provide: CaptureRunner,
          inject: [DataSource, ServerWriter, ConflictResolverPublisher, JetStreamServer, SYNC_METRICS],
          useFactory: (ds: DataSource, w: ServerWriter, pub: ConflictResolverPublisher, js: JetStreamServer, metrics: SyncMetrics) => (capture = new CaptureRunner(ds, w, pub, js, metrics, config)),
        },
        { provide: ConflictDesk, inject: [DataSource, ServerWriter], useFactory: (ds: DataSource, w: ServerWriter) => new ConflictDesk(ds, w) },
        {
          provide: ResolverService,
          inject: [ConflictDesk, ConflictResolverPublisher, SYNC_METRICS],
          useFactory: (desk: ConflictDesk, pub: ConflictResolverPublisher, metrics: SyncMetrics) =>
            new ResolverService(desk, () => pub.bus, s, metrics, { intervalMs: config.sweepInterval, ageMs: config.sweepAge }, undefined, config.txnConflicts),
        },
      ],
    };
  }
}
