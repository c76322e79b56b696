import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Delta calculator: `record_states.sole_origin`, `sole_min` and `sole_at`: when one origin made every
 * write the state holds, that origin and the lowest counter among them (sync-core `soleWriter`), as of
 * `rev = sole_at`. A snapshot for agent A with `ownFrom` F leaves out A's host records with
 * `sole_origin = A and sole_min >= F`: A's store already holds them (docs/delta-calculator.md, no echo).
 * `sole_at` ties the two to the row's `rev`: a replica of the previous version updates `state` and `rev`
 * without them, and the snapshot then sends the row (NULL for rows projected before this migration too).
 */
export class RecordStatesSoleWriter1767225600600 implements MigrationInterface {
  name = 'RecordStatesSoleWriter1767225600600';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`alter table record_states add column sole_origin text, add column sole_min bigint, add column sole_at bigint`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`alter table record_states drop column sole_origin, drop column sole_min, drop column sole_at`);
  }
}
