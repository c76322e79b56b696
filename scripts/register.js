// Runs the TypeScript sources directly under Node: `node -r ./scripts/register.js file.ts`.
// swc transpiles (with decorator metadata, which NestJS dependency injection needs);
// tsc does the type checking separately (`npm run typecheck`).
const path = require('node:path');
process.env.SWC_NODE_PROJECT ??= path.join(__dirname, '..', 'tsconfig.runtime.json');
require('@swc-node/register');
