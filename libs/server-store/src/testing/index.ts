export * from './test-database';
export * from './changes';
export * from './private-postgres';
