export * from './decorators';
export * from './server';
export * from './client';
export * from './readiness';
