import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Durable projection cursors: for the records projection, the highest seq H such that every change
 * with seq <= H is applied (version-vector's log sweep advances it; a rebuild resets it).
 */
export class ProjectionCursor1767225600400 implements MigrationInterface {
  name = 'ProjectionCursor1767225600400';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table projection_cursors (
        name       text        not null,
        seq        bigint      not null,
        updated_at timestamptz not null default now(),
        constraint projection_cursors_pk primary key (name)
      )`);
    await q.query(`insert into projection_cursors (name, seq) values ('records', 0)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table projection_cursors`);
  }
}
