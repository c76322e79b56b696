import { Logger, Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import { DeltaStore, MerkleService, Nudger, PullFacts, PullService } from '@fleet/delta';
import { JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { postgresReadinessCheck, ServiceInfraModule } from '@fleet/server-store';
import { HealthModule, operatorStatusController, STATUS_FACTS, syncMetrics, SyncMetricsModule } from '@fleet/observability';
import type { StrategyConfig } from '@fleet/sync-core';
import type { DeltaConfig } from './config';
import { agentsController, deltaController } from './delta.controller';
import { deltaOperatorCheck, deltaOperatorController, deltaStatusFacts, deltaVerifyController } from './operator';


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
      controllers: [
        deltaController(config),
        agentsController(deltaOperatorCheck(config)),
        deltaOperatorController(config),
        deltaVerifyController(config, strategies),
        operatorStatusController('delta-calculator', config.namespace, s.queueGroups.pull, deltaOperatorCheck(config)),
      ],
      providers: [
        { provide: STATUS_FACTS, inject: [DataSource], useFactory: (ds: DataSource) => () => deltaStatusFacts(ds) },
        { provide: DeltaStore, inject: [DataSource], useFactory: (ds: DataSource) => new DeltaStore(ds, strategies) },
        {
          // Each agent's last pull, lag and verification: held in memory, one upsert every pullFactsEvery (never per request).
          provide: PullFacts,
          inject: [DataSource],
          useFactory: (ds: DataSource) => {
            const logger = new Logger('delta-calculator');
            const facts = new PullFacts(ds, { flushEvery: config.pullFactsEvery, now: Date.now, onFlushError: (e) => logger.warn(`pull facts not written (kept for the next flush): ${String(e)}`) });
            facts.start();
            return facts;
          },
        },
        {
          provide: PullService,
          inject: [DeltaStore, PullFacts],
          useFactory: (st: DeltaStore, facts: PullFacts) => new PullService(st, { compressAbove: config.compressAbove, observer: facts }),
        },
        {
          provide: MerkleService,
          inject: [DeltaStore, PullService, PullFacts],
          useFactory: (st: DeltaStore, p: PullService, facts: PullFacts) =>
            new MerkleService(st, p, { onDifferences: (n) => syncMetrics().consistencyViolations.add(n, { side: 'server' }), verified: (agentId, n) => facts.verified(agentId, n) }),
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
          // In this order, before the pool closes (ServiceInfraModule closes it in onApplicationShutdown):
          // the nudger's last flush (it reads agent groups and publishes), then the responders drain (the
          // transport's close, which Nest's dispose repeats as a no-op), then the pull facts' last flush:
          // no pull answered during the drain is left unrecorded.
          provide: 'ShutdownOrder',
          inject: [Nudger, PullFacts],
          useFactory: (n: Nudger, f: PullFacts) => ({
            beforeApplicationShutdown: async () => {
              await n.stop();
              await transport.close();
              await f.stop();
            },
          }),
        },
      ],
      exports: [DeltaStore, PullFacts],
    };
  }
}
