import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Tables of the delta calculator (see docs/delta-calculator.md):
 * - `record_states`: the current CRDT state of every record (fold of the log, by sync-core), its
 *   visible hash, and `rev` = the seq of the last change folded in. Serves full resyncs, pulls by key
 *   and the Merkle trees. Maintained by one projector at a time (the `delta_progress` row lock), in
 *   seq order, so `rev` is assigned in commit order and `rev > cursor` polling never skips.
 * - `delta_progress`: the projector's cursor into the change log.
 * - `log_horizon`: every change with seq <= horizon has been folded into `record_states` and may be
 *   deleted from `change_log` (retention); a pull cursor below it gets a full resync.
 * - `agent_groups`: group membership, for scope authorisation and nudges.
 */
export class DeltaCalculator1767225600300 implements MigrationInterface {
  name = 'DeltaCalculator1767225600300';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table record_states (
        scope       text   not null,
        collection  text   not null,
        key         text   not null,
        state       jsonb  not null,
        record_hash text   not null,
        rev         bigint not null,
        constraint record_states_pk primary key (scope, collection, key)
      )`);
    await q.query(`create index record_states_rev_idx on record_states (scope, collection, rev)`);
    await q.query(`create table delta_progress (name text not null, cursor bigint not null, constraint delta_progress_pk primary key (name))`);
    await q.query(`insert into delta_progress (name, cursor) values ('record_states', 0)`);
    await q.query(`
      create table log_horizon (
        id      boolean not null default true,
        horizon bigint  not null,
        constraint log_horizon_pk primary key (id),
        constraint log_horizon_single_ck check (id)
      )`);
    await q.query(`insert into log_horizon (id, horizon) values (true, 0)`);
    await q.query(`
      create table agent_groups (
        agent_id   text not null,
        group_name text not null,
        constraint agent_groups_pk primary key (agent_id, group_name)
      )`);
    await q.query(`create index agent_groups_group_idx on agent_groups (group_name)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table agent_groups`);
    await q.query(`drop table log_horizon`);
    await q.query(`drop table delta_progress`);
    await q.query(`drop table record_states`);
  }
}
