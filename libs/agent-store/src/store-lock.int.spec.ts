/**
 * The store's locks (store-lock.ts) on real files, between connections of this process and between
 * processes (a child holding a lock, then SIGKILLed: what a crashed agent leaves behind).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { isFleetError } from '@fleet/errors';
import type { FleetError } from '@fleet/errors';
import { DB_FILE, restoreSqliteStore, SqliteLocalStore } from './sqlite-local-store';
import { LOCK_OWNER_FILE, readStoreLockHolder } from './store-lock';

jest.setTimeout(30_000);

const AGENT = 'agent-1';
const REF = (key: string) => ({ scope: `host.${AGENT}`, collection: 'settings', key });
const ROOT = resolve(__dirname, '../../..');
const roots: string[] = [];
const children: ChildProcess[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'agent-lock-'));
  roots.push(d);
  return d;
}
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

function errorOf(fn: () => unknown): FleetError {
  try {
    fn();
  } catch (e) {
    if (isFleetError(e)) return e;
    throw e;
  }
  throw new Error('expected a FleetError, nothing was thrown');
}

/** A data directory with a store holding `v: 1` for `a`, and a full backup of it; the store is closed. */
function storeWithBackup(): { dataDir: string; chain: string } {
  const dataDir = tempDir();
  const s = SqliteLocalStore.open({ dataDir, agentId: AGENT });
  s.put(REF('a'), { v: 1 });
  const chain = s.backup({ full: true }).dir;
  s.put(REF('a'), { v: 2 });
  s.close();
  return { dataDir, chain };
}

/** Starts a child process that holds what `expr` opens (TypeScript, with `lib` the agent-store index) until killed; resolves once it holds it. */
async function child(expr: string): Promise<ChildProcess> {
  const script = join(tempDir(), 'holder.ts');
  // The interval keeps a reference: a collected connection would be closed, and its lock released.
  writeFileSync(script, `import * as lib from ${JSON.stringify(resolve(__dirname, 'index.ts'))};\nconst held = ${expr};\nconsole.log('ready');\nsetInterval(() => void held, 1000);\n`);
  const c = spawn(process.execPath, ['-r', join(ROOT, 'scripts/register.js'), script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  let out = '';
  let err = '';
  c.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  await new Promise<void>((ok, fail) => {
    c.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready')) ok();
    });
    c.on('exit', (code, signal) => fail(new Error(`holder exited (${String(code ?? signal)}) before ready: ${err}`)));
  });
  return c;
}

async function kill9(c: ChildProcess): Promise<void> {
  const exited = new Promise((r) => c.on('exit', r));
  c.kill('SIGKILL');
  await exited;
}

describe('store locks', () => {
  it('the owner (agent run) is exclusive: a second owner and a restore are refused at once, naming it; other stores open beside it read and write', () => {
    const { dataDir, chain } = storeWithBackup();
    const owner = SqliteLocalStore.open({ dataDir, agentId: AGENT, owner: 'agent run' });
    try {
      const second = errorOf(() => SqliteLocalStore.open({ dataDir, agentId: AGENT, owner: 'agent run' }));
      expect(second.code).toBe('FLEET_AGENT_010');
      expect(second.retryable).toBe(true);
      expect(second.message).toMatch(new RegExp(`in use by agent run \\(pid ${process.pid} on .+, since \\d{4}-`));

      // A restore with a long wait still refuses at once: the owner is not a short command.
      const t0 = Date.now();
      const refused = errorOf(() => restoreSqliteStore(chain, dataDir, { agentId: AGENT, lockWaitMs: 20_000 }));
      expect(refused.code).toBe('FLEET_AGENT_010');
      expect(refused.message).toMatch(/in use by agent run \(pid \d+/);
      expect(Date.now() - t0).toBeLessThan(10_000);
      // Nothing was touched: no work file, nothing moved aside, the owner's store as it was.
      expect(readdirSync(dataDir).filter((f) => f.includes('restoring') || f.includes('before-restore'))).toEqual([]);
      expect(owner.get(REF('a'))?.fields).toEqual({ v: 2 });

      // Reads and writes from other stores (agent get, status, put) work beside the owner.
      const other = SqliteLocalStore.open({ dataDir, agentId: AGENT });
      expect(other.get(REF('a'))?.fields).toEqual({ v: 2 });
      expect(other.put(REF('b'), { v: 1 })).not.toBeNull();
      expect(other.outboxStats().size).toBe(3);
      other.close();
      expect(owner.outboxSize()).toBe(3);
    } finally {
      owner.close();
    }
    // Once the owner has closed, the holder file is gone and the restore goes through.
    expect(existsSync(join(dataDir, LOCK_OWNER_FILE))).toBe(false);
    const r = restoreSqliteStore(chain, dataDir, { agentId: AGENT });
    expect(r.previousMovedTo).toMatch(/before-restore/);
    const restored = SqliteLocalStore.open({ dataDir, agentId: AGENT, owner: 'agent run' });
    expect(restored.get(REF('a'))?.fields).toEqual({ v: 1 });
    restored.close();
  });

  it('a restore waits for other open stores (short commands), then refuses; once they close it goes through', () => {
    const { dataDir, chain } = storeWithBackup();
    const reader = SqliteLocalStore.open({ dataDir, agentId: AGENT });
    const e = errorOf(() => restoreSqliteStore(chain, dataDir, { agentId: AGENT, lockWaitMs: 200 }));
    expect(e.code).toBe('FLEET_AGENT_010');
    expect(e.message).toMatch(/in use by another process \(still open after 200 ms\)/);
    expect(reader.get(REF('a'))?.fields).toEqual({ v: 2 });
    reader.close();
    expect(restoreSqliteStore(chain, dataDir, { agentId: AGENT, lockWaitMs: 200 }).applied).toHaveLength(1);
  });

  it('an agent run that crashed (SIGKILL) leaves no lock: the restore and a new owner go through', async () => {
    const { dataDir, chain } = storeWithBackup();
    const running = await child(`lib.SqliteLocalStore.open({ dataDir: ${JSON.stringify(dataDir)}, agentId: ${JSON.stringify(AGENT)}, owner: 'agent run' })`);
    const holder = readStoreLockHolder(dataDir);
    expect(holder).toMatchObject({ mode: 'owner', command: 'agent run', pid: running.pid });
    const refused = errorOf(() => restoreSqliteStore(chain, dataDir, { agentId: AGENT }));
    expect(refused.code).toBe('FLEET_AGENT_010');
    expect(refused.message).toContain(`agent run (pid ${String(running.pid)}`);
    expect(errorOf(() => SqliteLocalStore.open({ dataDir, agentId: AGENT, owner: 'agent run' })).code).toBe('FLEET_AGENT_010');

    await kill9(running);
    // Its holder file is still there, but names a dead process: not reported.
    expect(existsSync(join(dataDir, LOCK_OWNER_FILE))).toBe(true);
    expect(readStoreLockHolder(dataDir)).toBeUndefined();
    expect(restoreSqliteStore(chain, dataDir, { agentId: AGENT }).applied).toHaveLength(1);
    const next = SqliteLocalStore.open({ dataDir, agentId: AGENT, owner: 'agent run' });
    expect(next.get(REF('a'))?.fields).toEqual({ v: 1 });
    expect(readStoreLockHolder(dataDir)).toMatchObject({ pid: process.pid });
    next.close();
  });

  it('while a restore holds the store (another process), opening it waits, then refuses; after that process died, it opens', async () => {
    const { dataDir } = storeWithBackup();
    const restoring = await child(`lib.StoreLock.acquire(${JSON.stringify(dataDir)}, 'exclusive', { command: 'agent restore' })`);
    const opened = errorOf(() => SqliteLocalStore.open({ dataDir, agentId: AGENT, lockWaitMs: 200 }));
    expect(opened.code).toBe('FLEET_AGENT_010');
    expect(opened.message).toContain(`being restored by agent restore (pid ${String(restoring.pid)}`);
    const run = errorOf(() => SqliteLocalStore.open({ dataDir, agentId: AGENT, owner: 'agent run' }));
    expect(run.code).toBe('FLEET_AGENT_010');
    expect(run.message).toMatch(/being restored/);
    await kill9(restoring);
    const s = SqliteLocalStore.open({ dataDir, agentId: AGENT, lockWaitMs: 200 });
    expect(s.get(REF('a'))?.fields).toEqual({ v: 2 });
    s.close();
    expect(readdirSync(dataDir).filter((f) => f.startsWith(DB_FILE))).toEqual(expect.arrayContaining([DB_FILE]));
  });
});
