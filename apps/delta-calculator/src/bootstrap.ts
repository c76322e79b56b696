import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { listenHttp, nestAppOptions, reportRefusedRequest } from '@fleet/observability';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsFilesOf } from '@fleet/messaging';
import type { StrategyConfig } from '@fleet/sync-core';
import type { DeltaConfig } from './config';
import { DeltaModule } from './delta.module';

/**
 * A hybrid Nest app: HTTP (health, operator API) and the JetStream transport (pull, pull-by-keys and
 * Merkle responders in the `queueGroups.pull` queue group; the nudge consumer). `app.close()` drains:
 * responders stop taking requests and finish those in hand, then the pool closes. The log stream is
 * change-log's: start this service after it has provisioned the stream.
 */
export async function createDeltaApp(config: DeltaConfig, strategies: StrategyConfig): Promise<INestApplication> {
  const s = subjects(config.namespace);
  const logger = new Logger('delta-calculator');
  const transport = new JetStreamServer({
    connection: { servers: config.natsUrl, name: 'delta-calculator', ...natsFilesOf(config, config.natsCredsFile) },
    subjects: s,
    deadLetter: { replicas: config.streamReplicas },
    consumeDefaults: { onError: (e, where) => logger.warn(`consumer ${where}: ${String(e)}`) },
    onRefusedRequest: reportRefusedRequest('delta-calculator', (m) => logger.warn(m)),
  });
  const app = await NestFactory.create(DeltaModule.forRoot(config, transport, strategies), nestAppOptions(config.logLevel));
  app.connectMicroservice({ strategy: transport }, { inheritAppConfig: true });
  await app.startAllMicroservices();
  await listenHttp(app, config.httpPort);
  logger.log(`ready: answering ${s.pullAll}, ${s.pullKeysAll}, ${s.originAll}, ${s.merkleAll} in ${s.queueGroups.pull}`);
  return app;
}
