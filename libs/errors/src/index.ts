export * from './codes';
export * from './fleet-error';
