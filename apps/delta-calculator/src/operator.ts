/**
 * delta-calculator's part of the operator API, in the queue group `queueGroups.pull`: its status
 * figures (the `record_states` projector's cursor against the log head, the retention horizon),
 * `<ns>.admin.agents.groups` (group memberships, for `fleetctl agents`) and
 * `<ns>.admin.verify.delta-calculator` (`record_states` against sync-core's fold of the log, read-only).
 */
import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { DataSource } from 'typeorm';
import { answerRequest, decodeAgentGroupsRequest, decodeVerifyRequest, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { StatusFacts, VerifyResponse } from '@fleet/contracts';
import { DeltaStore, readRecordStatesCursor } from '@fleet/delta';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import { logHorizon, projectionProgress, verifyStateTable } from '@fleet/server-store';
import type { StrategyConfig } from '@fleet/sync-core';
import type { DeltaConfig } from './config';

export async function deltaStatusFacts(ds: DataSource): Promise<StatusFacts> {
  const [projection, horizon] = await Promise.all([projectionProgress(ds, 'record_states', readRecordStatesCursor), logHorizon(ds)]);
  return { projection, logHorizon: horizon };
}

export function deltaOperatorController(config: DeltaConfig, strategies: StrategyConfig): Type<unknown> {
  const s = subjects(config.namespace);
  @Controller()
  class DeltaOperatorController {
    constructor(
      @Inject(DataSource) private readonly ds: DataSource,
      @Inject(DeltaStore) private readonly store: DeltaStore,
    ) {}

    @NatsRequest(s.agentGroupsApi, s.queueGroups.pull)
    groups(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => ({ protocol: PROTOCOL_VERSION, groups: await this.store.groupsOfMany(decodeAgentGroupsRequest(req.data).agentIds) }));
    }

    @NatsRequest(s.verifyApi('delta-calculator'), s.queueGroups.pull, { maxConcurrent: 1 })
    verify(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async (): Promise<VerifyResponse> => {
        const r = decodeVerifyRequest(req.data);
        const started = performance.now();
        const check = await verifyStateTable(this.ds, {
          table: 'record_states',
          appliedColumn: 'rev',
          readCursor: readRecordStatesCursor,
          aheadOfCursor: false,
          config: strategies,
          maxDiffs: r.maxDiffs ?? 100,
        });
        return { protocol: PROTOCOL_VERSION, service: 'delta-calculator', durationMs: Math.round(performance.now() - started), checks: [check] };
      });
    }
  }
  return DeltaOperatorController;
}
