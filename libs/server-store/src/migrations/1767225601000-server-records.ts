import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Server-side SQL writes (docs/server-writes.md):
 * - `server_records`: the server's writable table. Programs and operators write records here in plain
 *   SQL; conflict-resolver captures every committed insert, update and delete from the WAL (logical
 *   replication, publication `fleet_server_records`) and appends it to the change log as a change with
 *   origin `server`. `replica identity full` puts the row's old image in the WAL, so an update is
 *   captured as exactly the fields it changed and removed. The checks refuse what could never become a
 *   change at write time, with PostgreSQL's own error; the capture checks the rest (field names, sizes)
 *   and dead-letters what fails. TRUNCATE is not published (it clears the table, it deletes no record).
 * - `capture_progress`: per replication slot, the last captured commit (its LSN) and how many of its
 *   records (folded, in order) were appended, claimed in the transaction that appends them: a commit streamed again after a
 *   crash (the slot's position is acknowledged afterwards) is skipped, so nothing is captured twice.
 * The publication needs no particular `wal_level`; the slot (created by the capture) needs `logical`.
 */
export class ServerRecords1767225601000 implements MigrationInterface {
  name = 'ServerRecords1767225601000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table server_records (
        scope      text  not null,
        collection text  not null,
        key        text  not null,
        fields     jsonb not null default '{}'::jsonb,
        constraint server_records_pk primary key (scope, collection, key),
        constraint server_records_scope check (scope = 'fleet' or scope ~ '^(group|host)\\.[A-Za-z0-9_-]{1,128}$'),
        constraint server_records_collection check (collection ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$'),
        constraint server_records_key check (key <> ''),
        constraint server_records_fields check (jsonb_typeof(fields) = 'object')
      )`);
    await q.query(`alter table server_records replica identity full`);
    await q.query(`create publication fleet_server_records for table server_records with (publish = 'insert, update, delete')`);
    await q.query(`
      create table capture_progress (
        slot       text        not null,
        lsn        pg_lsn      not null,
        records    integer     not null,
        updated_at timestamptz not null default now(),
        constraint capture_progress_pk primary key (slot)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table capture_progress`);
    await q.query(`drop publication fleet_server_records`);
    await q.query(`drop table server_records`);
  }
}
