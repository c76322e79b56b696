/**
 * Entry point: `node -r ./scripts/register.js apps/conflict-resolver/src/main.ts` (`--help` lists the
 * configuration). Start-up and drain order: `runService` (libs/observability).
 */
import { loadStrategyConfig } from '@fleet/config';
import { runService } from '@fleet/observability';
import { conflictResolverConfig } from './config';

runService({
  name: 'conflict-resolver',
  summary: "applies each collection's conflict strategy, keeps the conflict log and the manual queue, serves the operator API.",
  config: conflictResolverConfig,
  prepare: (c) => loadStrategyConfig({ json: c.strategies, file: c.strategiesFile, prefix: conflictResolverConfig.prefix }),
  // A dynamic import, so that @nestjs/core loads only after the instrumentation is registered.
  start: async (c, strategies) => (await import('./bootstrap')).createConflictResolverApp(c, strategies),
});
