import { FleetError } from '@fleet/errors';
import { DEFAULT_NAMESPACE, isSubjectToken } from '@fleet/contracts';

/**
 * The service's configuration, read once from the environment and validated at start, failing
 * with a message that names the variable. (Local until libs/config lands; same contract.)
 */
export interface ChangeLogConfig {
  /** DATABASE_URL, default postgres://postgres@127.0.0.1:5432/fleet_sync */
  readonly databaseUrl: string;
  /** NATS_URL: one or more comma-separated URLs, default nats://127.0.0.1:4222 */
  readonly natsServers: readonly string[];
  /** FLEET_NAMESPACE: subject namespace, default `sync` */
  readonly namespace: string;
  /** CHANGE_LOG_HTTP_PORT: health endpoints, default 3001 (0 = any free port) */
  readonly httpPort: number;
  /** CHANGE_LOG_CONCURRENCY: push messages handled at once per replica, default 4 */
  readonly concurrency: number;
  /** CHANGE_LOG_DB_POOL: PostgreSQL pool size, default 10 */
  readonly dbPoolSize: number;
}

type Env = Readonly<Record<string, string | undefined>>;

export function loadChangeLogConfig(env: Env): ChangeLogConfig {
  const problems: string[] = [];
  const str = (name: string, def: string) => {
    const v = env[name];
    return v === undefined || v === '' ? def : v;
  };
  const int = (name: string, def: number, min: number, max: number) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return def;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(raw)}: expected an integer in ${min}..${max}`);
      return def;
    }
    return n;
  };
  const url = (name: string, value: string, protocols: readonly string[]) => {
    try {
      const u = new URL(value);
      if (!protocols.includes(u.protocol)) problems.push(`${name}: expected a ${protocols.join(' or ')} URL, got ${u.protocol}`);
    } catch {
      problems.push(`${name}: not a URL`);
    }
  };

  const databaseUrl = str('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/fleet_sync');
  url('DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:']);
  const natsServers = str('NATS_URL', 'nats://127.0.0.1:4222').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (natsServers.length === 0) problems.push('NATS_URL: empty');
  for (const s of natsServers) url('NATS_URL', s, ['nats:', 'tls:']);
  const namespace = str('FLEET_NAMESPACE', DEFAULT_NAMESPACE);
  if (!isSubjectToken(namespace)) problems.push(`FLEET_NAMESPACE=${JSON.stringify(namespace)}: expected [A-Za-z0-9_-]{1,128}`);
  const config: ChangeLogConfig = {
    databaseUrl,
    natsServers,
    namespace,
    httpPort: int('CHANGE_LOG_HTTP_PORT', 3001, 0, 65535),
    concurrency: int('CHANGE_LOG_CONCURRENCY', 4, 1, 256),
    dbPoolSize: int('CHANGE_LOG_DB_POOL', 10, 1, 200),
  };
  if (problems.length > 0) throw new FleetError('FLEET_CONFIG_001', problems.join('; '), { details: { problems } });
  return config;
}
