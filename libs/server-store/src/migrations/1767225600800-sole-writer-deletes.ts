import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `record_states.sole_min` now counts the deletes a state keeps (sync-core `soleWriter`): a row projected
 * before may claim a sole writer from above a delete an agent has not received. Such rows (any delete
 * kept) lose their sole writer until the projector writes them again: snapshots send them (an echo at
 * worst, never a record left out).
 */
export class SoleWriterDeletes1767225600800 implements MigrationInterface {
  name = 'SoleWriterDeletes1767225600800';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`update record_states set sole_origin = null, sole_min = null
                    where sole_origin is not null and jsonb_typeof(state->'deletes') = 'array' and jsonb_array_length(state->'deletes') > 0`);
  }

  async down(): Promise<void> {
    // Nothing to undo: the columns are recomputed as rows are projected again.
  }
}
