import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { listenHttp, nestAppOptions, reportRefusedRequest } from '@fleet/observability';
import { subjects } from '@fleet/contracts';
import { JetStreamServer, natsFilesOf } from '@fleet/messaging';
import { ChangeLogModule } from './change-log.module';
import type { ChangeLogConfig } from './config';
import { changeLogStreams } from './streams';


/**
 * Builds and starts the service: a hybrid Nest app, HTTP for the health endpoints and the
 * JetStream transport for the push consumer. Resolves once the consumer is bound and HTTP listens.
 * Used by main.ts (after telemetry started) and by in-process tests. `app.close()` drains: readiness
 * turns false, the consumer stops pulling and settles what is in hand, then the pool closes.
 */
export async function createChangeLogApp(config: ChangeLogConfig): Promise<INestApplication> {
  const s = subjects(config.namespace);
  const logger = new Logger('change-log');
  const transport = new JetStreamServer({
    connection: { servers: config.natsUrl, name: 'change-log', ...natsFilesOf(config, config.natsCredsFile) },
    subjects: s,
    streams: changeLogStreams(s, config),
    deadLetter: { replicas: config.streamReplicas },
    consumeDefaults: { onError: (e, where) => logger.warn(`consumer ${where}: ${String(e)}`) },
    onRefusedRequest: reportRefusedRequest('change-log', (m) => logger.warn(m)),
  });
  const app = await NestFactory.create(ChangeLogModule.forRoot(config, transport), nestAppOptions(config.logLevel));
  app.connectMicroservice({ strategy: transport }, { inheritAppConfig: false });
  await app.startAllMicroservices();
  await listenHttp(app, config.httpPort);
  logger.log(`ready: health on :${(app.getHttpServer() as { address(): { port: number } }).address().port}, consuming ${s.pushAll} as ${s.ns}-change-log`);
  return app;
}
