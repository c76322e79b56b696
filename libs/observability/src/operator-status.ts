import { hostname } from 'node:os';
import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import type { OperatorCheck } from '@fleet/config';
import { decodeStatusRequest, errorReply, Headers, PROTOCOL_VERSION, subjects } from '@fleet/contracts';
import type { ServerService, StatusFacts, StatusResponse } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import { HealthService } from './health.module';

/** The provider of a service's own status figures (`StatusFacts`): `{ provide: STATUS_FACTS, useFactory: (...) => async () => ({...}) }`. */
export const STATUS_FACTS = Symbol('STATUS_FACTS');
export type StatusFactsFn = () => Promise<StatusFacts>;

/** Reading the figures takes longer than this: answered without them (a hung database must not hang `fleetctl status`). */
export const STATUS_FACTS_TIMEOUT_MS = 5000;

/**
 * `<ns>.admin.status.<service>` (fleetctl status): the replica's readiness (the same checks as
 * `GET /health/ready`) and the service's own figures. An answer at all says the service is reachable
 * over NATS; a failure to read the figures is reported in the answer (`factsError`), not as an error
 * reply, so the operator still sees readiness. The app supplies `STATUS_FACTS` and imports `HealthModule`.
 * Like every operator request it needs the operator token (`authorize`, the service's `operatorCheck`):
 * refused with an error reply FLEET_AUTH_004 otherwise. The probes (`/health/*`) stay open.
 */
export function operatorStatusController(service: ServerService, namespace: string, queueGroup: string, authorize: OperatorCheck): Type<unknown> {
  const s = subjects(namespace);
  const instance = `${hostname()}:${process.pid}`.slice(0, 256);

  @Controller()
  class OperatorStatusController {
    constructor(
      @Inject(HealthService) private readonly health: HealthService,
      @Inject(STATUS_FACTS) private readonly facts: StatusFactsFn,
    ) {}

    @NatsRequest(s.statusApi(service), queueGroup)
    async status(@Payload() req: InboundRequest): Promise<unknown> {
      try {
        authorize(req.header(Headers.Authorization), 'status');
        decodeStatusRequest(req.data);
      } catch (e) {
        return errorReply(e);
      }
      const [ready, facts] = await Promise.all([this.health.ready(), readFacts(this.facts)]);
      const reply: StatusResponse = {
        protocol: PROTOCOL_VERSION,
        service,
        instance,
        uptimeSeconds: Math.round(process.uptime()),
        ready: { status: ready.status, draining: ready.draining, checks: ready.checks.map((c) => ({ name: c.name, status: c.status, durationMs: c.durationMs, ...(c.error === undefined ? {} : { error: c.error.slice(0, 4000) }) })) },
        facts: 'facts' in facts ? facts.facts : {},
        ...('error' in facts ? { factsError: errorReply(facts.error).error } : {}),
      };
      return reply;
    }
  }
  return OperatorStatusController;
}

async function readFacts(fn: StatusFactsFn): Promise<{ facts: StatusFacts } | { error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FleetError('FLEET_INFRA_001', `status figures not read within ${STATUS_FACTS_TIMEOUT_MS} ms`)), STATUS_FACTS_TIMEOUT_MS);
  });
  try {
    return { facts: await Promise.race([fn(), timeout]) };
  } catch (e) {
    // A driver's error (PostgreSQL down, say) is what the operator needs to read, not an "internal error".
    return { error: e instanceof FleetError ? e : new FleetError('FLEET_INFRA_001', e instanceof Error ? e.message : String(e), { cause: e }) };
  } finally {
    clearTimeout(timer);
  }
}
