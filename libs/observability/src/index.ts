export * from './metrics';
export * from './health-score';
export * from './telemetry';
export * from './health.module';
export * from './metrics.module';
export * from './service';
export * from './http-error.filter';
export * from './operator-status';
