import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Critical operations (two-phase commit, docs/critical-operations.md).
 * - `critical_transactions`: the coordinator's decision log. A row is written `preparing` before any
 *   participant is asked; the update to `committing` / `aborting` is the commit point; `committed` /
 *   `aborted` once every participant acknowledged. `votes` and `acked` keep who said what.
 * - `critical_state`: what the server holds for each host, written by the server participant inside
 *   the PostgreSQL prepared transaction, so it appears exactly when the decision is commit.
 * - `critical_applied`: one row per transaction the server participant committed, written in the same
 *   prepared transaction: a repeated commit finds it and knows the work is done.
 */
export class CriticalOperations1767225600900 implements MigrationInterface {
  name = 'CriticalOperations1767225600900';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table critical_transactions (
        txid         uuid        not null,
        kind         text        not null,
        name         text        not null,
        participants text[]      not null,
        state        text        not null,
        votes        jsonb       not null default '{}',
        acked        text[]      not null default '{}',
        reason       text,
        deadline     timestamptz not null,
        created_at   timestamptz not null default now(),
        decided_at   timestamptz,
        completed_at timestamptz,
        last_error   text,
        last_attempt_at timestamptz,
        constraint critical_transactions_pk primary key (txid),
        constraint critical_transactions_state check (state in ('preparing', 'committing', 'aborting', 'committed', 'aborted'))
      )`);
    await q.query(`create index critical_transactions_open on critical_transactions (created_at) where state in ('preparing', 'committing', 'aborting')`);
    await q.query(`
      create table critical_state (
        agent_id   text        not null,
        kind       text        not null,
        name       text        not null,
        value      jsonb       not null,
        txid       uuid        not null,
        updated_at timestamptz not null default now(),
        constraint critical_state_pk primary key (agent_id, kind, name)
      )`);
    await q.query(`
      create table critical_applied (
        txid       uuid        not null,
        applied_at timestamptz not null default now(),
        constraint critical_applied_pk primary key (txid)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table critical_applied`);
    await q.query(`drop table critical_state`);
    await q.query(`drop table critical_transactions`);
  }
}
