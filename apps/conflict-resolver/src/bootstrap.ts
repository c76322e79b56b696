import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { loadStrategyConfig } from '@fleet/config';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { listenHttp, nestAppOptions, reportRefusedRequest } from '@fleet/observability';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsFilesOf } from '@fleet/messaging';
import type { StrategyConfig } from '@fleet/sync-core';
import { conflictResolverConfig, type ConflictResolverConfig } from './config';
import { conflictResolverStreams } from './streams';
import { CaptureRunner } from './capture';
import { ConflictResolverModule } from './conflict-resolver.module';


/**
 * Builds and starts the service: a hybrid Nest app (HTTP: operator API and health; the JetStream
 * consumer of conflict events; the NATS operator API). `strategies` overrides the configured file/JSON (tests with code-registered rules).
 * `app.close()` drains: readiness false, stop pulling, settle what is in hand, close the pool.
 */
export async function createConflictResolverApp(config: ConflictResolverConfig, strategies?: StrategyConfig): Promise<INestApplication> {
  const s = subjects(config.namespace);
  const logger = new Logger('conflict-resolver');
  const strategyConfig = strategies ?? loadStrategyConfig({ json: config.strategies, file: config.strategiesFile, prefix: conflictResolverConfig.prefix });
  const transport = new JetStreamServer({
    connection: { servers: config.natsUrl, name: 'conflict-resolver', ...natsFilesOf(config, config.natsCredsFile) },
    subjects: s,
    streams: conflictResolverStreams(s, config),
    deadLetter: { replicas: config.streamReplicas },
    consumeDefaults: { onError: (e, where) => logger.warn(`consumer ${where}: ${String(e)}`) },
    onRefusedRequest: reportRefusedRequest('conflict-resolver', (m) => logger.warn(m)),
  });
  const app = await NestFactory.create(ConflictResolverModule.forRoot(config, strategyConfig, transport), nestAppOptions(config.logLevel));
  app.connectMicroservice({ strategy: transport }, { inheritAppConfig: false });
  await app.startAllMicroservices();
  await listenHttp(app, config.httpPort);
  app.get(CaptureRunner).start();
  logger.log(`ready: health on :${(app.getHttpServer() as { address(): { port: number } }).address().port}, consuming ${s.classified('conflict')} as ${s.ns}-conflict-resolver, operator API on HTTP and ${s.conflictsApiAll}`);
  return app;
}
