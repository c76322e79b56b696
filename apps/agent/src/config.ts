/**
 * The agent's configuration (prefix `FLEET_AGENT_`), validated at start with libs/config.
 * `agent --help` and docs/agent.md print the table from `describeConfig(agentConfig)`.
 */
import { join } from 'node:path';
import { isAgentId, isHostScope, isScope, isValidCollection } from '@fleet/contracts';
import { defineConfig, envDuration, envInt, envString, envUrl, loadConfig, loadStrategyConfig, logLevelOption, namespaceOption, natsCredsFileOption, natsTlsOptions, natsUrlOption, strategyConfigOptions } from '@fleet/config';
import type { ConfigOf, Env } from '@fleet/config';
import type { StrategyConfig } from '@fleet/sync-core';
import { FleetError } from '@fleet/errors';

export const agentConfig = defineConfig({
  prefix: 'FLEET_AGENT_',
  options: {
    agentId: {
      env: 'ID',
      schema: envString({ min: 1, max: 128 }).refine(isAgentId, { error: 'expected an agent id: 1-128 of [A-Za-z0-9_-] (a NATS subject token), not "server"' }),
      description: "this host's agent id: the origin of its changes and the token of its subjects",
    },
    natsUrl: natsUrlOption(),
    namespace: namespaceOption(),
    credentialsFile: natsCredsFileOption("this agent's"),
    ...natsTlsOptions(),
    coordinatorKeyFile: {
      env: 'COORDINATOR_KEY_FILE',
      schema: envString({ min: 1 }),
      optional: true,
      description: "critical operations: the coordinator's Ed25519 public key (PEM file, the pair of change-log's FLEET_CHANGELOG_SIGNING_KEY_FILE); given, this host acts only on prepares, decisions and status answers the coordinator signed",
    },
    groups: {
      env: 'GROUPS',
      schema: envString({ min: 1 }),
      optional: true,
      description: 'groups this agent belongs to, comma-separated: their `group.<name>` scopes are pulled too',
    },
    ...strategyConfigOptions(),
    dataDir: { env: 'DATA_DIR', schema: envString({ min: 1 }), default: '/var/lib/fleet-agent', description: 'directory of the local store (agent.db) and, by default, its backups' },
    scopes: {
      env: 'SCOPES',
      schema: envString({ min: 1 }),
      optional: true,
      description: 'scopes this agent holds, comma-separated (default: host.<id>,fleet)',
    },
    verifyCollections: {
      env: 'VERIFY_COLLECTIONS',
      schema: envString({ min: 1 }),
      optional: true,
      description:
        '`agent run`: collections verified with the server (Merkle) in every scope, comma-separated, besides those the store holds records of (always verified): name the ones this host must hold, so that one it lost entirely is fetched again',
    },
    outboxMax: {
      env: 'OUTBOX_MAX',
      schema: envInt({ min: 10, max: 100_000_000 }),
      default: '100000',
      description: 'most unsent changes kept; past half of it unsent changes to one record are coalesced; at it new writes are refused (FLEET_AGENT_003)',
    },
    dbMaxMb: { env: 'DB_MAX_MB', schema: envInt({ min: 1 }), optional: true, description: 'size quota of agent.db in MiB; writes past it fail with FLEET_AGENT_002 (default: none)' },
    backupDir: { env: 'BACKUP_DIR', schema: envString({ min: 1 }), optional: true, description: 'where backup chains go (default: <data dir>/backups)' },
    captureInterval: { env: 'CAPTURE_INTERVAL', schema: envDuration({ min: 100 }), default: '2s', description: '`agent run`: how often direct SQL writes are turned into changes' },
    criticalRetention: {
      env: 'CRITICAL_RETENTION',
      schema: envDuration({ min: 86_400_000, max: 10 * 365 * 86_400_000 }),
      default: '30d',
      description:
        '`agent run`: how long a decided critical operation (committed or aborted here) stays staged before it is pruned; one in doubt never is, nor what the host holds (docs/critical-operations.md, "Retention")',
    },
    metricsPort: {
      env: 'METRICS_PORT',
      schema: envInt({ min: 0, max: 65535 }),
      default: '0',
      description: '`agent run`: port of a Prometheus /metrics endpoint with the agent\'s metrics (outbox, lag, failures, bytes; docs/observability.md), for a node-level scrape; 0: none',
    },
    metricsHost: {
      env: 'METRICS_HOST',
      schema: envString({ min: 1 }),
      default: '127.0.0.1',
      description: 'interface the metrics endpoint binds (loopback unless scraped from elsewhere)',
    },
    otlpEndpoint: {
      env: 'OTLP_ENDPOINT',
      schema: envUrl(['http', 'https']),
      optional: true,
      description: '`agent run`: OTLP/HTTP traces endpoint (a collector the host reaches); unset: spans are not exported, trace context still travels with every push',
      fallback: ['OTEL_EXPORTER_OTLP_ENDPOINT'],
    },
    logLevel: logLevelOption(),
  },
});

export interface AgentConfig extends Omit<ConfigOf<typeof agentConfig>, 'scopes' | 'groups' | 'verifyCollections'> {
  readonly scopes: readonly string[];
  readonly groups: readonly string[];
  /** FLEET_AGENT_VERIFY_COLLECTIONS: verified in every scope even when the store holds none of their records. */
  readonly verifyCollections: readonly string[];
  readonly backupDir: string;
  /** The conflict strategies: must be the server's, so agent and server compute the same views. */
  readonly strategyConfig: StrategyConfig;
}

/** Loads and checks the configuration; throws FLEET_CONFIG_001 naming every bad variable. */
export function loadAgentConfig(env: Env): AgentConfig {
  const c = loadConfig(agentConfig, env);
  const groups = c.groups === undefined ? [] : c.groups.split(',').map((g) => g.trim()).filter((g) => g !== '');
  const scopes = c.scopes === undefined ? [`host.${c.agentId}`, 'fleet', ...groups.map((g) => `group.${g}`)] : c.scopes.split(',').map((s) => s.trim());
  const verifyCollections = [...new Set(c.verifyCollections === undefined ? [] : c.verifyCollections.split(',').map((v) => v.trim()).filter((v) => v !== ''))];
  const problems: { variable: string; reason: string }[] = [];
  for (const v of verifyCollections) if (!isValidCollection(v)) problems.push({ variable: 'FLEET_AGENT_VERIFY_COLLECTIONS', reason: `${JSON.stringify(v)} is not a collection name` });
  for (const g of groups) if (!isScope(`group.${g}`)) problems.push({ variable: 'FLEET_AGENT_GROUPS', reason: `${JSON.stringify(g)} is not a group name` });
  for (const s of scopes) {
    if (!isScope(s)) problems.push({ variable: 'FLEET_AGENT_SCOPES', reason: `${JSON.stringify(s)} is not a scope ("fleet", "group.<name>" or "host.<agentId>")` });
    else if (s.startsWith('host.') && !isHostScope(s, c.agentId)) problems.push({ variable: 'FLEET_AGENT_SCOPES', reason: `${JSON.stringify(s)} is another host's scope` });
  }
  if (problems.length > 0) {
    throw new FleetError('FLEET_CONFIG_001', `${problems.length} problem(s):\n${problems.map((p) => `  ${p.variable}: ${p.reason}`).join('\n')}`, { details: { problems } });
  }
  const strategyConfig = loadStrategyConfig({ json: c.strategies, file: c.strategiesFile, prefix: agentConfig.prefix, env });
  return { ...c, scopes, groups, verifyCollections, strategyConfig, backupDir: c.backupDir ?? join(c.dataDir, 'backups') };
}
