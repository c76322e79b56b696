/**
 * Options every service shares, so each reads them under the same names with the same checks.
 * Each is a function so that an app can override the default or the description.
 */
import { DEFAULT_NAMESPACE, isSubjectToken } from '@fleet/contracts';
import type { OptionSpec } from './define';
import { envEnum, envList, envString, envUrl } from './values';

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
