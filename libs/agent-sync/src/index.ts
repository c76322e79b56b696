export * from './ports';
export * from './transport';
export * from './sync-manager';
export * from './protocol/wire';
export * from './critical-participant';
export * from './metered-transport';
