import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { INestApplication } from '@nestjs/common';
import { isFleetError } from '@fleet/errors';
import { ChangeLogModule } from './change-log.module';
import { loadChangeLogConfig } from './config';
import type { ChangeLogConfig } from './config';

/** Builds and starts the service (HTTP for health, the JetStream consumer). Used by main and by tests. */
export async function startChangeLog(config: ChangeLogConfig): Promise<INestApplication> {
  const app = await NestFactory.create(ChangeLogModule.forRoot(config), { logger: ['log', 'warn', 'error'] });
  app.enableShutdownHooks(['SIGTERM', 'SIGINT']);
  await app.listen(config.httpPort, '0.0.0.0');
  return app;
}

async function main(): Promise<void> {
  let config: ChangeLogConfig;
  try {
    config = loadChangeLogConfig(process.env);
  } catch (e) {
    console.error(`change-log: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
    process.exit(78); // EX_CONFIG
  }
  const app = await startChangeLog(config);
  new Logger('change-log').log(`ready: health on :${config.httpPort}, namespace ${config.namespace}`);
  void app;
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error('change-log: failed to start:', e);
    process.exit(1);
  });
}
