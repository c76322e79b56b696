import { Controller, Get, HttpException, HttpStatus, Inject, Injectable, Module } from '@nestjs/common';
import type { BeforeApplicationShutdown, DynamicModule, ModuleMetadata } from '@nestjs/common';
import { FleetError } from '@fleet/errors';

/**
 * Liveness and readiness over HTTP, for Kubernetes probes.
 *
 * - `GET /health/live`: the process is up and its event loop answers. It checks no dependency on
 *   purpose: a PostgreSQL outage must not make Kubernetes restart every replica (a restart cannot
 *   fix the database, and a restart storm makes recovery slower).
 * - `GET /health/ready`: every readiness check passes, within its timeout. 200 with the report when
 *   ready, 503 with the same report when not, so Kubernetes stops routing to the pod until its
 *   dependencies come back. Readiness also turns false when the app starts shutting down.
 *
 * The module is generic: the app supplies the checks (a PostgreSQL `select 1`, the NATS connection
 * status, a consumer that is attached). A check passes by resolving and fails by throwing.
 */

export interface ReadinessCheck {
  /** Shown in the report, e.g. `postgres`, `nats`. Unique within an app. */
  readonly name: string;
  check(): Promise<void>;
}

export interface HealthModuleOptions {
  readonly checks?: readonly ReadinessCheck[];
  /** Per check; a check that takes longer fails (a hung socket must not hang the probe). Default 2000. */
  readonly timeoutMs?: number;
}

export interface CheckResult {
  readonly name: string;
  readonly status: 'up' | 'down';
  readonly durationMs: number;
  readonly error?: string;
}

export interface ReadinessReport {
  readonly status: 'ready' | 'not_ready';
  readonly draining: boolean;
  readonly checks: readonly CheckResult[];
}

export interface LivenessReport {
  readonly status: 'live';
  readonly uptimeSeconds: number;
}

export const HEALTH_OPTIONS = Symbol('HEALTH_OPTIONS');
export const DEFAULT_CHECK_TIMEOUT_MS = 2000;

function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}

async function runCheck(c: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([Promise.resolve().then(() => c.check()), timeout]);
    return { name: c.name, status: 'up', durationMs: Math.round(performance.now() - started) };
  } catch (e) {
    return { name: c.name, status: 'down', durationMs: Math.round(performance.now() - started), error: describe(e) };
  } finally {
    clearTimeout(timer);
  }
}

@Injectable()
export class HealthService implements BeforeApplicationShutdown {
  private readonly checks: ReadinessCheck[];
  private readonly timeoutMs: number;
  private draining = false;

  constructor(@Inject(HEALTH_OPTIONS) options: HealthModuleOptions) {
    this.checks = [...(options.checks ?? [])];
    this.timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  }

  /** Adds a check at run time, e.g. from a feature module's `onModuleInit`. */
  register(check: ReadinessCheck): void {
    if (this.checks.some((c) => c.name === check.name)) {
      throw new FleetError('FLEET_CONFIG_001', `readiness check "${check.name}" is registered twice`);
    }
    this.checks.push(check);
  }

  /** Readiness fails from now on; the app is going away (also set by Nest's shutdown hooks). */
  setDraining(): void {
    this.draining = true;
  }

  beforeApplicationShutdown(): void {
    this.setDraining();
  }

  live(): LivenessReport {
    return { status: 'live', uptimeSeconds: Math.round(process.uptime()) };
  }

  async ready(): Promise<ReadinessReport> {
    const checks = await Promise.all(this.checks.map((c) => runCheck(c, this.timeoutMs)));
    const ok = !this.draining && checks.every((c) => c.status === 'up');
    return { status: ok ? 'ready' : 'not_ready', draining: this.draining, checks };
  }
}

@Controller('health')
export class HealthController {
  constructor(private readonly health: HealthService) {}

  @Get('live')
  live(): LivenessReport {
    return this.health.live();
  }

  @Get('ready')
  async ready(): Promise<ReadinessReport> {
    const report = await this.health.ready();
    // The edge: a not-ready report is the body of a 503, so probes and humans read the same JSON.
    if (report.status !== 'ready') throw new HttpException(report, HttpStatus.SERVICE_UNAVAILABLE);
    return report;
  }
}

export interface HealthModuleAsyncOptions {
  readonly imports?: ModuleMetadata['imports'];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Nest's own signature for factory injection
  readonly inject?: any[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the factory receives the injected values
  readonly useFactory: (...args: any[]) => HealthModuleOptions | Promise<HealthModuleOptions>;
}

@Module({})
export class HealthModule {
  /** Static checks: `HealthModule.forRoot({ checks: [natsCheck, pgCheck] })`. */
  static forRoot(options: HealthModuleOptions = {}): DynamicModule {
    return {
      module: HealthModule,
      controllers: [HealthController],
      providers: [{ provide: HEALTH_OPTIONS, useValue: options }, HealthService],
      exports: [HealthService],
    };
  }

  /** Checks built from injected providers (a DataSource, a NATS connection). */
  static forRootAsync(options: HealthModuleAsyncOptions): DynamicModule {
    return {
      module: HealthModule,
      imports: options.imports ?? [],
      controllers: [HealthController],
      providers: [{ provide: HEALTH_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] }, HealthService],
      exports: [HealthService],
    };
  }
}
