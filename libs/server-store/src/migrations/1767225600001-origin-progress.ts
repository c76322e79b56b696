import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Projection of agent progress, maintained in the append transaction (see OriginsProjection). */
export class OriginProgress1767225600001 implements MigrationInterface {
  name = 'OriginProgress1767225600001';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table origin_progress (
        origin           text        not null,
        last_origin_seq  bigint      not null,
        last_hlc         text        not null,
        changes_count    bigint      not null,
        last_seq         bigint      not null,
        last_appended_at timestamptz not null,
        constraint origin_progress_pk primary key (origin)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table origin_progress`);
  }
}
