import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Logged changes the records projection rejected (a reused dot, FLEET_CHANGE_002): written in the
 * projection transaction that stepped over them, so the list is as durable as the records themselves
 * (the dead letter version-vector publishes afterwards is at most once). Derived from the log: a
 * rebuild empties and refills it.
 */
export class RejectedChanges1767225600700 implements MigrationInterface {
  name = 'RejectedChanges1767225600700';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table rejected_changes (
        seq         bigint      not null,
        origin      text        not null,
        origin_seq  bigint      not null,
        change_id   text        not null,
        scope       text        not null,
        collection  text        not null,
        key         text        not null,
        code        text        not null,
        reason      text        not null,
        rejected_at timestamptz not null default now(),
        constraint rejected_changes_pk primary key (seq)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table rejected_changes`);
  }
}
