/**
 * SQLite failures become FleetErrors with a stable code, so the agent's edge (the CLI, the sync
 * manager) can say what is wrong and exit with a meaningful status instead of printing a stack.
 */
import { FleetError, isFleetError } from '@fleet/errors';

/** The `code` of better-sqlite3's SqliteError (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`...), or undefined. */
export function sqliteCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** Maps an error thrown by SQLite (or the file system) to a FleetError; FleetErrors pass through. */
export function translateError(e: unknown, path: string): unknown {
  if (isFleetError(e)) return e;
  const code = sqliteCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (code === undefined) {
    const fsCode = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
    if (fsCode === 'EACCES' || fsCode === 'EROFS' || fsCode === 'ENOTDIR' || fsCode === 'EPERM' || fsCode === 'EEXIST') {
      return new FleetError('FLEET_AGENT_001', `${path}: ${msg}`, { cause: e, details: { path, code: fsCode } });
    }
    if (fsCode === 'ENOSPC' || fsCode === 'EDQUOT') return new FleetError('FLEET_AGENT_002', `${path}: ${msg}`, { cause: e, details: { path, code: fsCode } });
    return e;
  }
  if (code === 'SQLITE_FULL') return new FleetError('FLEET_AGENT_002', `${path}: ${msg} (the write was rolled back)`, { cause: e, details: { path, code } });
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new FleetError('FLEET_AGENT_007', `${path}: ${msg}`, { cause: e, details: { path, code } });
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_IOERR') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') {
    return new FleetError('FLEET_AGENT_001', `${path}: ${msg}`, { cause: e, details: { path, code } });
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new FleetError('FLEET_INFRA_001', `${path}: database locked by another process past busy_timeout: ${msg}`, { cause: e, details: { path, code } });
  }
  return e;
}
