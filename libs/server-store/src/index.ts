export * from './change-log.port';
export * from './postgres-change-log';
export * from './projections/projection';
export * from './projections/origins.projection';
export * from './rebuild';
export * from './data-source';
export * from './entities/change-log.entity';
export * from './entities/origin-progress.entity';
export { SERVER_STORE_MIGRATIONS } from './migrations';
