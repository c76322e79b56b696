export * from './local-store';
export * from './schema';
export * from './sqlite-errors';
export * from './sqlite-local-store';
export * from './critical-staging';
export * from './store-lock';
