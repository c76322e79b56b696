import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { subjects } from '@fleet/contracts';
import { freePort } from '@fleet/messaging/src/test-support';

const ROOT = resolve(__dirname, '../../..');
const MAIN = 'apps/agent/src/main.ts';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'agent-cli-'));
  dirs.push(d);
  return d;
}

function agent(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['-r', './scripts/register.js', MAIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { PATH: process.env['PATH'] ?? '', ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('agent CLI', () => {
  it('puts, gets, reports status, backs up and restores', () => {
    const dataDir = tempDir();
    const env = { FLEET_AGENT_ID: 'host-7', FLEET_AGENT_DATA_DIR: dataDir };
    const startedAt = Date.now();
    let r = agent(['put', 'host.host-7', 'settings', 'ntp', '{"server":"pool.ntp.org","enabled":true}'], env);
    expect(r).toMatchObject({ code: 0, err: '' });
    // a new store numbers its changes from its creation time in microseconds (a reinstalled host's id reuse)
    const seq = Number(/^queued [0-9a-f-]{36} \(seq (\d+)\)/.exec(r.out)?.[1]);
    expect(seq).toBeGreaterThan(startedAt * 1000);
    r = agent(['get', 'host.host-7', 'settings', 'ntp'], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ status: 'live', fields: { server: 'pool.ntp.org', enabled: true } });
    r = agent(['backup'], env);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^full backup /);
    const chainDir = /agent restore (\S+)/.exec(r.out)?.[1] as string;
    agent(['patch', 'host.host-7', 'settings', 'ntp', '{"enabled":false}'], env);
    expect(agent(['backup'], env).out).toMatch(/^incremental backup /);
    r = agent(['status', '--json'], env);
    expect(JSON.parse(r.out)).toMatchObject({ agentId: 'host-7', outbox: { size: 2 }, cursor: null, conflicts: 0, connection: 'not running' });
    expect(agent(['status'], env).out).toMatch(/outbox\s+2 \/ 100000 unsent/);
    agent(['delete', 'host.host-7', 'settings', 'ntp'], env);
    r = agent(['restore', chainDir], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(agent(['get', 'host.host-7', 'settings', 'ntp'], env).out)).toMatchObject({ fields: { enabled: false } });
    r = agent(['status'], env);
    expect(r.out).toMatch(/cursor\s+unknown \(restored: needs verification/);
    r = agent(['put', 'host.host-7', 'settings', 'x', '{}'], env);
    expect(r.code).toBe(75);
    expect(r.err).toMatch(/^agent: FLEET_AGENT_004 /);
  });

  it('fails clearly on bad configuration, bad usage, an unwritable data directory and a full disk', () => {
    const dataDir = tempDir();
    let r = agent(['status'], { FLEET_AGENT_ID: 'bad.id', FLEET_AGENT_OUTBOX_MAX: 'lots', FLEET_AGENT_DATA_DIR: dataDir });
    expect(r.code).toBe(78);
    expect(r.err).toMatch(/FLEET_CONFIG_001 invalid configuration: 2 problem\(s\)/);
    expect(r.err).toMatch(/FLEET_AGENT_ID: expected an agent id/);
    expect(r.err).toMatch(/FLEET_AGENT_OUTBOX_MAX: expected an integer/);
    expect(r.err).not.toMatch(/\n\s+at /);
    r = agent(['status'], { FLEET_AGENT_ID: 'a1', FLEET_AGENT_SCOPES: 'host.a1,host.other', FLEET_AGENT_DATA_DIR: dataDir });
    expect(r.code).toBe(78);
    expect(r.err).toMatch(/another host's scope/);
    // `run` connects in the background: its NATS files are checked at start, not left to fail offline.
    r = agent(['run'], { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: dataDir, FLEET_AGENT_CREDS_FILE: join(dataDir, 'no.creds') });
    expect(r.code).toBe(78);
    expect(r.err).toMatch(/^agent: FLEET_CONFIG_001 .*NATS credentials file .*no\.creds/);
    r = agent(['run'], { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: dataDir, FLEET_AGENT_NATS_CA_FILE: join(dataDir, 'no-ca.pem') });
    expect(r.code).toBe(78);
    expect(r.err).toMatch(/NATS TLS CA file .*no-ca\.pem/);
    const env = { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: dataDir };
    r = agent(['frobnicate'], env);
    expect(r.code).toBe(64);
    expect(r.err).toMatch(/FLEET_AGENT_008 .*unknown command/);
    r = agent(['put', 'host.a1', 'settings', 'k', '{not json'], env);
    expect(r.code).toBe(64);
    r = agent(['put', 'fleet', 'settings', 'k', '{}'], env);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/FLEET_AUTH_003/);
    const file = join(tempDir(), 'a-file');
    writeFileSync(file, 'x');
    r = agent(['status'], { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: join(file, 'sub') });
    expect(r.code).toBe(73);
    expect(r.err).toMatch(/^agent: FLEET_AGENT_001 .*a-file/);
    expect(r.err).not.toMatch(/\n\s+at /);
    // A tiny quota fills up: SQLITE_FULL becomes FLEET_AGENT_002, exit 74.
    const full = { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: tempDir(), FLEET_AGENT_DB_MAX_MB: '1' };
    const blob = JSON.stringify({ blob: 'x'.repeat(60_000) });
    let code: number | null = 0;
    for (let i = 0; i < 40 && code === 0; i++) {
      r = agent(['put', 'host.a1', 'files', `f${i}`, blob], full);
      code = r.code;
    }
    expect(code).toBe(74);
    expect(r.err).toMatch(/^agent: FLEET_AGENT_002 .*full/);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('`run` turns direct SQL writes into changes, pushes them to JetStream and exits cleanly on SIGTERM', async () => {
    const dataDir = tempDir();
    // Its own subject namespace and push stream: the PubAck is what lets a row leave the outbox.
    const s = subjects(`agentcli${process.pid}${Date.now() % 100000}`);
    const nc = await connect({ servers: '127.0.0.1:4222' });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: s.streams.push, subjects: [s.pushAll] });
    // The server's answer to a new store's origin request (delta-calculator's, docs/agent.md): nothing
    // of a1 logged yet. The store's first push waits for it.
    let asked = 0;
    const origin = nc.subscribe(s.origin('a1'), {
      callback: (_e, m) => {
        asked++;
        m.respond(JSON.stringify({ protocol: 1, agentId: 'a1', lastOriginSeq: null }));
      },
    });
    try {
      const metricsPort = await freePort();
      const env = { PATH: process.env['PATH'] ?? '', FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: dataDir, FLEET_AGENT_CAPTURE_INTERVAL: '100ms', FLEET_NAMESPACE: s.ns, FLEET_AGENT_METRICS_PORT: String(metricsPort) };
      const child = spawn(process.execPath, ['-r', './scripts/register.js', MAIN, 'run'], { cwd: ROOT, env });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      const waitFor = async (re: RegExp) => {
        for (let i = 0; i < 300 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
        expect(out).toMatch(re);
      };
      await waitFor(/syncing host\.a1, fleet/);
      expect(JSON.parse(agent(['status', '--json'], env).out)).toMatchObject({ connection: expect.stringMatching(/agent run, pid/) as unknown });
      const db = new Database(join(dataDir, 'agent.db'));
      db.pragma('busy_timeout = 5000');
      db.prepare('INSERT INTO visible_records (scope, collection, key, fields) VALUES (?, ?, ?, ?)').run('host.a1', 'inventory', 'pkg', '{"v":"1.0"}');
      db.close();
      await waitFor(/captured: 1 processed/);
      // The change reaches the agent's push subject, and leaves the outbox once acknowledged.
      let messages = 0;
      for (let i = 0; i < 200 && messages === 0; i++) {
        messages = (await jsm.streams.info(s.streams.push)).state.messages;
        if (messages === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(messages).toBe(1);
      expect(asked).toBe(1); // once per store, before its first push
      const pushed = await jsm.streams.getMessage(s.streams.push, { seq: 1 });
      expect(pushed?.subject).toBe(s.push('a1'));
      expect((pushed?.json() as { changes: { key: string }[] }).changes.map((c) => c.key)).toEqual(['pkg']);
      for (let i = 0; i < 100 && JSON.parse(agent(['status', '--json'], env).out).outbox.size !== 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(JSON.parse(agent(['status', '--json'], env).out)).toMatchObject({ outbox: { size: 0 } });
      // `agent put` from another process while `run` runs: its change is pushed too, with its own number
      expect(agent(['put', 'host.a1', 'inventory', 'cli', '{"v":"2.0"}'], env).code).toBe(0);
      for (let i = 0; i < 100 && (await jsm.streams.info(s.streams.push)).state.messages < 2; i++) await new Promise((r) => setTimeout(r, 100));
      const second = await jsm.streams.getMessage(s.streams.push, { seq: 2 });
      const [first2, cli] = [(pushed?.json() as { changes: { originSeq: number }[] }).changes[0], (second?.json() as { changes: { key: string; originSeq: number }[] }).changes[0]];
      expect(cli?.key).toBe('cli');
      expect(cli?.originSeq).toBeGreaterThan(first2?.originSeq ?? Infinity);
      // Its metrics (FLEET_AGENT_METRICS_PORT, loopback): the pushes' bytes, the rounds, the outbox and lag gauges.
      const metric = (text: string, name: string, labels: string): number | undefined => {
        const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)));
        return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
      };
      let text = '';
      for (let i = 0; i < 100; i++) {
        text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        if (metric(text, 'fleet_sync_outbox_size', 'otel_scope_name') === 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(metric(text, 'fleet_sync_wire_bytes_total', 'direction="out",message="push"')).toBeGreaterThan(100);
      expect(metric(text, 'fleet_sync_round_duration_count', 'direction="push",outcome="ok"')).toBeGreaterThanOrEqual(2);
      // No delta-calculator answers in this test: every pull fails, each counted with its code.
      expect(metric(text, 'fleet_sync_attempts_failed_total', 'direction="pull",code="FLEET_')).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'fleet_sync_outbox_size', 'otel_scope_name')).toBe(0);
      expect(metric(text, 'fleet_sync_outbox_oldest_age', 'otel_scope_name')).toBe(0);
      expect(metric(text, 'fleet_sync_lag', 'direction="push"')).toBe(0); // nothing waits
      expect([0, 1]).toContain(metric(text, 'fleet_sync_retry_queue_size', 'side="agent"')); // 1 while it backs off after a failed pull
      const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).toMatch(/stopped, store closed/);
      expect(JSON.parse(agent(['status', '--json'], env).out)).toMatchObject({ connection: expect.stringMatching(/^not running/) as unknown });
      const r = agent(['get', 'host.a1', 'inventory', 'pkg'], { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: dataDir });
      expect(JSON.parse(r.out)).toMatchObject({ fields: { v: '1.0' } });
    } finally {
      origin.unsubscribe();
      await jsm.streams.delete(s.streams.push).catch(() => undefined);
      await nc.close();
    }
  });

  it('`restore` and a second `run` are refused while `run` has the store open (status, get, put still work); after it crashed (SIGKILL) the restore goes through', async () => {
    const dataDir = tempDir();
    const s = subjects(`agentlock${process.pid}${Date.now() % 100000}`);
    const env = { FLEET_AGENT_ID: 'l1', FLEET_AGENT_DATA_DIR: dataDir, FLEET_NAMESPACE: s.ns };
    expect(agent(['put', 'host.l1', 'settings', 'ntp', '{"v":1}'], env).code).toBe(0);
    const chainDir = /agent restore (\S+)/.exec(agent(['backup'], env).out)?.[1] as string;
    expect(agent(['put', 'host.l1', 'settings', 'ntp', '{"v":2}'], env).code).toBe(0);
    const child = spawn(process.execPath, ['-r', './scripts/register.js', MAIN, 'run'], { cwd: ROOT, env: { PATH: process.env['PATH'] ?? '', ...env } });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, signal) => r(signal)));
    try {
      for (let i = 0; i < 300 && !/syncing host\.l1/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(/syncing host\.l1/);

      let r = agent(['restore', chainDir], env);
      expect(r.code).toBe(75);
      expect(r.err).toMatch(new RegExp(`^agent: FLEET_AGENT_010 .*in use by agent run \\(pid ${String(child.pid)} on `));
      expect(r.err).not.toMatch(/\n\s+at /);
      // Nothing was touched: the store the agent runs on is as it was.
      r = agent(['get', 'host.l1', 'settings', 'ntp'], env);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ fields: { v: 2 } });
      r = agent(['status', '--json'], env);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ connection: expect.stringMatching(/agent run, pid/) as unknown });
      expect(agent(['put', 'host.l1', 'settings', 'beside', '{"v":1}'], env).code).toBe(0);

      r = agent(['run'], env); // a second agent on the same data directory: refused at once
      expect(r.code).toBe(75);
      expect(r.err).toMatch(new RegExp(`^agent: FLEET_AGENT_010 .*agent run \\(pid ${String(child.pid)} `));
    } finally {
      child.kill('SIGKILL');
    }
    expect(await exited).toBe('SIGKILL');
    // A crashed agent holds no lock: the restore goes through, and the store is the backup's.
    const r = agent(['restore', chainDir], env);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(agent(['get', 'host.l1', 'settings', 'ntp'], env).out)).toMatchObject({ fields: { v: 1 } });
    expect(agent(['get', 'host.l1', 'settings', 'beside'], env).code).toBe(1);
  });

  it('`run` takes part in a critical operation (prepare, then commit, from the coordinator); `critical` lists what the host holds, never a hash', async () => {
    const dataDir = tempDir();
    const s = subjects(`agentcrit${process.pid}${Date.now() % 100000}`);
    const nc = await connect({ servers: '127.0.0.1:4222' });
    // The server's side of what `run` asks before its first sync (nothing logged yet), so the run settles.
    const origin = nc.subscribe(s.origin('c1'), { callback: (_e, m) => void m.respond(JSON.stringify({ protocol: 1, agentId: 'c1', lastOriginSeq: null })) });
    const env = { PATH: process.env['PATH'] ?? '', FLEET_AGENT_ID: 'c1', FLEET_AGENT_DATA_DIR: dataDir, FLEET_NAMESPACE: s.ns };
    const child = spawn(process.execPath, ['-r', './scripts/register.js', MAIN, 'run'], { cwd: ROOT, env });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      for (let i = 0; i < 300 && !/syncing host\.c1/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      const txid = '0190a000-0000-7000-8000-00000000c0de';
      const operation = { kind: 'credential', name: 'ops', value: { user: 'ops', hash: '$6$salt$verysecrethash' } };
      // Acting as the coordinator: the participant subscribes once connected, so ask until it answers.
      let vote: unknown;
      for (let i = 0; i < 100 && vote === undefined; i++) {
        try {
          const m = await nc.request(s.tpcAgent('c1'), JSON.stringify({ protocol: 1, t: 'prepare', txid, operation, deadline: Date.now() + 10_000 }), { timeout: 2000 });
          vote = (m.json() as { vote: unknown }).vote;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(vote).toEqual({ vote: 'yes' });
      let r = agent(['critical'], env);
      expect(r.out).toMatch(new RegExp(`in doubt\tcredential ops\ttx ${txid}`));
      expect(agent(['status'], env).out).toMatch(/critical\s+0 held, 1 in doubt/);
      const ack = await nc.request(s.tpcAgent('c1'), JSON.stringify({ protocol: 1, t: 'decision', txid, decision: 'commit' }), { timeout: 5000 });
      expect(ack.json()).toEqual({ protocol: 1, txid, state: 'committed' });
      expect(out).toMatch(new RegExp(`critical ${txid}: voted yes`));
      r = agent(['critical'], env);
      expect(r.out).toMatch(new RegExp(`^credential\tops\t\\{"user":"ops","hash":"\\(set\\)"\\}\ttx ${txid}`));
      expect(r.out).not.toContain('verysecrethash');
      expect(agent(['critical', '--json'], env).out).not.toContain('verysecrethash');
      expect(agent(['status'], env).out).toMatch(/critical\s+1 held$/m);
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      origin.unsubscribe();
      await nc.close();
    }
  });
});
