/**
 * Entry point: `node -r ./scripts/register.js apps/change-log/src/main.ts` (`--help` lists the
 * configuration). Start-up and drain order: `runService` (libs/observability).
 */
import { runService } from '@fleet/observability';
import { changeLogConfig } from './config';

runService({
  name: 'change-log',
  summary: "appends agents' push batches to the change log.",
  config: changeLogConfig,
  warnings: (c) => (c.failpoints === undefined ? [] : [`FAILPOINTS ARMED (${c.failpoints}): test-only fault injection`]),
  // A dynamic import, so that @nestjs/core loads only after the instrumentation is registered.
  start: async (c) => (await import('./bootstrap')).createChangeLogApp(c),
});
