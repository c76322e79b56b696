import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `agent_pulls`: what delta-calculator knows of each agent's pulls and Merkle verifications, for the
 * sync-health score (`fleetctl status`, `agents`; docs/delta-calculator.md, "Pull facts"). Written
 * only by delta-calculator's `PullFacts`: coalesced in memory per replica and flushed in ONE multi-row
 * upsert every few seconds (never per request). Several replicas may flush the same agent: every
 * column keeps the latest by time (`greatest`, or the values of the later pull/verification), `pulls`
 * adds up, `first_pulled_at` keeps the earliest.
 *
 * - `pulled_at`, `pull_from`, `pull_to`, `head_seq`, `behind`: the latest pull page answered (the
 *   cursor asked for and the one answered, as text, cut to 160 characters; the log head seq read with
 *   the page; changes logged after the position answered, 0 when the page reached the end);
 * - `caught_up_at`: the latest pull page that reached the end of the agent's scopes (`hasMore` false);
 * - `verified_at`, `verify_diffs`: the end of the latest Merkle exchange (any scope and collection)
 *   and the buckets it found differing (0: the roots were equal).
 * Times are the replicas' clocks.
 */
export class AgentPulls1767225601300 implements MigrationInterface {
  name = 'AgentPulls1767225601300';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      create table agent_pulls (
        agent_id        text        not null,
        first_pulled_at timestamptz,
        pulled_at       timestamptz,
        pull_from       text,
        pull_to         text,
        head_seq        bigint,
        behind          bigint,
        caught_up_at    timestamptz,
        pulls           bigint      not null default 0,
        verified_at     timestamptz,
        verify_diffs    integer,
        updated_at      timestamptz not null default now(),
        constraint agent_pulls_pk primary key (agent_id),
        constraint agent_pulls_counts check (pulls >= 0 and coalesce(behind, 0) >= 0 and coalesce(verify_diffs, 0) >= 0)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`drop table agent_pulls`);
  }
}
