import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Delta calculator: `record_states.wire`, the state's compact wire text (`{"w":..,"x":..,"d"?:..,"f"?:..}`,
 * contracts' `toWireRecord` without the reference, exactly the agent store's stored form). Written by the
 * projector with `state`; snapshot pages are built by concatenating it, with no JSON decoding on the
 * server (docs/delta-calculator.md). NULL for rows projected before this migration: readers fall back to
 * converting `state`. A trigger keeps the two together when a replica of the previous version (which
 * does not know the column) updates `state` during a rolling deploy: the stale text is cleared, so the
 * snapshot converts `state` instead of sending an old state under a newer cursor.
 */
export class RecordStatesWire1767225600500 implements MigrationInterface {
  name = 'RecordStatesWire1767225600500';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`alter table record_states add column wire text`);
    await q.query(`
      create function record_states_wire_guard() returns trigger language plpgsql as $$
      begin
        if new.state is distinct from old.state and new.wire is not distinct from old.wire then
          new.wire := null;
        end if;
        return new;
      end $$`);
    await q.query(`create trigger record_states_wire_guard before update on record_states for each row execute function record_states_wire_guard()`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop trigger record_states_wire_guard on record_states`);
    await q.query(`drop function record_states_wire_guard()`);
    await q.query(`alter table record_states drop column wire`);
  }
}
