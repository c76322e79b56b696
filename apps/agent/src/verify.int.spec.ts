/**
 * `agent run` as a process verifies its store with a real deployment (the four services as processes,
 * libs/fleet-harness; the shared NATS and PostgreSQL) and repairs both ways: what the host lost is
 * fetched (a host record, and a whole collection only FLEET_AGENT_VERIFY_COLLECTIONS names), what the
 * server lacks or holds older is re-pushed (a record whose push was lost, a delete whose push was lost).
 * The damage is made with plain SQL on the stopped agent's store, and `needsVerification` set as a
 * restore sets it, so the next `agent run` verifies at once (the periodic one is a day away).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteLocalStore } from '@fleet/agent-store';
import { Fleet, REPO_ROOT } from '@fleet/fleet-harness';
import { eventually } from '@fleet/fleet-harness/src/util';

jest.setTimeout(180_000);

const MAIN = 'apps/agent/src/main.ts';
const ID = 'verify-1';
const HOST = `host.${ID}`;
const STRATEGIES = { default: 'lww' } as const;

let fleet: Fleet;
let dataDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  fleet = await Fleet.start({ agents: 0, strategies: STRATEGIES, collections: [], privateNats: false, capture: false });
  dataDir = mkdtempSync(join(tmpdir(), 'agent-verify-'));
  env = {
    PATH: process.env['PATH'] ?? '',
    HOME: process.env['HOME'] ?? '/tmp',
    FLEET_AGENT_ID: ID,
    FLEET_AGENT_DATA_DIR: dataDir,
    FLEET_AGENT_NATS_URL: fleet.natsUrl,
    FLEET_AGENT_NAMESPACE: fleet.s.ns,
    FLEET_AGENT_STRATEGIES: JSON.stringify(STRATEGIES),
    FLEET_AGENT_CAPTURE_INTERVAL: '200ms',
    FLEET_AGENT_VERIFY_COLLECTIONS: 'certs',
    FLEET_AGENT_LOG_LEVEL: 'warn',
  };
});

afterAll(async () => {
  await fleet?.close();
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});

function agent(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['-r', './scripts/register.js', MAIN, ...args], { cwd: REPO_ROOT, encoding: 'utf8', env });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface Run {
  readonly p: ChildProcess;
  out: string;
  readonly exited: Promise<number | null>;
}

function startRun(): Run {
  const p = spawn(process.execPath, ['-r', './scripts/register.js', MAIN, 'run'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const r: Run = { p, out: '', exited: new Promise((res) => p.once('exit', (c) => res(c))) };
  p.stdout?.on('data', (d: Buffer) => (r.out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (r.out += d.toString()));
  return r;
}

async function stopRun(r: Run): Promise<void> {
  r.p.kill('SIGTERM');
  expect(await r.exited).toBe(0);
}

type ServerRow = { collection: string; key: string; status: string; hash: string };

async function serverRecords(): Promise<Map<string, ServerRow>> {
  const rows = await fleet.sql<ServerRow>(`select collection, key, status, hash from records where scope = $1`, [HOST]);
  return new Map(rows.map((r) => [`${r.collection}/${r.key}`, r]));
}

/** The agent's host records (the store opened while no `agent run` holds it), by collection/key. */
function agentRecords(): Map<string, { status: string; hash: string }> {
  const store = SqliteLocalStore.open({ dataDir, agentId: ID, processCapturedOnOpen: false });
  try {
    const out = new Map<string, { status: string; hash: string }>();
    for (const { scope, collection } of store.collections()) {
      if (scope !== HOST) continue;
      for (const e of store.merkleEntries(scope, collection)) {
        const rec = store.get({ scope, collection, key: e.key });
        if (rec !== null) out.set(`${collection}/${e.key}`, { status: rec.status, hash: rec.hash });
      }
    }
    return out;
  } finally {
    store.close();
  }
}

function outboxSize(): number {
  return (JSON.parse(agent('status', '--json').out) as { outbox: { size: number } }).outbox.size;
}

describe('agent run: Merkle verification with the server', () => {
  it('fetches the host records (and the whole collection) it lost, re-pushes the record and the delete the server lacks; both sides end equal', async () => {
    // 1. Records written here and pushed; the server has them all.
    for (const [collection, key, fields] of [
      ['settings', 'kept', { v: 1 }],
      ['settings', 'lost-here', { v: 2 }],
      ['settings', 'deleted-here', { v: 3 }],
      ['certs', 'web', { pem: 'x' }],
    ] as const) {
      expect(agent('put', HOST, collection, key, JSON.stringify(fields)).code).toBe(0);
    }
    let run = startRun();
    await eventually(async () => ((await serverRecords()).size === 4 && outboxSize() === 0 ? true : undefined), 60_000, 'the first pushes logged and projected', 500);
    await eventually(() => (/synced \(/.test(run.out) ? true : undefined), 30_000, 'a sync cycle');
    await stopRun(run);
    expect(run.out).not.toMatch(/^verified:/m); // nothing asked for a verification yet

    // 2. Damage, agent stopped: a record and a whole collection lost here (the cursor is past them: no
    // pull brings them back), and two writes whose pushes are lost (the server never gets them).
    expect(agent('put', HOST, 'settings', 'server-lacks', '{"v":4}').code).toBe(0);
    expect(agent('delete', HOST, 'settings', 'deleted-here').code).toBe(0);
    const db = new Database(join(dataDir, 'agent.db'));
    try {
      expect(db.prepare(`delete from outbox where key in ('server-lacks', 'deleted-here')`).run().changes).toBe(2);
      expect(db.prepare(`delete from records where scope = ? and (key = 'lost-here' or collection = 'certs')`).run(HOST).changes).toBe(2);
      // As a restore leaves it: verify before anything else.
      db.prepare(`update meta set v = json_set(v, '$.needsVerification', json('true')) where k = 'sync_state'`).run();
    } finally {
      db.close();
    }
    expect(JSON.parse(agent('status', '--json').out)).toMatchObject({ needsVerification: true, outbox: { size: 0 } });
    const before = await serverRecords();
    expect(before.get('settings/server-lacks')).toBeUndefined();
    expect(before.get('settings/deleted-here')?.status).toBe('live');

    // 3. `agent run` verifies every collection it holds in each scope, and `certs` (named), and repairs.
    run = startRun();
    await eventually(() => (/^verified: /m.test(run.out) ? true : undefined), 60_000, 'the verification');
    expect(run.out).toMatch(/^verify host\.verify-1\/settings: 2 missing here, 1 missing on the server, 0 differing; 2 fetched, 2 re-pushed$/m);
    expect(run.out).toMatch(/^verify host\.verify-1\/certs: 1 missing here, 0 missing on the server, 0 differing; 1 fetched, 0 re-pushed$/m);
    expect(run.out).toMatch(/^verified: 4 violation\(s\), 2 re-pushed$/m);
    expect(run.out).not.toMatch(/unrepaired/);
    await eventually(async () => {
      const s = await serverRecords();
      return s.get('settings/server-lacks')?.status === 'live' && s.get('settings/deleted-here')?.status === 'deleted' && outboxSize() === 0 ? true : undefined;
    }, 60_000, 'the re-pushed changes logged and projected', 500);
    await stopRun(run);
    expect(run.out).not.toMatch(/failed/);

    // 4. Both sides hold the same host records, record for record (visible hash and status).
    const server = await serverRecords();
    const here = agentRecords();
    expect([...here.keys()].sort()).toEqual(['certs/web', 'settings/deleted-here', 'settings/kept', 'settings/lost-here', 'settings/server-lacks']);
    expect([...server.keys()].sort()).toEqual([...here.keys()].sort());
    for (const [k, r] of here) expect({ k, status: server.get(k)?.status, hash: server.get(k)?.hash }).toEqual({ k, status: r.status, hash: r.hash });
    expect(here.get('settings/deleted-here')?.status).toBe('deleted');
    expect(JSON.parse(agent('status', '--json').out)).toMatchObject({ needsVerification: false });

    // 5. A second verification finds nothing to repair.
    const db2 = new Database(join(dataDir, 'agent.db'));
    db2.prepare(`update meta set v = json_set(v, '$.needsVerification', json('true')) where k = 'sync_state'`).run();
    db2.close();
    run = startRun();
    await eventually(() => (/^verified: /m.test(run.out) ? true : undefined), 60_000, 'the second verification');
    await stopRun(run);
    expect(run.out).toMatch(/^verified: 0 violation\(s\), 0 re-pushed$/m);
    expect(run.out).not.toMatch(/^verify /m);
  });
});
