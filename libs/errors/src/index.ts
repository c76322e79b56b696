export * from './codes';
export * from './fleet-error';
export * from './catalog-source';
