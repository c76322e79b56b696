import { readFileSync } from 'node:fs';
import { Logger, Module } from '@nestjs/common';
import { FleetError } from '@fleet/errors';
import type { DynamicModule } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { subjects, tpcSigner } from '@fleet/contracts';
import { DeadLetterDesk, JetStreamServer, natsReadinessCheck } from '@fleet/messaging';
import { HealthModule, operatorStatusController, STATUS_FACTS, SYNC_METRICS, SyncMetricsModule } from '@fleet/observability';
import type { SyncMetrics } from '@fleet/observability';
import { CriticalCoordinator, PostgresChangeLog, PostgresParticipant, postgresReadinessCheck, ServiceInfraModule } from '@fleet/server-store';
import { checkChangeLogOperator, CRITICAL_FAILPOINTS, CriticalHttpController, CriticalRecovery, criticalApiController, NatsAgentParticipants } from './critical';
import type { ChangeLogConfig } from './config';
import { Failpoints } from './failpoints';
import { changeLogStatusFacts, operatorApiController } from './operator';
import { PROCESSOR_FAILPOINTS, PushBatchProcessor } from './push-batch.processor';
import { pushController } from './push.controller';
import { CHANGE_LOG_CONFIG } from './tokens';


function readSigningKey(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new FleetError('FLEET_CONFIG_001', `FLEET_CHANGELOG_SIGNING_KEY_FILE ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Wiring only: config, connections, metrics, health, the processor and the push consumer, the critical-operation coordinator, the operator API. */
@Module({})
export class ChangeLogModule {
  static forRoot(config: ChangeLogConfig, transport: JetStreamServer): DynamicModule {
    const s = subjects(config.namespace);
    // Parsed once against every known name: a typo fails the boot.
    const failpoints = Failpoints.parse(config.failpoints, [...PROCESSOR_FAILPOINTS, ...CRITICAL_FAILPOINTS]);
    // Read at boot: a missing or wrong key file stops the service with the reason.
    const sign = config.signingKeyFile === undefined ? undefined : tpcSigner(readSigningKey(config.signingKeyFile));
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
      controllers: [
        pushController(config),
        criticalApiController(config, sign),
        CriticalHttpController,
        operatorApiController(config),
        operatorStatusController('change-log', config.namespace, s.queueGroups.coordinator, (authorization, action) => checkChangeLogOperator(config.operatorToken, authorization, action)),
      ],
      providers: [
        { provide: DeadLetterDesk, inject: [JetStreamServer], useFactory: (js: JetStreamServer) => new DeadLetterDesk(() => js.bus, s) },
        { provide: STATUS_FACTS, inject: [DataSource, DeadLetterDesk], useFactory: (ds: DataSource, desk: DeadLetterDesk) => () => changeLogStatusFacts(ds, desk) },
        {
          provide: PostgresChangeLog,
          inject: [DataSource],
          useFactory: (ds: DataSource) => new PostgresChangeLog(ds, { lockTimeoutMs: config.lockTimeout }),
        },
        {
          provide: CriticalCoordinator,
          inject: [DataSource, JetStreamServer, SYNC_METRICS],
          useFactory: (ds: DataSource, js: JetStreamServer, metrics: SyncMetrics) => {
            const logger = new Logger('CriticalCoordinator');
            return new CriticalCoordinator(ds, new PostgresParticipant(ds), new NatsAgentParticipants(() => js.bus, config.namespace, sign), {
              voteTimeoutMs: config.voteTimeout,
              ...(failpoints.active ? { at: (step: 'votes-in' | 'decision-logged') => failpoints.hit(step === 'votes-in' ? 'critical.after-votes' : 'critical.after-decision') } : {}),
              onEvent: (e) => {
                if (e.type === 'decided') metrics.criticalDecisions.add(1, { decision: e.decision, by: e.by === 'begin' ? 'coordinator' : 'recovery' });
                if (e.type === 'phase2-failed') metrics.criticalPhase2Failures.add(1);
                if (e.type === 'pruned') {
                  if (e.committed > 0) metrics.criticalPruned.add(e.committed, { state: 'committed' });
                  if (e.aborted > 0) metrics.criticalPruned.add(e.aborted, { state: 'aborted' });
                  return; // CriticalRecovery logs one line per pass
                }
                if (e.type === 'decided') logger.log(`${e.txid}: ${e.decision}${e.reason === undefined ? '' : ` (${e.reason})`}${e.by === 'recover' ? ', by recovery' : ''}`);
                else if (e.type === 'completed') logger.log(`${e.txid}: ${e.state}`);
                else if (e.type === 'phase2-failed') logger.warn(`${e.txid}: decision not delivered to ${e.participant} (retried): ${e.error instanceof Error ? e.error.message : String(e.error)}`);
                else if (e.type === 'recovery-failed') logger.warn(`${e.txid}: recovery failed (retried): ${e.error instanceof Error ? e.error.message : String(e.error)}`);
                else logger.warn(`${e.txid}: a prepared transaction of the server ${e.logged ? 'outlived its decision' : 'unknown to the log'}: ${e.decision === 'commit' ? 'committed' : 'rolled back'} by recovery`);
              },
            });
          },
        },
        CriticalRecovery,
        {
          provide: PushBatchProcessor,
          inject: [PostgresChangeLog, JetStreamServer, SYNC_METRICS],
          useFactory: (log: PostgresChangeLog, js: JetStreamServer, metrics: SyncMetrics) =>
            new PushBatchProcessor(log, { publish: (subject, payload, opts) => js.bus.publish(subject, payload, opts) }, s, {
              metrics,
              failpoints,
            }),
        },
      ],
    };
  }
}
