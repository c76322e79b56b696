/** The delta-calculator's configuration (`FLEET_DELTA_<NAME>`, then the shared fallbacks). */
import { databaseUrlOption, defineConfig, envDuration, envInt, logLevelOption, namespaceOption, natsUrlOption, operatorTokenOption, serviceOptions, strategyConfigOptions } from '@fleet/config';
import type { ConfigOf } from '@fleet/config';

export const deltaConfig = defineConfig({
  prefix: 'FLEET_DELTA_',
  options: {
    natsUrl: natsUrlOption(),
    databaseUrl: databaseUrlOption(),
    namespace: namespaceOption(),
    logLevel: logLevelOption(),
    ...serviceOptions({ httpPort: '3002', dbPool: '8' }),
    // The same strategies as version-vector and conflict-resolver: the views it serves and hashes
    // for Merkle verification are computed with them.
    ...strategyConfigOptions(),
    operatorToken: operatorTokenOption(
      'group memberships (HTTP `PUT`/`GET /agents/:id/groups`, NATS `admin.agents.groups`), pull facts and sync health (`admin.agents.sync`, `admin.health`), verify and status (`admin.verify.delta-calculator`, `admin.status.delta-calculator`)',
    ),
    maxConcurrent: { env: 'MAX_CONCURRENT', schema: envInt({ min: 1, max: 256 }), default: '8', description: 'pull / merkle requests handled at once per replica' },
    nudgeWindow: { env: 'NUDGE_WINDOW', schema: envDuration({ min: 0, max: 10_000 }), default: '75ms', description: 'appended events within this window after the first give one nudge per subscribed agent' },
    compressAbove: { env: 'COMPRESS_ABOVE', schema: envInt({ min: 0, max: 1 << 20 }), default: '8192', description: 'gzip a pull reply above this many bytes (when the agent accepts gzip)' },
    pullFactsEvery: { env: 'PULL_FACTS_EVERY', schema: envDuration({ min: 100, max: 600_000 }), default: '5s', description: "how often the agents' pull facts held in memory (last pull, lag, last verification) are written to agent_pulls, in one upsert" },
    projectEvery: { env: 'PROJECT_EVERY', schema: envDuration({ min: 100, max: 600_000 }), default: '1s', description: 'how often the record-states projection catches up with the log in the background' },
  },
});

export type DeltaConfig = ConfigOf<typeof deltaConfig>;
