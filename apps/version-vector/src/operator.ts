/**
 * version-vector's part of the operator API: its status figures (the records projection's cursor
 * against the log head, `fleetctl status`) and `<ns>.admin.verify.version-vector` (the records
 * projection against sync-core's fold of the log, read-only, `fleetctl verify`), in the queue group
 * `queueGroups.versionVector`.
 */
import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { DataSource } from 'typeorm';
import { decodeVerifyRequest, errorReply, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { StatusFacts, VerifyResponse } from '@fleet/contracts';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import { projectionProgress, readProjectionCursor, verifyStateTable } from '@fleet/server-store';
import type { StrategyConfig } from '@fleet/sync-core';
import type { VersionVectorConfig } from './config';
import { STRATEGY_CONFIG } from './tokens';

export async function versionVectorStatusFacts(ds: DataSource): Promise<StatusFacts> {
  return { projection: await projectionProgress(ds, 'records', readProjectionCursor) };
}

export function verifyController(config: VersionVectorConfig): Type<unknown> {
  const s = subjects(config.namespace);

  @Controller()
  class VerifyController {
    constructor(
      @Inject(DataSource) private readonly ds: DataSource,
      @Inject(STRATEGY_CONFIG) private readonly strategies: StrategyConfig,
    ) {}

    @NatsRequest(s.verifyApi('version-vector'), s.queueGroups.versionVector, { maxConcurrent: 1 })
    async verify(@Payload() req: InboundRequest): Promise<unknown> {
      try {
        const r = decodeVerifyRequest(req.data);
        const started = performance.now();
        const check = await verifyStateTable(this.ds, {
          table: 'records',
          appliedColumn: 'last_seq',
          readCursor: readProjectionCursor,
          aheadOfCursor: true,
          config: this.strategies,
          maxDiffs: r.maxDiffs ?? 100,
        });
        const reply: VerifyResponse = { protocol: PROTOCOL_VERSION, service: 'version-vector', durationMs: Math.round(performance.now() - started), checks: [check] };
        return reply;
      } catch (e) {
        return errorReply(e);
      }
    }
  }
  return VerifyController;
}
