/**
 * The one way a server service starts and stops. Order matters:
 * 1. configuration, before any framework loads: `--help` prints the option table; a bad variable
 *    prints every problem and the table, and exits 78 (EX_CONFIG);
 * 2. telemetry, BEFORE anything loads @nestjs/core (the Nest instrumentation patches it on load);
 * 3. the app, which the caller loads through a dynamic import inside `start`;
 * 4. SIGTERM/SIGINT (or, when a harness started it with an IPC channel, the parent's death): drain
 *    (stop pulling, finish and ack what is in hand), flush telemetry, exit 0;
 *    exit 1 if the drain exceeds the shutdown timeout (unacked messages are then redelivered).
 */
import { describeConfig, loadConfig, redactConfig, unknownVariables } from '@fleet/config';
import type { ConfigDef, ConfigOf, LogLevel, OptionSpec } from '@fleet/config';
import type { LogLevel as NestLogLevel } from '@nestjs/common';
import { isFleetError } from '@fleet/errors';
import { MAX_PUSH_BATCH_BYTES } from '@fleet/contracts';
import { startTelemetry } from './telemetry';

/** What `runService` needs from a service's configuration (`serviceOptions()` declares these). */
interface ServiceBasics {
  readonly metricsPort: number;
  readonly otlpEndpoint?: string | undefined;
  readonly shutdownTimeout: number;
}

export interface ServiceDefinition<D extends ConfigDef<Record<string, OptionSpec>>, P> {
  /** The service name: log prefix and `service.name` of its telemetry. */
  readonly name: string;
  /** One line for `--help`. */
  readonly summary: string;
  readonly config: D;
  /** More checks after the variables parse (e.g. the strategy file); a throw exits 78 like a bad variable. */
  readonly prepare?: (config: ConfigOf<D>) => P;
  /** Warnings to print at start (e.g. test-only failpoints armed). */
  readonly warnings?: (config: ConfigOf<D>) => readonly string[];
  /** Builds and starts the app; `close()` must drain it. Load the framework here, with `import()`. */
  readonly start: (config: ConfigOf<D>, prepared: P) => Promise<{ close(): Promise<void> }>;
}

function fail(name: string, what: string, e: unknown, table: string): never {
  console.error(`${name}: ${what}: ${isFleetError(e) ? `${e.code} ${e.message}` : String(e)}`);
  console.error(`\nConfiguration (environment variables):\n\n${table}`);
  process.exit(78); // EX_CONFIG
}

export function runService<D extends ConfigDef<Record<string, OptionSpec>>, P = undefined>(def: ServiceDefinition<D, P>): void {
  const { name } = def;
  const table = describeConfig(def.config);
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(`${name}: ${def.summary}\n\nConfiguration (environment variables):\n\n${table}`);
    process.exit(0);
  }
  let config: ConfigOf<D>;
  try {
    config = loadConfig(def.config);
  } catch (e) {
    fail(name, 'bad configuration', e, table);
  }
  let prepared: P;
  try {
    prepared = def.prepare === undefined ? (undefined as P) : def.prepare(config);
  } catch (e) {
    fail(name, 'bad configuration', e, table);
  }
  for (const v of unknownVariables(def.config)) console.warn(`${name}: ${v} is not a known option (typo?); see --help`);
  for (const w of def.warnings?.(config) ?? []) console.warn(`${name}: ${w}`);
  const basics = config as unknown as ServiceBasics;

  const telemetry = startTelemetry({
    serviceName: name,
    serviceInstanceId: process.env['HOSTNAME'] ?? `local-${process.pid}`,
    prometheusPort: basics.metricsPort,
    preventServerStart: basics.metricsPort === 0,
    ...(basics.otlpEndpoint === undefined ? {} : { otlpEndpoint: basics.otlpEndpoint }),
  });

  console.log(`${name}: starting with ${JSON.stringify(redactConfig(def.config, config))}`);
  const started = def.start(config, prepared);
  started.catch(async (e: unknown) => {
    console.error(`${name}: failed to start:`, e);
    await telemetry.shutdown().catch(() => undefined);
    process.exit(1);
  });

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log(`${name}: ${signal}: draining`);
    const timer = setTimeout(() => {
      console.error(`${name}: drain exceeded ${basics.shutdownTimeout} ms, exiting; unacked messages will be redelivered`);
      process.exit(1);
    }, basics.shutdownTimeout);
    timer.unref();
    try {
      const app = await started; // a signal during start: finish starting, then drain
      await app.close();
      await telemetry.shutdown();
      console.log(`${name}: drained, exiting`);
      process.exit(0);
    } catch (e) {
      console.error(`${name}: shutdown failed:`, e);
      process.exit(1);
    }
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown(signal));
  // Started by a test harness with an IPC channel: when the parent dies (a killed test run), the
  // channel closes and the service drains and exits instead of living on as an orphan.
  if (process.channel !== undefined) {
    process.channel.unref();
    process.on('disconnect', () => void shutdown('parent exited'));
  }
}

/**
 * Options for `NestFactory.create` every service uses: Nest's log levels from the configured level,
 * and errors during start-up thrown to the caller instead of `process.exit(1)` (Nest's default),
 * so `runService` can report them and tests that start an app in-process survive a failed start.
 */
export function nestAppOptions(level: LogLevel): { logger: NestLogLevel[]; abortOnError: false } {
  return { logger: NEST_LEVELS[level], abortOnError: false };
}

/**
 * Every service's HTTP listen. Keep-alive outlives the clients' and proxies' idle timeouts (undici
 * and most load balancers keep an idle connection 4 to 60 s): when the server closes an idle
 * connection first, a request the client sends on it at that moment fails with "other side closed"
 * (seen with 1,000 agents registering under load, when the event loop fires the close late).
 *
 * JSON bodies up to `MAX_PUSH_BATCH_BYTES` (960 KiB), the largest message of the protocol: the
 * default of 100 KiB refused operator writes and resolutions the field caps allow (256 KiB of fields)
 * and NATS accepts, before the services' own checks could answer with their error codes.
 */
export async function listenHttp(
  app: { getHttpServer(): unknown; listen(port: number, host: string): Promise<unknown>; useBodyParser?(type: 'json', options: { limit: number }): unknown },
  port: number,
): Promise<void> {
  app.useBodyParser?.('json', { limit: MAX_PUSH_BATCH_BYTES });
  const server = app.getHttpServer() as { keepAliveTimeout: number; headersTimeout: number };
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000; // must exceed keepAliveTimeout
  await app.listen(port, '0.0.0.0');
}

const NEST_LEVELS: Record<LogLevel, NestLogLevel[]> = {
  fatal: ['fatal'],
  error: ['fatal', 'error'],
  warn: ['fatal', 'error', 'warn'],
  info: ['fatal', 'error', 'warn', 'log'],
  debug: ['fatal', 'error', 'warn', 'log', 'debug'],
  trace: ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'],
};
