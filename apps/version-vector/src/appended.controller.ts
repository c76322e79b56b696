import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { subjects } from '@fleet/contracts';
import { JetStreamBatch } from '@fleet/messaging';
import type { BatchOutcome, InboundMessage } from '@fleet/messaging';
import { ClassifyProcessor } from './classify.processor';
import { LogSweeper } from './log-sweeper';
import type { VersionVectorConfig } from './config';
import { appendedConsumerSpec } from './streams';

/**
 * The appended-events consumer as a Nest controller on the JetStream transport (a factory: the
 * consumer spec comes from the configuration). A batch of events is applied in one projection
 * transaction; the transport acks after this resolves, dead-letters undecodable events, naks the
 * whole batch if the transaction fails. Then it kicks the log sweep (events are wake-ups; the sweep
 * is what guarantees every logged change is applied).
 */
export function appendedController(config: VersionVectorConfig): Type<unknown> {
  const s = subjects(config.namespace);

  @Controller()
  class AppendedController {
    constructor(
      @Inject(ClassifyProcessor) private readonly processor: ClassifyProcessor,
      @Inject(LogSweeper) private readonly sweeper: LogSweeper,
    ) {}

    @JetStreamBatch(appendedConsumerSpec(s, config), { batch: { size: config.batchMessages, lingerMs: config.batchLinger, concurrency: config.batchConcurrency } })
    async onAppended(@Payload() msgs: readonly InboundMessage[]): Promise<BatchOutcome> {
      const { failures } = await this.processor.processMany(msgs);
      this.sweeper.kick(); // advances the cursor past what the events applied (and catches any change they did not name)
      return failures.size === 0 ? undefined : { failures };
    }
  }
  return AppendedController;
}
