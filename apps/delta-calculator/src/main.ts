import 'reflect-metadata';
import { loadConfig } from '@fleet/config';
import { isFleetError } from '@fleet/errors';
import { startTelemetry } from '@fleet/observability';
import { deltaConfig } from './config';
import type { DeltaConfig } from './config';

async function main(): Promise<void> {
  let config: DeltaConfig;
  try {
    config = loadConfig(deltaConfig, process.env);
  } catch (e) {
    console.error(`delta-calculator: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
    process.exit(78); // EX_CONFIG
  }
  // Telemetry first: the NestJS instrumentation patches @nestjs/core when it is first required.
  startTelemetry({ serviceName: 'delta-calculator' });
  const { createDeltaApp } = await import('./bootstrap');
  await createDeltaApp(config);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error('delta-calculator: failed to start:', e);
    process.exit(1);
  });
}
