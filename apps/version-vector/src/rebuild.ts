/**
 * `node -r ./scripts/register.js apps/version-vector/src/rebuild.ts`: empties the records projection
 * and replays the whole change log into it with the configured strategies (appends wait meanwhile;
 * version-vector replicas block on the truncated table until it commits, then carry on from each
 * row's last_seq). The conflict log is history and is left alone. Revs are assigned afresh: the
 * readers of `rev` (delta-calculator) must reset their cursors after a rebuild (docs/conflicts.md).
 */
import 'reflect-metadata';
import { loadConfig, loadStrategyConfig } from '@fleet/config';
import { isFleetError } from '@fleet/errors';
import { openServerDataSource, rebuildProjections, RecordsProjection } from '@fleet/server-store';
import { versionVectorConfig } from './config';

async function main(): Promise<void> {
  const config = loadConfig(versionVectorConfig);
  const strategies = loadStrategyConfig({ json: config.strategies, file: config.strategiesFile, prefix: versionVectorConfig.prefix });
  const ds = await openServerDataSource({ url: config.databaseUrl, poolSize: 2, applicationName: 'version-vector-rebuild' });
  try {
    const started = Date.now();
    const report = await rebuildProjections(ds, [new RecordsProjection(strategies)]);
    console.log(`rebuilt ${report.projections.join(', ')}: ${report.replayed} changes replayed up to seq ${report.headSeq} in ${Date.now() - started} ms`);
  } finally {
    await ds.destroy();
  }
}

main().catch((e: unknown) => {
  console.error(`rebuild-records: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
  process.exit(1);
});
