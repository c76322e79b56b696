import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { subjects } from '@fleet/contracts';
import { JetStreamBatch } from '@fleet/messaging';
import type { BatchOutcome, InboundMessage } from '@fleet/messaging';
import type { ConflictResolverConfig } from './config';
import { ResolverService } from './resolver.service';
import { conflictConsumerSpec } from './streams';

/** The conflict-events consumer (a factory: the consumer spec comes from the configuration). */
export function conflictEventsController(config: ConflictResolverConfig): Type<unknown> {
  const s = subjects(config.namespace);

  @Controller()
  class ConflictEventsController {
    constructor(@Inject(ResolverService) private readonly resolver: ResolverService) {}

    @JetStreamBatch(conflictConsumerSpec(s, config), { batch: { size: config.batchMessages, lingerMs: config.batchLinger } })
    async onConflicts(@Payload() msgs: readonly InboundMessage[]): Promise<BatchOutcome> {
      const failures = await this.resolver.onConflictEvents(msgs);
      return failures.size === 0 ? undefined : { failures };
    }
  }
  return ConflictEventsController;
}
