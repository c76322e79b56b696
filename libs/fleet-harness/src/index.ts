export * from './util';
export * from './services';
export * from './agent';
export * from './checker';
export * from './fleet';
export * from './scenario';
