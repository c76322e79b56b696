export * from './subjects';
export * from './protocol';
export * from './limits';
export * from './codec';
export * from './json-value';
export * from './scope';
export * from './change';
export * from './messages';
