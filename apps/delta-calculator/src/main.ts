/**
 * Entry point: `node -r ./scripts/register.js apps/delta-calculator/src/main.ts` (`--help` lists the
 * configuration). Start-up and drain order: `runService` (libs/observability).
 */
import { loadStrategyConfig } from '@fleet/config';
import { runService } from '@fleet/observability';
import { deltaConfig } from './config';

runService({
  name: 'delta-calculator',
  summary: 'answers pulls with compacted field-level deltas, nudges agents, and runs Merkle verification.',
  config: deltaConfig,
  prepare: (c) => loadStrategyConfig({ json: c.strategies, file: c.strategiesFile, prefix: deltaConfig.prefix }),
  // A dynamic import, so that @nestjs/core loads only after the instrumentation is registered.
  start: async (c, strategies) => (await import('./bootstrap')).createDeltaApp(c, strategies),
});
