export * from './values';
export * from './define';
export * from './common';
export * from './strategy-config';
export * from './command-line';
export * from './operator-token';
