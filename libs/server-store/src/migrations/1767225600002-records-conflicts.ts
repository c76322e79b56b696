import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The records projection (version-vector), the conflict log and manual queue (conflict-resolver),
 * the server's origin sequence (ServerWriter), and the per-record index on the change log that the
 * projection's catch-up and the ServerWriter's fold read through. See docs/conflicts.md.
 */
export class RecordsConflicts1767225600002 implements MigrationInterface {
  name = 'RecordsConflicts1767225600002';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table records (
        scope      text        not null,
        collection text        not null,
        key        text        not null,
        state      jsonb       not null,
        fields     jsonb,
        hash       text        not null,
        vv         jsonb       not null,
        status     text        not null,
        conflicted boolean     not null default false,
        last_seq   bigint      not null default 0,
        rev        bigint      not null default 0,
        updated_at timestamptz not null default now(),
        constraint records_pk primary key (scope, collection, key),
        constraint records_status_ck check (status = any (array['absent'::text, 'live'::text, 'deleted'::text]))
      )`);
    // Delta-calculator: "records of these scopes changed since rev r" (where scope = any($) and rev > $).
    await q.query(`create index records_scope_rev_idx on records (scope, rev)`);
    // max(rev) when a batch assigns revs, and scope-less polling.
    await q.query(`create index records_rev_idx on records (rev)`);
    await q.query(`
      create table conflicts (
        id                   bigint generated always as identity,
        conflict_key         text        not null,
        scope                text        not null,
        collection           text        not null,
        key                  text        not null,
        seq                  bigint      not null,
        strategy             text        not null,
        sides                jsonb       not null,
        outcome              jsonb,
        status               text        not null,
        resolved_by          text,
        resolution_change_id uuid,
        detected_at          timestamptz not null,
        resolved_at          timestamptz,
        constraint conflicts_pk primary key (id),
        constraint conflicts_conflict_key_uq unique (conflict_key),
        constraint conflicts_status_ck check (status = any (array['open'::text, 'pending'::text, 'auto-resolved'::text, 'resolved'::text, 'superseded'::text]))
      )`);
    // The queue and the resolver's sweep: by status, oldest first; and a record's open items.
    await q.query(`create index conflicts_status_id_idx on conflicts (status, id)`);
    await q.query(`create index conflicts_record_idx on conflicts (scope, collection, key, id)`);
    // Catch-up reads of one record's changes after a seq (version-vector, ServerWriter).
    await q.query(`create index change_log_record_seq_idx on change_log (scope, collection, key, seq)`);
    // origin_seq of changes with origin `server`: unique for ever, across replicas; gaps are fine.
    await q.query(`create sequence server_origin_seq as bigint start with 1`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop sequence server_origin_seq`);
    await q.query(`drop index change_log_record_seq_idx`);
    await q.query(`drop table conflicts`);
    await q.query(`drop table records`);
  }
}
