import { Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { DeltaStore, MerkleService, Nudger, PullService } from '@fleet/delta';
import { JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { postgresReadinessCheck, ServiceInfraModule } from '@fleet/server-store';
import { HealthModule, operatorStatusController, STATUS_FACTS, syncMetrics, SyncMetricsModule } from '@fleet/observability';
import type { StrategyConfig } from '@fleet/sync-core';
import type { DeltaConfig } from './config';
import { AgentsController, deltaController } from './delta.controller';
import { deltaOperatorController, deltaStatusFacts } from './operator';


/** Wiring only: connections, metrics, health, the store, the pull / Merkle services, the nudger. */
@Module({})
export class DeltaModule {
  static forRoot(config: DeltaConfig, transport: JetStreamServer, strategies: StrategyConfig): DynamicModule {
    const s = subjects(config.namespace);
    const infra = ServiceInfraModule.forRoot({ applicationName: 'delta-calculator', databaseUrl: config.databaseUrl, dbPoolSize: config.dbPoolSize, transport });
    return {
      module: DeltaModule,
      imports: [
        infra,
        SyncMetricsModule.forRoot(),
        HealthModule.forRootAsync({
          inject: [DataSource, JetStreamServer],
          useFactory: (ds: DataSource, js: JetStreamServer) => ({ checks: [postgresReadinessCheck(ds), natsReadinessCheck(js)] }),
        }),
      ],
      controllers: [deltaController(config), AgentsController, deltaOperatorController(config, strategies), operatorStatusController('delta-calculator', config.namespace, s.queueGroups.pull)],
      providers: [
        { provide: STATUS_FACTS, inject: [DataSource], useFactory: (ds: DataSource) => () => deltaStatusFacts(ds) },
        { provide: DeltaStore, inject: [DataSource], useFactory: (ds: DataSource) => new DeltaStore(ds, strategies) },
        { provide: PullService, inject: [DeltaStore], useFactory: (st: DeltaStore) => new PullService(st, { compressAbove: config.compressAbove }) },
        {
          provide: MerkleService,
          inject: [DeltaStore, PullService],
          useFactory: (st: DeltaStore, p: PullService) =>
            new MerkleService(st, p, { onDifferences: (n) => syncMetrics().consistencyViolations.add(n, { side: 'server' }) }),
        },
        {
          provide: Nudger,
          inject: [DeltaStore],
          useFactory: (st: DeltaStore) => new Nudger((sc) => st.subscribers(sc), { publishCore: (subj, p) => transport.bus.publishCore(subj, p) }, s, config.nudgeWindow),
        },
        {
          // Background catch-up of the record-states projection, so Merkle answers and resyncs start warm.
          provide: 'Projector',
          inject: [DeltaStore],
          useFactory: (st: DeltaStore) => {
            let running: Promise<unknown> = Promise.resolve();
            const timer = setInterval(() => {
              running = st.project().catch(() => undefined);
            }, config.projectEvery);
            timer.unref();
            return { beforeApplicationShutdown: async () => (clearInterval(timer), await running) };
          },
        },
        {
          // Before the pool closes (ServiceInfraModule closes it in onApplicationShutdown): the nudger's last flush reads agent groups.
          provide: 'NudgerStopper',
          inject: [Nudger],
          useFactory: (n: Nudger) => ({ beforeApplicationShutdown: () => n.stop() }),
        },
      ],
      exports: [DeltaStore],
    };
  }
}
