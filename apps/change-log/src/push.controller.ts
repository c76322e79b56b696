import { Controller, Inject, Logger } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { subjects } from '@fleet/contracts';
import { JetStreamBatch } from '@fleet/messaging';
import type { BatchOutcome, InboundMessage } from '@fleet/messaging';
import type { ChangeLogConfig } from './config';
import { PushBatchProcessor } from './push-batch.processor';
import { pushConsumerSpec } from './streams';

/**
 * The push consumer as a Nest controller on the JetStream transport. Built by a factory because
 * a decorator's arguments are fixed when the class is defined, and the consumer (namespace, ack
 * wait, batch size) comes from the configuration loaded at boot.
 *
 * `@JetStreamBatch`: up to `batchMessages` push messages at once, appended in one transaction;
 * the transport acks every message not in `failures` after this resolves, dead-letters those
 * that failed with a non-retryable FleetError, and naks the rest (or all, if this throws).
 */
export function pushController(config: ChangeLogConfig): Type<unknown> {
  const s = subjects(config.namespace);

  @Controller()
  class PushController {
    private readonly logger = new Logger('PushController');

    constructor(@Inject(PushBatchProcessor) private readonly processor: PushBatchProcessor) {}

    @JetStreamBatch(pushConsumerSpec(s, config), { batch: { size: config.batchMessages, lingerMs: config.batchLinger, concurrency: config.batchConcurrency } })
    async onPush(@Payload() msgs: readonly InboundMessage[]): Promise<BatchOutcome> {
      const { outcomes, failures } = await this.processor.processMany(msgs);
      for (const o of outcomes.values()) {
        if (o.deadLettered > 0) this.logger.warn(`batch ${o.batchId} from ${o.agentId}: ${o.deadLettered} change(s) dead-lettered`);
      }
      return failures.size === 0 ? undefined : { failures };
    }
  }
  return PushController;
}
