import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The change log: append-only, one row per change, seq assigned under the append lock. */
export class ChangeLog1767225600000 implements MigrationInterface {
  name = 'ChangeLog1767225600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table change_log (
        seq         bigint      not null,
        change_id   uuid        not null,
        origin      text        not null,
        origin_seq  bigint      not null,
        scope       text        not null,
        collection  text        not null,
        key         text        not null,
        op          text        not null,
        fields      jsonb       not null,
        unset       jsonb,
        hlc         text        not null,
        vv          jsonb       not null,
        hash        text        not null,
        protocol    integer     not null,
        appended_at timestamptz not null default now(),
        constraint change_log_pk primary key (seq),
        constraint change_log_change_id_uq unique (change_id),
        constraint change_log_origin_seq_uq unique (origin, origin_seq),
        constraint change_log_op_ck check (op = any (array['put'::text, 'delete'::text])),
        constraint change_log_seq_ck check (seq > 0),
        constraint change_log_origin_seq_ck check (origin_seq > 0)
      )`);
    // Cursor reads by scope: where scope = any($) and seq > $ order by seq.
    await q.query(`create index change_log_scope_seq_idx on change_log (scope, seq)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table change_log`);
  }
}
