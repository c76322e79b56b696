/**
 * `npm run demo`, small: the demo's entry point as a process (`--agents 5`), its exit code and the
 * report's verdict. (scripts/setup.sh, the other half of `npm run demo`, is run by `npm test` first.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

jest.setTimeout(240_000);

const ROOT = join(__dirname, '..');

describe('npm run demo -- --agents 5', () => {
  it('runs the fleet scenario and reports that every replica converged', () => {
    const seed = 4242;
    const r = spawnSync(process.execPath, ['-r', './scripts/register.js', 'apps/demo/src/main.ts', '--agents', '5', '--seed', String(seed), '--edit-rate', '3'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 220_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    if (r.status !== 0) throw new Error(`demo exited ${String(r.status)} (signal ${String(r.signal)}), seed ${seed}:\n${out.slice(-6000)}`);
    expect(r.stdout).toContain('VERDICT: PASS');
    expect(r.stdout).toMatch(/CONVERGED: 5 agents/);
    expect(r.stdout).toMatch(/Merkle exchange: 5 agents, \d+ \(scope, collection\) trees, \d+ round trips, 0 violations/);
    // progress was shown while it ran (stderr is not a TTY here: periodic lines)
    expect(r.stderr).toMatch(/agents \d+\/5 online/);
  });

  it('refuses a bad option with exit 64', () => {
    const r = spawnSync(process.execPath, ['-r', './scripts/register.js', 'apps/demo/src/main.ts', '--agents', 'many'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(64);
    expect(r.stderr).toContain('--agents');
  });
});
