import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { answerRequest, decodeConflictResolveRequest, decodeConflictShowRequest, decodeConflictsListRequest, Headers, subjects } from '@fleet/contracts';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import type { ConflictResolverConfig } from './config';
import { checkResolverOperator } from './operator-token';
import { ResolverService } from './resolver.service';

/**
 * The operator API over NATS request/reply (`<ns>.admin.conflicts.list|show|resolve`, queue group
 * `queueGroups.admin`: replicas share the requests). Requests are decoded with the contracts'
 * schemas; a failure is answered with `errorReply` (`{"error":{code,...}}`), which
 * `decodeConflicts*Reply` turn into `{ok: false, error}` on the caller's side. Every verb, reads too,
 * needs the operator token in the `Authorization` header (`Bearer <token>`; FLEET_AUTH_004 otherwise).
 */
export function conflictsApiController(config: ConflictResolverConfig): Type<unknown> {
  const s = subjects(config.namespace);
  @Controller()
  class ConflictsApiController {
    constructor(@Inject(ResolverService) private readonly resolver: ResolverService) {}

    @NatsRequest(s.conflictsApi('list'), s.queueGroups.admin)
    list(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        checkResolverOperator(config.operatorToken, req.header(Headers.Authorization), 'conflict list');
        return this.resolver.list(decodeConflictsListRequest(req.data));
      });
    }

    @NatsRequest(s.conflictsApi('show'), s.queueGroups.admin)
    show(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        checkResolverOperator(config.operatorToken, req.header(Headers.Authorization), 'conflict show');
        return this.resolver.show(decodeConflictShowRequest(req.data).id);
      });
    }

    @NatsRequest(s.conflictsApi('resolve'), s.queueGroups.admin)
    resolve(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        checkResolverOperator(config.operatorToken, req.header(Headers.Authorization), 'conflict resolve');
        const r = decodeConflictResolveRequest(req.data);
        return this.resolver.resolve(r.id, r.choice);
      });
    }
  }
  return ConflictsApiController;
}
