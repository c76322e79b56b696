// Lint: TypeScript rules, plus the layering of the workspace (see AGENTS.md).
// Layers, from the bottom: core (pure domain: no framework, no driver, no node: I/O),
// contracts (wire schemas over core), adapter (NATS, PostgreSQL, SQLite, telemetry),
// app (wiring). A project may depend only on its own layer or lower ones.
const nx = require('@nx/eslint-plugin');
const tseslint = require('typescript-eslint');

const DRIVERS = ['@nestjs/*', '@nats-io/*', 'pg', 'pg-*', 'typeorm', 'better-sqlite3', '@opentelemetry/*', 'rxjs'];
// node: modules that do I/O or read ambient state. node:crypto (hashing) is allowed in core.
const NODE_IO = ['fs', 'fs/promises', 'net', 'http', 'https', 'http2', 'dgram', 'dns', 'child_process', 'cluster',
  'worker_threads', 'os', 'process', 'tls', 'readline', 'zlib', 'stream', 'timers', 'perf_hooks', 'v8', 'vm'];

module.exports = [
  { ignores: ['**/node_modules/**', '**/dist/**', '**/coverage/**', '**/*.js', '**/*.cjs', '**/*.mjs'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { '@nx': nx },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'separate-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@nx/enforce-module-boundaries': [
        'error',
        {
          allow: [],
          depConstraints: [
            { sourceTag: 'layer:core', onlyDependOnLibsWithTags: ['layer:core'], bannedExternalImports: DRIVERS },
            { sourceTag: 'layer:contracts', onlyDependOnLibsWithTags: ['layer:core', 'layer:contracts'], bannedExternalImports: DRIVERS },
            { sourceTag: 'layer:adapter', onlyDependOnLibsWithTags: ['layer:core', 'layer:contracts', 'layer:adapter'] },
            { sourceTag: 'layer:app', onlyDependOnLibsWithTags: ['layer:core', 'layer:contracts', 'layer:adapter'] },
          ],
        },
      ],
    },
  },
  {
    // The pure core: time, randomness and I/O come in as parameters.
    files: ['libs/sync-core/src/**/*.ts', 'libs/errors/src/**/*.ts', 'libs/contracts/src/**/*.ts', 'libs/agent-sync/src/protocol/**/*.ts'],
    ignores: ['**/*.spec.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: NODE_IO.flatMap((m) => [m, `node:${m}`]).map((name) => ({ name, message: 'The pure core does no I/O: take it through a port.' })),
      }],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Time is a parameter in the core.' },
        { object: 'Math', property: 'random', message: 'Randomness is a parameter in the core.' },
      ],
      'no-restricted-globals': ['error', 'process', 'setTimeout', 'setInterval', 'fetch'],
    },
  },
];
