import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The capture's initial copy (docs/server-writes.md, "The initial copy"): when the capture makes its
 * replication slot, the rows of `server_records` as of the slot's consistent point (the snapshot the
 * slot exports) are stored here, in key order, with that point's LSN, in the same transaction that sets
 * `capture_progress` to (lsn, 0). They are then appended part by part like one captured transaction
 * (the same claims in `capture_progress`, so a crash resumes at the next row and nothing is copied
 * twice), and deleted once all are appended; the stream starts after them.
 */
export class CaptureCopy1767225601400 implements MigrationInterface {
  name = 'CaptureCopy1767225601400';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table capture_copy (
        slot       text   not null,
        idx        bigint not null,
        lsn        pg_lsn not null,
        scope      text   not null,
        collection text   not null,
        key        text   not null,
        fields     jsonb  not null,
        constraint capture_copy_pk primary key (slot, idx),
        constraint capture_copy_idx_ck check (idx > 0)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table capture_copy`);
  }
}
