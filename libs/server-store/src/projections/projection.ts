import type { EntityManager } from 'typeorm';
import type { LoggedChange } from '@fleet/sync-core';

/**
 * A table derived from the change log, kept up to date in the append transaction.
 *
 * Why this shape: the log is the source of truth and every projection must be rebuildable from
 * it "byte for byte". So a projection is a fold over the log in seq order, run live by
 * `PostgresChangeLog` (in the same transaction as the append, so a projection never lags or
 * leads the log) and offline by `rebuildProjections` (reset, then replay).
 *
 * Rules for implementations (what makes rebuild == live):
 * - `apply` depends only on the log (the changes given, the log's own columns such as
 *   `appended_at`, and the projection's own tables), never on the clock (`now()`), randomness,
 *   or other projections' tables unless they are applied first in the list.
 * - The result must not depend on how the log is cut into batches: live appends arrive in
 *   batches of any size, rebuild replays in pages of its own size. Associative aggregates
 *   (max, sum, "value at the max") and per-change upserts in seq order are fine.
 * - `reset` empties exactly the projection's tables.
 */
export interface Projection {
  /** For logs and the rebuild report. */
  readonly name: string;
  /** Folds `changes` (newly logged, ascending seq, never empty) into the projection. */
  apply(tx: EntityManager, changes: readonly LoggedChange[]): Promise<void>;
  /** Empties the projection, before a replay. */
  reset(tx: EntityManager): Promise<void>;
}
