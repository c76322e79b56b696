/**
 * Who has the agent's store open: SQLite's own file locks on `<dataDir>/agent.lock`, an empty SQLite
 * database that holds nothing but locks. Three modes, mapped onto SQLite's lock levels of a
 * rollback-journal database:
 *
 * | mode | lock held while open | who | refused while |
 * |---|---|---|---|
 * | `shared` | SHARED (a read transaction left open) | every `SqliteLocalStore` (`agent put`, `get`, `status`, `backup`...) | a restore holds `exclusive` (after waiting `waitMs`) |
 * | `owner` | RESERVED (`BEGIN IMMEDIATE`, never committed) | the one process that syncs the store (`agent run`) | another owner, or a restore, holds it (at once) |
 * | `exclusive` | EXCLUSIVE (`BEGIN EXCLUSIVE`) | `restoreSqliteStore` (`agent restore`) | an owner holds it (at once), or any store is open (after waiting `waitMs`) |
 *
 * SHARED and RESERVED coexist, so reads and writes from other processes keep working beside `agent
 * run`; a second RESERVED is refused, and EXCLUSIVE excludes everything. The locks are POSIX advisory
 * locks held by the process and released by the kernel when it exits, however it exits: an agent that
 * crashed, was SIGKILLed or lost power leaves no stale lock behind, and no pid has to be guessed alive
 * or dead (a pid file could name a pid reused since, or a process of another host on a shared disk).
 * The lock database is never written (its journal is in memory), so there is nothing to recover.
 *
 * Who holds `owner` or `exclusive` is written beside it, `agent.lock.owner` (JSON: mode, command, pid,
 * host, since), after the lock is taken and removed before it is released: information for the
 * refusal message only, never a decision (the lock decides).
 *
 * Never open `agent.lock` with anything but this module in a process that holds one of these locks:
 * POSIX locks belong to the process, and closing any other descriptor of the file drops them.
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FleetError } from '@fleet/errors';
import { sqliteCode, translateError } from './sqlite-errors';

export const LOCK_FILE = 'agent.lock';
export const LOCK_OWNER_FILE = 'agent.lock.owner';
/** How long `shared` waits for a restore, and `exclusive` for other processes' short commands, by default. */
export const DEFAULT_LOCK_WAIT_MS = 5000;

export type StoreLockMode = 'shared' | 'owner' | 'exclusive';

/** What `agent.lock.owner` says of the holder of `owner` or `exclusive`. */
export interface StoreLockHolder {
  readonly mode: 'owner' | 'exclusive';
  /** The command that holds it (`agent run`, `agent restore`). */
  readonly command: string;
  readonly pid: number;
  readonly host: string;
  /** Epoch ms. */
  readonly since: number;
}

export interface StoreLockOptions {
  /** The command named to whoever is refused (`owner` and `exclusive`). */
  readonly command?: string;
  /** `shared`: how long to wait for a restore; `exclusive`: for other processes' open stores. Default 5 s. */
  readonly waitMs?: number;
  readonly now?: () => number;
}

function busy(e: unknown): boolean {
  const code = sqliteCode(e);
  return code !== undefined && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/** The holder as `agent.lock.owner` names it, when the file is there and plausible (best effort). */
export function readStoreLockHolder(dataDir: string): StoreLockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(join(dataDir, LOCK_OWNER_FILE), 'utf8')) as Partial<StoreLockHolder>;
    if ((h.mode !== 'owner' && h.mode !== 'exclusive') || typeof h.pid !== 'number' || typeof h.host !== 'string' || typeof h.since !== 'number') return undefined;
    // Left by a holder that died (the lock is someone else's now, who has not written the file yet).
    if (h.host === hostname() && !alive(h.pid)) return undefined;
    return { mode: h.mode, command: typeof h.command === 'string' ? h.command : h.mode === 'owner' ? 'agent run' : 'agent restore', pid: h.pid, host: h.host, since: h.since };
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: unknown }).code === 'EPERM';
  }
}

function describeHolder(h: StoreLockHolder | undefined, fallback: string): string {
  if (h === undefined) return fallback;
  return `${h.command} (pid ${h.pid} on ${h.host}, since ${new Date(h.since).toISOString()})`;
}

/** One lock on a data directory, held until `release()`. */
export class StoreLock {
  private released = false;

  private constructor(
    private readonly db: Database.Database,
    readonly dataDir: string,
    readonly mode: StoreLockMode,
  ) {}

  /**
   * Takes the lock or throws FLEET_AGENT_010 (the store is in use: the message names the holder when it
   * is known), FLEET_AGENT_001 (the lock file cannot be created).
   */
  static acquire(dataDir: string, mode: StoreLockMode, options: StoreLockOptions = {}): StoreLock {
    const path = join(dataDir, LOCK_FILE);
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (e) {
      throw translateError(e, path);
    }
    const waitMs = options.waitMs ?? DEFAULT_LOCK_WAIT_MS;
    const refuse = (why: string, cause: unknown): never => {
      db.close();
      throw new FleetError('FLEET_AGENT_010', why, { cause, details: { dataDir, mode } });
    };
    try {
      // An owner, or a restore, refuses at once when another owner or restore holds the store.
      db.pragma(`busy_timeout = ${mode === 'shared' ? waitMs : 0}`);
      // Nothing is ever written: no journal file to leave behind (locks do not need one). Reads the
      // file, so it waits (or is refused) like the lock itself.
      db.pragma('journal_mode = MEMORY');
      if (mode === 'shared') {
        db.exec('BEGIN');
        db.prepare('SELECT count(*) FROM sqlite_master').get();
      } else {
        db.exec('BEGIN IMMEDIATE');
        if (mode === 'exclusive') {
          // Then waits for other processes' short commands (agent put, status) to close their stores.
          db.exec('ROLLBACK');
          db.pragma(`busy_timeout = ${waitMs}`);
          try {
            db.exec('BEGIN EXCLUSIVE');
          } catch (e) {
            if (!busy(e)) throw e;
            const h = readStoreLockHolder(dataDir);
            refuse(`${dataDir}: the store is in use by ${describeHolder(h, `another process (still open after ${waitMs} ms)`)}; close it and retry`, e);
          }
        }
      }
    } catch (e) {
      if (busy(e)) {
        const h = readStoreLockHolder(dataDir);
        if (mode === 'shared') refuse(`${dataDir}: the store is being restored by ${describeHolder(h, 'another process')}; retry when it is done`, e);
        if (h?.mode === 'exclusive') refuse(`${dataDir}: the store is being restored by ${describeHolder(h, 'another process')}; retry when it is done`, e);
        refuse(`${dataDir}: the store is in use by ${describeHolder(h, 'another agent run or restore')}; stop it first`, e);
      }
      if (e instanceof FleetError) throw e;
      db.close();
      throw translateError(e, path);
    }
    const lock = new StoreLock(db, dataDir, mode);
    if (mode !== 'shared') lock.writeHolder({ mode, command: options.command ?? (mode === 'owner' ? 'agent run' : 'agent restore'), pid: process.pid, host: hostname(), since: (options.now ?? Date.now)() });
    return lock;
  }

  private writeHolder(h: StoreLockHolder): void {
    // Information only (refusal messages): written whole then renamed; a failure (full disk) is ignored.
    const file = join(this.dataDir, LOCK_OWNER_FILE);
    try {
      writeFileSync(`${file}.${process.pid}.tmp`, JSON.stringify(h));
      renameSync(`${file}.${process.pid}.tmp`, file);
    } catch {
      rmSync(`${file}.${process.pid}.tmp`, { force: true });
    }
  }

  /** Releases the lock (idempotent). The holder file goes first, while the lock still excludes the next holder. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.mode !== 'shared') {
      try {
        rmSync(join(this.dataDir, LOCK_OWNER_FILE), { force: true });
      } catch {
        // information only
      }
    }
    try {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
    } finally {
      this.db.close();
    }
  }
}
