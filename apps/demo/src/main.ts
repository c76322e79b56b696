/**
 * `npm run demo`: the fleet scenario end to end on the local NATS and PostgreSQL (see
 * libs/fleet-harness/src/scenario.ts): the four services as separate processes, a fleet of real
 * agent stacks, partitions, conflicts under every strategy, a reconnect storm, Merkle verification,
 * and a report. Exit 0 when every replica holds identical data for its scopes and no acknowledged
 * change is missing; 1 otherwise; 64 on a bad option.
 *
 *   npm run demo -- --agents 50 --offline-share 0.33 --edit-rate 4 --seed 42
 */
import { parseArgs } from 'node:util';
import { runFleetScenario } from '@fleet/fleet-harness';

const USAGE = `usage: npm run demo -- [--agents N] [--offline-share F] [--edit-rate N] [--seed N] [--keep]
  --agents N         fleet size (default 50)
  --offline-share F  share of the agents that go offline, 0..1 (default 0.33)
  --edit-rate N      edits per agent per edit round (2 rounds; default 4)
  --seed N           random seed: the same seed replays the same scenario (default: random, printed)
  --keep             keep the database, service logs and agent files (their paths are printed)`;

function fail(msg: string): never {
  console.error(`demo: ${msg}\n${USAGE}`);
  process.exit(64);
}

function num(name: string, v: string | undefined, def: number, check: (n: number) => boolean): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || !check(n)) fail(`--${name}: bad value ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        agents: { type: 'string' },
        'offline-share': { type: 'string' },
        'edit-rate': { type: 'string' },
        seed: { type: 'string' },
        keep: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const agents = num('agents', values.agents, 50, (n) => Number.isInteger(n) && n >= 1 && n <= 5000);
  const offlineShare = num('offline-share', values['offline-share'], 0.33, (n) => n >= 0 && n <= 1);
  const editRate = num('edit-rate', values['edit-rate'], 4, (n) => Number.isInteger(n) && n >= 0 && n <= 1000);
  // The only ambient randomness of the demo: the default seed, printed so the run can be replayed.
  const seed = num('seed', values.seed, Math.floor(Math.random() * 2 ** 31), (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32);
  const tty = process.stderr.isTTY === true;
  let lastLine = 0;
  console.error(`demo: seed ${seed} (replay with --seed ${seed}); ${agents} agents, offline share ${offlineShare}, edit rate ${editRate}`);
  const report = await runFleetScenario({
    agents,
    offlineShare,
    editRate,
    seed,
    keep: values.keep === true,
    progress: (line) => {
      if (tty) process.stderr.write(`\r${line.slice(0, (process.stderr.columns || 200) - 1).padEnd(Math.min(200, (process.stderr.columns || 200) - 1))}`);
      else if (Date.now() - lastLine >= 5000) {
        lastLine = Date.now();
        process.stderr.write(`${line}\n`);
      }
    },
  }).catch((e: unknown) => {
    if (tty) process.stderr.write('\n');
    console.error(`demo: ${e instanceof Error ? e.message : String(e)}`);
    console.error(`demo: replay with --seed ${seed}`);
    process.exit(1);
  });
  if (tty) process.stderr.write('\n');
  console.log(report.text);
  if (!report.ok) console.error(`demo: FAILED (seed ${seed}; replay with --seed ${seed})`);
  process.exit(report.ok ? 0 : 1);
}

void main();
