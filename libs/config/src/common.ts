/**
 * Options every service shares, so each reads them under the same names with the same checks.
 * Each is a function so that an app can override the default or the description.
 */
import { DEFAULT_NAMESPACE, isSubjectToken } from '@fleet/contracts';
import type { OptionSpec } from './define';
import { envDuration, envEnum, envInt, envList, envString, envUrl } from './values';

type Overrides = { readonly default?: string; readonly description?: string };

/**
 * NATS servers, comma-separated (`nats://n1:4222,nats://n2:4222`): the client fails over
 * between them. Falls back to the shared `FLEET_NATS_URL`. Pass the list as `servers` to `connect`.
 */
export function natsUrlOption(o: Overrides = {}) {
  return {
    env: 'NATS_URL',
    schema: envList(envUrl(['nats', 'tls', 'ws', 'wss'])),
    default: o.default ?? 'nats://127.0.0.1:4222',
    description: o.description ?? 'NATS servers, comma-separated',
    fallback: ['FLEET_NATS_URL'],
  } as const satisfies OptionSpec;
}

/**
 * A NATS credentials file (`.creds`: user JWT and nkey seed, `fleetctl nats ...`:
 * docs/nats-credentials.md), for a client whose server requires them. Read at every (re)connect.
 */
export function natsCredsFileOption(who: string, fallback: readonly string[] = []) {
  return {
    env: 'CREDS_FILE',
    schema: envString({ min: 1 }),
    optional: true,
    description: `${who} NATS credentials file (.creds), when the server requires them`,
    fallback,
  } as const satisfies OptionSpec;
}

/**
 * TLS to NATS (libs/messaging `NatsTlsFiles`): the CA of the servers' certificates, and this client's
 * certificate and key when the servers verify clients. `shared`: also read the deployment-wide
 * `FLEET_NATS_CA_FILE`, `FLEET_NATS_CERT_FILE`, `FLEET_NATS_KEY_FILE` (services).
 */
export function natsTlsOptions(shared = false) {
  const file = (env: string, description: string) =>
    ({ env, schema: envString({ min: 1 }), optional: true, description, fallback: shared ? [`FLEET_${env}`] : [] }) as const satisfies OptionSpec;
  return {
    natsCaFile: file('NATS_CA_FILE', "CA certificate (PEM) of the NATS servers' certificates: TLS with a private CA (a tls:// URL alone trusts the system's CAs)"),
    natsCertFile: file('NATS_CERT_FILE', 'client certificate (PEM), when the NATS servers verify clients (mutual TLS); with NATS_KEY_FILE'),
    natsKeyFile: file('NATS_KEY_FILE', 'private key (PEM) of NATS_CERT_FILE'),
  } as const;
}

/**
 * PostgreSQL connection URL; secret (it may hold a password). Falls back to `DATABASE_URL`.
 * The default is the development database that `npm run setup` creates.
 */
export function databaseUrlOption(o: Overrides = {}) {
  return {
    env: 'DATABASE_URL',
    schema: envUrl(['postgres', 'postgresql']),
    default: o.default ?? 'postgres://postgres@127.0.0.1:5432/fleet_sync',
    description: o.description ?? 'PostgreSQL connection URL',
    fallback: ['DATABASE_URL'],
    secret: true,
  } as const satisfies OptionSpec;
}

/** The subject namespace (`subjects(ns)`): deployments or test files sharing a NATS server differ here. */
export function namespaceOption(o: Overrides = {}) {
  return {
    env: 'NAMESPACE',
    schema: envString({ max: 64, pattern: /^[A-Za-z0-9_-]+$/, patternHint: 'expected a NATS subject token: [A-Za-z0-9_-]' }).refine(isSubjectToken, {
      error: 'expected a NATS subject token',
    }),
    default: o.default ?? DEFAULT_NAMESPACE,
    description: o.description ?? 'subject namespace: every subject and stream of the deployment lives under it',
    fallback: ['FLEET_NAMESPACE'],
  } as const satisfies OptionSpec;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The least severe level logged. */
export function logLevelOption(o: Overrides = {}) {
  return {
    env: 'LOG_LEVEL',
    schema: envEnum(LOG_LEVELS),
    default: o.default ?? 'info',
    description: o.description ?? 'least severe log level written',
    fallback: ['FLEET_LOG_LEVEL'],
  } as const satisfies OptionSpec;
}

/**
 * The options every server service has besides NATS, PostgreSQL, namespace and log level: where it
 * listens, where its telemetry goes, how its streams replicate, and how long SIGTERM may drain.
 * `httpPort` defaults differ per service so that several run side by side on one host.
 */
export function serviceOptions(o: { readonly httpPort: string; readonly dbPool?: string; readonly dbPoolDescription?: string }) {
  return {
    httpPort: {
      env: 'HTTP_PORT',
      schema: envInt({ min: 0, max: 65535 }),
      default: o.httpPort,
      description: 'port of /health/live, /health/ready and the service API (0: any free port)',
      fallback: ['FLEET_HTTP_PORT'],
    },
    metricsPort: {
      env: 'METRICS_PORT',
      schema: envInt({ min: 0, max: 65535 }),
      default: '9464',
      description: 'port of the Prometheus /metrics endpoint (0: no metrics server)',
      fallback: ['FLEET_METRICS_PORT'],
    },
    otlpEndpoint: {
      env: 'OTLP_ENDPOINT',
      schema: envUrl(['http', 'https']),
      optional: true,
      description: 'OTLP/HTTP traces endpoint; unset: spans are not exported (trace context still propagates)',
      fallback: ['OTEL_EXPORTER_OTLP_ENDPOINT'],
    },
    streamReplicas: {
      env: 'STREAM_REPLICAS',
      schema: envInt({ min: 1, max: 5 }),
      default: '1',
      description: 'JetStream replicas of the streams this service declares; at most the number of NATS servers',
      fallback: ['FLEET_STREAM_REPLICAS'],
    },
    natsCredsFile: natsCredsFileOption("the service's", ['FLEET_NATS_CREDS_FILE']),
    ...natsTlsOptions(true),
    dbPoolSize: { env: 'DB_POOL', schema: envInt({ min: 1, max: 200 }), default: o.dbPool ?? '4', description: o.dbPoolDescription ?? 'PostgreSQL pool size' },
    shutdownTimeout: {
      env: 'SHUTDOWN_TIMEOUT',
      schema: envDuration({ min: 1000, max: 600_000 }),
      default: '25s',
      description: 'SIGTERM: time to drain before exiting anyway; keep under terminationGracePeriodSeconds',
    },
  } as const;
}
