import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Delta calculator: `record_states.wire`, the state's compact wire text (`{"w":..,"x":..,"d"?:..,"f"?:..}`,
 * contracts' `toWireRecord` without the reference, exactly the agent store's stored form). Written by the
 * projector with `state`; snapshot pages are built by concatenating it, with no JSON decoding on the
 * server (docs/delta-calculator.md). NULL for rows projected before this migration: readers fall back to
 * converting `state`.
 */
export class RecordStatesWire1767225600500 implements MigrationInterface {
  name = 'RecordStatesWire1767225600500';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`alter table record_states add column wire text`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`alter table record_states drop column wire`);
  }
}
