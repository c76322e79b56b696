/**
 * delta-calculator's part of the operator API, in the queue group `queueGroups.pull`: its status
 * figures (the `record_states` projector's cursor against the log head, the retention horizon),
 * `<ns>.admin.agents.groups` (group memberships, for `fleetctl agents`), `<ns>.admin.agents.sync`
 * (each agent's pulls and verifications with its sync-health score), `<ns>.admin.health` (the fleet's
 * score and its worst agents, for `fleetctl status`) and `<ns>.admin.verify.delta-calculator`
 * (`record_states` against sync-core's fold of the log, read-only). Every one needs the operator token
 * (FLEET_DELTA_OPERATOR_TOKEN, `deltaOperatorCheck`); the agents' own requests (pull, Merkle) do not.
 */
import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { operatorCheck } from '@fleet/config';
import type { OperatorCheck } from '@fleet/config';
import { DataSource } from 'typeorm';
import { answerRequest, decodeAgentGroupsRequest, decodeAgentSyncRequest, decodeFleetHealthRequest, HEALTH_REPORT_PROTOCOL_VERSION, Headers, PROTOCOL_VERSION, SERVER_ORIGIN, subjects } from '@fleet/contracts';
import type { AgentSync, AgentSyncResponse, FleetHealthResponse, StatusFacts } from '@fleet/contracts';
import { DeltaStore, PullFacts, pushReportOf, readAgentPulls, readAllAgentPulls, readRecordStatesCursor } from '@fleet/delta';
import type { AgentPullRow } from '@fleet/delta';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import { currentPushReport, fleetHealth, serverSyncHealth, worstAgents } from '@fleet/observability';
import { logHorizon, projectionProgress, stateVerifyController } from '@fleet/server-store';
import type { StrategyConfig } from '@fleet/sync-core';
import type { DeltaConfig } from './config';

export async function deltaStatusFacts(ds: DataSource): Promise<StatusFacts> {
  const [projection, horizon] = await Promise.all([projectionProgress(ds, 'record_states', readRecordStatesCursor), logHorizon(ds)]);
  return { projection, logHorizon: horizon };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * An agent's stored facts as the operator API shows them, scored at `nowMs` (this replica's clock, as the
 * facts are), in the `protocol` the request was written at: its push-side report (`push`) only at 2.
 */
export function agentSyncView(r: AgentPullRow, nowMs: number, protocol: number = PROTOCOL_VERSION): AgentSync {
  const push = pushReportOf(r);
  const facts = { caughtUpAt: r.caughtUpAt, firstPulledAt: r.firstPulledAt, verifyDiffs: r.verifyDiffs, pulledAt: r.pulledAt, push };
  const health = serverSyncHealth(facts, nowMs);
  return {
    agentId: r.agentId,
    firstPullAt: iso(r.firstPulledAt),
    lastPullAt: iso(r.pulledAt),
    pullFrom: r.pullFrom,
    pullTo: r.pullTo,
    headSeqAtPull: r.headSeq,
    behind: r.behind,
    caughtUpAt: iso(r.caughtUpAt),
    pulls: r.pulls,
    lastVerifiedAt: iso(r.verifiedAt),
    verifyDifferences: r.verifyDiffs,
    lastPushAt: iso(r.lastPushAt),
    health: { score: health.score, status: health.status, reasons: health.reasons.slice(0, 16) },
    ...(protocol < HEALTH_REPORT_PROTOCOL_VERSION
      ? {}
      : { push: push === null ? null : { reportedAt: new Date(push.at).toISOString(), outbox: push.outbox, oldestUnsentAgeMs: push.oldestUnsentAgeMs, retryQueue: push.retryQueue, failedPushes: push.failedPushes, stale: currentPushReport(facts) === undefined } }),
  };
}

/** delta-calculator's operator token check: group memberships, pull facts, fleet health, verify, status. */
export function deltaOperatorCheck(config: DeltaConfig): OperatorCheck {
  return operatorCheck(config.operatorToken, 'FLEET_DELTA_OPERATOR_TOKEN');
}

export function deltaOperatorController(config: DeltaConfig, now: () => number = Date.now): Type<unknown> {
  const s = subjects(config.namespace);
  const check = deltaOperatorCheck(config);
  const authorize = (req: InboundRequest, action: string): void => check(req.header(Headers.Authorization), action);
  @Controller()
  class DeltaOperatorController {
    constructor(
      @Inject(DataSource) private readonly ds: DataSource,
      @Inject(DeltaStore) private readonly store: DeltaStore,
      @Inject(PullFacts) private readonly facts: PullFacts,
    ) {}

    @NatsRequest(s.agentGroupsApi, s.queueGroups.pull)
    groups(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        authorize(req, 'agent groups');
        return { protocol: PROTOCOL_VERSION, groups: await this.store.groupsOfMany(decodeAgentGroupsRequest(req.data).agentIds) };
      });
    }

    /** The stored facts: this replica flushes what it holds first (other replicas' last few seconds may be missing). */
    @NatsRequest(s.agentSyncApi, s.queueGroups.pull)
    agents(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async (): Promise<AgentSyncResponse> => {
        authorize(req, 'agent sync');
        const { protocol, agentIds } = decodeAgentSyncRequest(req.data);
        await this.facts.flush().catch(() => undefined);
        const rows = await readAgentPulls(this.ds, agentIds);
        const at = now();
        // Answered in the version asked in (an older fleetctl reads no `push`).
        return { protocol, at: new Date(at).toISOString(), agents: Object.fromEntries(rows.map((r) => [r.agentId, agentSyncView(r, at, protocol)])) };
      });
    }

    @NatsRequest(s.fleetHealthApi, s.queueGroups.pull, { maxConcurrent: 2 })
    health(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async (): Promise<FleetHealthResponse> => {
        authorize(req, 'fleet health');
        const { protocol, worst } = decodeFleetHealthRequest(req.data);
        await this.facts.flush().catch(() => undefined);
        const at = now();
        const views = (await readAllAgentPulls(this.ds, SERVER_ORIGIN)).map((r) => agentSyncView(r, at, protocol));
        const fleet = fleetHealth(views.map((v) => v.health));
        return {
          protocol,
          at: new Date(at).toISOString(),
          score: fleet.score,
          status: fleet.status,
          reasons: fleet.reasons.slice(0, 16),
          agents: fleet.agents,
          byStatus: { ...fleet.byStatus },
          worst: worstAgents(views, worst ?? 5),
        };
      });
    }
  }
  return DeltaOperatorController;
}

/** `record_states` folds a page and moves its cursor in one transaction: no row is ever ahead of the cursor. */
export function deltaVerifyController(config: DeltaConfig, strategies: StrategyConfig): Type<unknown> {
  const s = subjects(config.namespace);
  return stateVerifyController({
    service: 'delta-calculator',
    subject: s.verifyApi('delta-calculator'),
    queueGroup: s.queueGroups.pull,
    table: 'record_states',
    appliedColumn: 'rev',
    readCursor: readRecordStatesCursor,
    aheadOfCursor: false,
    config: strategies,
    authorize: deltaOperatorCheck(config),
  });
}
