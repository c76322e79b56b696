export * from './ports';
export * from './transport';
export * from './sync-manager';
export * from './protocol/wire';
export * from './critical-participant';
