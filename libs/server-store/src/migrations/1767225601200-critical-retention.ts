import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Retention of the critical operations' decision log (docs/critical-operations.md, "Retention").
 * - `critical_transactions_done`: finished transactions by completion time, for the pruning pass.
 * - `critical_pruned`: one row, the highest txid pruned so far (`max_txid`) and how many were pruned.
 *   A status request about a txid the log does not hold is presumed abort only above `max_txid`: at
 *   or below it the transaction may have been pruned after a commit, so the coordinator cannot presume.
 */
export class CriticalRetention1767225601200 implements MigrationInterface {
  name = 'CriticalRetention1767225601200';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`create index critical_transactions_done on critical_transactions (completed_at) where state in ('committed', 'aborted')`);
    await q.query(`
      create table critical_pruned (
        id         boolean     not null default true,
        max_txid   uuid        not null,
        pruned     bigint      not null,
        updated_at timestamptz not null default now(),
        constraint critical_pruned_pk primary key (id),
        constraint critical_pruned_one_row check (id)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table critical_pruned`);
    await q.query(`drop index critical_transactions_done`);
  }
}
