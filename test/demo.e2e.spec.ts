/**
 * `npm run demo`, small: the demo's entry point as a process (`--agents 5`), its exit code, the
 * report's verdict, and a second run of the same seed making the same random choices. (scripts/setup.sh, the other half of `npm run demo`, is run by `npm test` first.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

jest.setTimeout(240_000);

const ROOT = join(__dirname, '..');

describe('npm run demo -- --agents 5', () => {
  const seed = 4242;
  const runDemo = (): string => {
    const r = spawnSync(process.execPath, ['-r', './scripts/register.js', 'apps/demo/src/main.ts', '--agents', '5', '--seed', String(seed), '--edit-rate', '3'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 220_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    if (r.status !== 0) throw new Error(`demo exited ${String(r.status)} (signal ${String(r.signal)}), seed ${seed}:\n${out.slice(-6000)}`);
    // progress was shown while it ran (stderr is not a TTY here: periodic lines)
    expect(r.stderr).toMatch(/agents \d+\/5 online/);
    return r.stdout;
  };
  const choices = (stdout: string): string => /^choices: (.*)$/m.exec(stdout)?.[1] ?? 'no choices line';
  let first = '';

  it('runs the fleet scenario and reports that every replica converged, with a conflict under every strategy', () => {
    first = runDemo();
    expect(first).toContain('VERDICT: PASS');
    expect(first).toMatch(/CONVERGED: 5 agents/);
    expect(first).toMatch(/Merkle exchange: 5 agents, \d+ \(scope, collection\) trees, \d+ round trips, 0 violations/);
    expect(first).toContain('strategies that met a conflict: 5 of 5; manual items still waiting: 0');
    expect(first).not.toContain('FAILED');
    expect(choices(first)).toMatch(/^\d+ draws, [0-9a-f]{8} from seed 4242/);
  });

  it('the same seed makes the same choices', () => {
    const again = runDemo();
    expect(again).toContain('VERDICT: PASS');
    expect(choices(again)).toBe(choices(first));
  });

  it('refuses a bad option with exit 64', () => {
    const r = spawnSync(process.execPath, ['-r', './scripts/register.js', 'apps/demo/src/main.ts', '--agents', 'many'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(64);
    expect(r.stderr).toContain('--agents');
  });
});
