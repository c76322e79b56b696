/**
 * `<ns>.admin.verify.<service>` for a records table (`fleetctl verify`, docs/operations.md): one
 * factory for version-vector (`records`) and delta-calculator (`record_states`), which differ only in
 * the table, its cursor and the queue group. Read-only (`verifyStateTable`), one check at a time per
 * replica; errors become error replies through `answerRequest`. Needs the operator token like every
 * operator request (`authorize`: FLEET_AUTH_004 otherwise).
 */
import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { DataSource } from 'typeorm';
import type { OperatorCheck } from '@fleet/config';
import { answerRequest, decodeVerifyRequest, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import type { VerifyResponse } from '@fleet/contracts';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import { verifyStateTable } from './inspect';
import type { StateTableSpec } from './inspect';

export interface StateVerifySpec extends Omit<StateTableSpec, 'maxDiffs'> {
  readonly service: 'version-vector' | 'delta-calculator';
  /** `subjects(ns).verifyApi(service)`. */
  readonly subject: string;
  /** The service's own queue group (one replica answers). */
  readonly queueGroup: string;
  /** The service's operator token check (`operatorCheck` of libs/config). */
  readonly authorize: OperatorCheck;
}

export function stateVerifyController(spec: StateVerifySpec): Type<unknown> {
  const { service, subject, queueGroup, authorize, ...table } = spec;

  @Controller()
  class StateVerifyController {
    constructor(@Inject(DataSource) private readonly ds: DataSource) {}

    @NatsRequest(subject, queueGroup, { maxConcurrent: 1 })
    verify(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async (): Promise<VerifyResponse> => {
        authorize(req.header(Headers.Authorization), 'verify');
        const r = decodeVerifyRequest(req.data);
        const started = performance.now();
        const check = await verifyStateTable(this.ds, { ...table, maxDiffs: r.maxDiffs ?? 100 });
        return { protocol: PROTOCOL_VERSION, service, durationMs: Math.round(performance.now() - started), checks: [check] };
      });
    }
  }
  return StateVerifyController;
}
