export * from './decorators';
export * from './server';
export * from './client';
