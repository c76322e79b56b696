export * from './test-database';
export * from './changes';
