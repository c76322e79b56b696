import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The agent's push side in `agent_pulls` (docs/delta-calculator.md, "Pull facts"): the latest report an
 * agent's pull requests carried (`PullRequest.health`, protocol 2), written by delta-calculator's
 * `PullFacts` with the pull facts, in the same upsert. Several replicas keep the latest by `health_at`,
 * as they do the latest pull by `pulled_at`.
 *
 * - `health_at`: when the latest report arrived (the replica's clock, the time of the pull page it came with);
 * - `outbox`, `oldest_unsent_age_ms`, `retry_queue`, `failed_pushes`: what it said: unsent changes queued,
 *   how long the oldest had waited (ms, the agent's clock), those already refused by a push at least once,
 *   push attempts failed in a row.
 * All null for an agent that never sent one (an agent of protocol 1).
 */
export class AgentPushHealth1767225601500 implements MigrationInterface {
  name = 'AgentPushHealth1767225601500';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      alter table agent_pulls
        add column health_at            timestamptz,
        add column outbox               integer,
        add column oldest_unsent_age_ms bigint,
        add column retry_queue          integer,
        add column failed_pushes        integer,
        add constraint agent_pulls_push_health check (
          coalesce(outbox, 0) >= 0 and coalesce(oldest_unsent_age_ms, 0) >= 0 and coalesce(retry_queue, 0) >= 0 and coalesce(failed_pushes, 0) >= 0
        )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`
      alter table agent_pulls
        drop constraint agent_pulls_push_health,
        drop column health_at,
        drop column outbox,
        drop column oldest_unsent_age_ms,
        drop column retry_queue,
        drop column failed_pushes`);
  }
}
