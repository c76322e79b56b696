/**
 * Entry point: `node -r ./scripts/register.js apps/version-vector/src/main.ts` (`--help` lists the
 * configuration). Start-up and drain order: `runService` (libs/observability).
 */
import { loadStrategyConfig } from '@fleet/config';
import { runService } from '@fleet/observability';
import { versionVectorConfig } from './config';

runService({
  name: 'version-vector',
  summary: "classifies appended changes against each record's version vector and maintains the records projection.",
  config: versionVectorConfig,
  prepare: (c) => loadStrategyConfig({ json: c.strategies, file: c.strategiesFile, prefix: versionVectorConfig.prefix }),
  // A dynamic import, so that @nestjs/core loads only after the instrumentation is registered.
  start: async (c, strategies) => (await import('./bootstrap')).createVersionVectorApp(c, strategies),
});
