/**
 * Entry point: `node -r ./scripts/register.js apps/conflict-resolver/src/main.ts` (`--help` lists the
 * configuration). Order matters:
 * 1. configuration (no Nest loaded yet): a bad variable prints every problem and the option
 *    table, and exits 78 (EX_CONFIG);
 * 2. telemetry, BEFORE anything loads @nestjs/core (the Nest instrumentation patches it on load);
 * 3. the Nest app, through a dynamic import;
 * 4. SIGTERM/SIGINT: drain (stop pulling, finish and ack what is in hand), flush telemetry, exit 0;
 *    exit 1 if the drain exceeds the shutdown timeout (the unacked messages are redelivered).
 */
import type { INestApplication } from '@nestjs/common';
import { describeConfig, loadConfig, loadStrategyConfig, redactConfig, unknownVariables } from '@fleet/config';
import { isFleetError } from '@fleet/errors';
import { startTelemetry } from '@fleet/observability';
import type { StrategyConfig } from '@fleet/sync-core';
import { conflictResolverConfig } from './config';
import type { ConflictResolverConfig } from './config';

function readConfig(): ConflictResolverConfig {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(`conflict-resolver: applies each collection's conflict strategy, keeps the conflict log and the manual queue, serves the operator API.\n\nConfiguration (environment variables):\n\n${describeConfig(conflictResolverConfig)}`);
    process.exit(0);
  }
  try {
    return loadConfig(conflictResolverConfig);
  } catch (e) {
    console.error(`conflict-resolver: bad configuration: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
    console.error(`\nConfiguration (environment variables):\n\n${describeConfig(conflictResolverConfig)}`);
    process.exit(78); // EX_CONFIG
  }
}

const config = readConfig();
for (const v of unknownVariables(conflictResolverConfig)) console.warn(`conflict-resolver: ${v} is not a known option (typo?); see --help`);

function readStrategies(): StrategyConfig {
  try {
    return loadStrategyConfig({ json: config.strategies, file: config.strategiesFile });
  } catch (e) {
    console.error(`conflict-resolver: bad strategy configuration: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
    process.exit(78); // EX_CONFIG
  }
}
const strategies = readStrategies();

const telemetry = startTelemetry({
  serviceName: 'conflict-resolver',
  serviceInstanceId: process.env['HOSTNAME'] ?? `local-${process.pid}`,
  prometheusPort: config.metricsPort,
  preventServerStart: config.metricsPort === 0,
  ...(config.otlpEndpoint === undefined ? {} : { otlpEndpoint: config.otlpEndpoint }),
});

let stopping = false;
// A dynamic import, so that @nestjs/core loads only now, after the instrumentation is registered.
const started: Promise<INestApplication> = import('./bootstrap').then(({ createConflictResolverApp }) => {
  console.log(`conflict-resolver: starting with ${JSON.stringify(redactConfig(conflictResolverConfig, config))}`);
  return createConflictResolverApp(config, strategies);
});
started.catch(async (e: unknown) => {
  console.error('conflict-resolver: failed to start:', e);
  await telemetry.shutdown().catch(() => undefined);
  process.exit(1);
});

async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`conflict-resolver: ${signal}: draining`);
  const timer = setTimeout(() => {
    console.error(`conflict-resolver: drain exceeded ${config.shutdownTimeout} ms, exiting; unacked events will be redelivered`);
    process.exit(1);
  }, config.shutdownTimeout);
  timer.unref();
  try {
    const app = await started; // a signal during start: finish starting, then drain
    await app.close();
    await telemetry.shutdown();
    console.log('conflict-resolver: drained, exiting');
    process.exit(0);
  } catch (e) {
    console.error('conflict-resolver: shutdown failed:', e);
    process.exit(1);
  }
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown(signal));
