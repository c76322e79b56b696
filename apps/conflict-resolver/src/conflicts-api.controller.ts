import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { decodeConflictResolveRequest, decodeConflictShowRequest, decodeConflictsListRequest, errorReply, subjects } from '@fleet/contracts';
import { NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import type { ConflictResolverConfig } from './config';
import { ResolverService } from './resolver.service';

/**
 * The operator API over NATS request/reply (`<ns>.admin.conflicts.list|show|resolve`, queue group
 * `queueGroups.admin`: replicas share the requests). Requests are decoded with the contracts'
 * schemas; a failure is answered with `errorReply` (`{"error":{code,...}}`), which
 * `decodeConflicts*Reply` turn into `{ok: false, error}` on the caller's side.
 */
export function conflictsApiController(config: ConflictResolverConfig): Type<unknown> {
  const s = subjects(config.namespace);
  const answer = async (fn: () => Promise<unknown>): Promise<unknown> => {
    try {
      return await fn();
    } catch (e) {
      return errorReply(e);
    }
  };

  @Controller()
  class ConflictsApiController {
    constructor(@Inject(ResolverService) private readonly resolver: ResolverService) {}

    @NatsRequest(s.conflictsApi('list'), s.queueGroups.admin)
    list(@Payload() req: InboundRequest): Promise<unknown> {
      return answer(() => this.resolver.list(decodeConflictsListRequest(req.data)));
    }

    @NatsRequest(s.conflictsApi('show'), s.queueGroups.admin)
    show(@Payload() req: InboundRequest): Promise<unknown> {
      return answer(() => this.resolver.show(decodeConflictShowRequest(req.data).id));
    }

    @NatsRequest(s.conflictsApi('resolve'), s.queueGroups.admin)
    resolve(@Payload() req: InboundRequest): Promise<unknown> {
      return answer(async () => {
        const r = decodeConflictResolveRequest(req.data);
        return this.resolver.resolve(r.id, r.choice);
      });
    }
  }
  return ConflictsApiController;
}
