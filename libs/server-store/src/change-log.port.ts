import type { Change, LoggedChange } from '@fleet/sync-core';
import type { FleetError } from '@fleet/errors';

/**
 * The change log: the append-only, totally ordered source of truth of the server.
 *
 * Why a port: the services that append (change-log) and read (delta-calculator, version-vector,
 * the operator CLI's replay) need only these two operations and their guarantees, not
 * PostgreSQL. Keeping them behind an interface lets the guarantees be stated once, here, and
 * tested as a suite against each adapter (today `PostgresChangeLog`).
 *
 * Guarantees every adapter must keep:
 * - Idempotent append: a change is logged at most once, by `changeId` AND by
 *   `(origin, originSeq)`, for ever (not only within a broker's dedupe window).
 * - A replayed change is not an error: it comes back in `duplicates` with the `seq` it already
 *   has, so a caller that crashed between commit and publish can publish its events again.
 * - Cursor safety: `readSince(c)` never returns a change with seq `s` while some change with
 *   seq < `s` and > `c` is still to become visible. A reader that advances its cursor to the last
 *   seq it saw therefore never skips a change. (In PostgreSQL this needs care, see
 *   `docs/change-log.md`.)
 */
export interface ChangeLog {
  /** Appends a batch atomically (one transaction, projections included). */
  appendBatch(changes: readonly Change[]): Promise<AppendResult>;
  /** Changes with seq > cursor, in seq order, optionally only those of some scopes. */
  readSince(cursor: number, options: ReadSinceOptions): Promise<ReadSinceResult>;
}

export interface AppendResult {
  /** Changes logged by this call, in seq order. */
  readonly appended: readonly LoggedChange[];
  /** Changes that were already logged (by an earlier call, or earlier in this batch), as logged. */
  readonly duplicates: readonly LoggedChange[];
  /**
   * Changes refused, each with a non-retryable FleetError the caller dead-letters: an identity
   * conflict (`FLEET_LOG_001`), or a value the database cannot store (`FLEET_DECODE_002`).
   * A refused change never makes the rest of the batch fail.
   */
  readonly rejected: readonly RejectedChange[];
}

export interface RejectedChange {
  readonly change: Change;
  readonly error: FleetError;
}

export interface ReadSinceOptions {
  /** At most this many changes (1..10,000). */
  readonly limit: number;
  /** Only changes of these scopes; all scopes when absent. */
  readonly scopes?: readonly string[];
}

export interface ReadSinceResult {
  readonly changes: readonly LoggedChange[];
  /** The seq to pass next time: the last seq returned, or the cursor given if none. */
  readonly nextCursor: number;
  /** Whether more changes were visible past `nextCursor` when this page was read. */
  readonly hasMore: boolean;
}
