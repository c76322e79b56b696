import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { loadStrategyConfig } from '@fleet/config';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { listenHttp, nestAppOptions, reportRefusedRequest } from '@fleet/observability';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsFilesOf } from '@fleet/messaging';
import type { StrategyConfig } from '@fleet/sync-core';
import { versionVectorConfig, type VersionVectorConfig } from './config';
import { versionVectorStreams } from './streams';
import { VersionVectorModule } from './version-vector.module';


/**
 * Builds and starts the service: a hybrid Nest app (HTTP health, the JetStream consumer of appended
 * events). `strategies` overrides the configured file/JSON (tests with code-registered rules).
 * `app.close()` drains: readiness false, stop pulling, settle what is in hand, close the pool.
 */
export async function createVersionVectorApp(config: VersionVectorConfig, strategies?: StrategyConfig): Promise<INestApplication> {
  const s = subjects(config.namespace);
  const logger = new Logger('version-vector');
  const strategyConfig = strategies ?? loadStrategyConfig({ json: config.strategies, file: config.strategiesFile, prefix: versionVectorConfig.prefix });
  const transport = new JetStreamServer({
    connection: { servers: config.natsUrl, name: 'version-vector', ...natsFilesOf(config, config.natsCredsFile) },
    subjects: s,
    streams: versionVectorStreams(s, config),
    deadLetter: { replicas: config.streamReplicas },
    consumeDefaults: { onError: (e, where) => logger.warn(`consumer ${where}: ${String(e)}`) },
    onRefusedRequest: reportRefusedRequest('version-vector', (m) => logger.warn(m)),
  });
  const app = await NestFactory.create(VersionVectorModule.forRoot(config, strategyConfig, transport), nestAppOptions(config.logLevel));
  app.connectMicroservice({ strategy: transport }, { inheritAppConfig: true });
  await app.startAllMicroservices();
  await listenHttp(app, config.httpPort);
  logger.log(`ready: health on :${(app.getHttpServer() as { address(): { port: number } }).address().port}, consuming ${s.appended} as ${s.ns}-version-vector`);
  return app;
}
