#!/usr/bin/env node
// The README's test command: type check, lint, then every jest tier. It ends with one line
// `tests: N passed, N failed`, computed from jest's JSON results (never printed by hand).
// Extra arguments go to jest, e.g. `node scripts/run-tests.js --selectProjects unit`.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
let ok = true;

for (const [label, cmd, args] of [
  ['typecheck', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']],
  // The module-boundary rule reads Nx's project graph; computing it first makes lint enforce it.
  ['project graph', bin('nx'), ['show', 'projects']],
  ['lint', bin('eslint'), ['.']],
]) {
  console.log(`== ${label}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`== ${label} failed (exit ${r.status})`);
    ok = false;
  }
}

const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fleet-sync-jest-')), 'results.json');
console.log('== jest');
const r = spawnSync(bin('jest'), ['--json', `--outputFile=${out}`, ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
});
let passed = 0;
let failed = 0;
try {
  const results = JSON.parse(fs.readFileSync(out, 'utf8'));
  passed = results.numPassedTests;
  failed = results.numFailedTests;
  // A suite that fails to load counts no test; make it visible in the count.
  failed += results.testResults.filter((s) => s.status === 'failed' && s.assertionResults.length === 0).length;
} catch (e) {
  console.error(`could not read jest results: ${e.message}`);
  ok = false;
}
if (r.status !== 0) ok = false;
if (passed === 0) ok = false;
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(ok && failed === 0 ? 0 : 1);
