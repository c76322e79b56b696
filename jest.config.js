// Three tiers, each runnable on its own (`npm run test:unit|test:int|test:e2e`):
//   unit         *.spec.ts       pure, no I/O, no services
//   integration  *.int.spec.ts   against the real NATS, PostgreSQL and SQLite
//   e2e          test/**/*.e2e.spec.ts   whole scenarios with processes
const transform = {
  '^.+\\.ts$': [
    '@swc/jest',
    {
      jsc: {
        target: 'es2022',
        parser: { syntax: 'typescript', decorators: true },
        transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
      },
      module: { type: 'commonjs' },
    },
  ],
};
const common = { transform, testEnvironment: 'node', moduleFileExtensions: ['ts', 'js', 'json'] };
const fs = require('node:fs');
const path = require('node:path');
// Only folders that exist: jest refuses a missing root.
const existing = (dirs) => dirs.filter((d) => fs.existsSync(path.join(__dirname, d))).map((d) => `<rootDir>/${d}`);
const roots = existing(['libs', 'apps', 'test', 'bench']);
module.exports = {
  // testTimeout is a global option (per-project values are ignored); integration tests talk to
  // real services, so the default 5 s is too tight. End-to-end files raise it themselves.
  testTimeout: 60_000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      roots,
      testMatch: ['**/*.spec.ts'],
      testPathIgnorePatterns: ['\\.int\\.spec\\.ts$', '\\.e2e\\.spec\\.ts$', '/node_modules/'],
    },
    {
      ...common,
      displayName: 'integration',
      roots,
      testMatch: ['**/*.int.spec.ts'],
    },
    {
      ...common,
      displayName: 'e2e',
      roots: existing(['test']),
      testMatch: ['**/*.e2e.spec.ts'],
    },
  ],
};
