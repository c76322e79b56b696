import { Global, Module } from '@nestjs/common';
import type { DynamicModule } from '@nestjs/common';
import { syncMetrics } from './telemetry';

/** Injection token for the typed sync metrics: `@Inject(SYNC_METRICS) metrics: SyncMetrics`. */
export const SYNC_METRICS = Symbol('SYNC_METRICS');

/**
 * Makes the typed sync metrics injectable everywhere. It reads the running telemetry at module
 * creation, so `startTelemetry` must run before the Nest app is created (it must anyway, for the
 * instrumentation); without it the metrics are no-ops.
 */
@Global()
@Module({})
export class SyncMetricsModule {
  static forRoot(): DynamicModule {
    return {
      module: SyncMetricsModule,
      providers: [{ provide: SYNC_METRICS, useFactory: syncMetrics }],
      exports: [SYNC_METRICS],
    };
  }
}
