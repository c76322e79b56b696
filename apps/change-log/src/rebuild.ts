/**
 * `node -r ./scripts/register.js apps/change-log/src/rebuild.ts`: empties the projections and
 * replays the change log into them (appends wait meanwhile). Configuration as for the service (FLEET_CHANGELOG_DATABASE_URL, then DATABASE_URL).
 */
import 'reflect-metadata';
import { isFleetError } from '@fleet/errors';
import { OriginsProjection, openServerDataSource, rebuildProjections } from '@fleet/server-store';
import { loadConfig } from '@fleet/config';
import { changeLogConfig } from './config';

async function main(): Promise<void> {
  const config = loadConfig(changeLogConfig);
  const ds = await openServerDataSource({ url: config.databaseUrl, poolSize: 2, applicationName: 'change-log-rebuild' });
  try {
    const started = Date.now();
    const report = await rebuildProjections(ds, [new OriginsProjection()]);
    console.log(`rebuilt ${report.projections.join(', ')}: ${report.replayed} changes replayed up to seq ${report.headSeq} in ${Date.now() - started} ms`);
  } finally {
    await ds.destroy();
  }
}

main().catch((e: unknown) => {
  console.error(`rebuild-projections: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
  process.exit(1);
});
