import { Inject, Injectable, Logger } from '@nestjs/common';
import type { BeforeApplicationShutdown, OnApplicationBootstrap } from '@nestjs/common';
import { Messaging } from '@fleet/messaging';
import type { ConsumerSpec, InboundMessage, StreamSpec } from '@fleet/messaging';
import { subjects } from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';
import { PushBatchProcessor } from './push-batch.processor';
import { CHANGE_LOG_CONFIG } from './tokens';
import type { ChangeLogConfig } from './config';

export function changeLogStreams(s: Subjects): StreamSpec[] {
  return [
    { name: s.streams.push, subjects: [s.pushAll], description: 'push batches from agents' },
    { name: s.streams.log, subjects: [s.appended], description: 'changes appended to the change log' },
  ];
}

/** Every replica binds this durable consumer, so JetStream shares the push messages between them. */
export function pushConsumerSpec(s: Subjects): ConsumerSpec {
  return { stream: s.streams.push, durable: `${s.ns}-change-log`, filterSubject: s.pushAll, description: 'change-log: append pushes' };
}

/**
 * Consumes push batches from `<ns>.push.*` (durable pull consumer on the push stream) and hands
 * each to the PushBatchProcessor. The transport acks when `handle` resolves, dead-letters the whole
 * message on a non-retryable FleetError, and naks (with backoff) otherwise.
 */
@Injectable()
export class PushHandler implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(PushHandler.name);

  constructor(
    @Inject(Messaging) private readonly messaging: Messaging,
    @Inject(PushBatchProcessor) private readonly processor: PushBatchProcessor,
    @Inject(CHANGE_LOG_CONFIG) private readonly config: ChangeLogConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const s = subjects(this.config.namespace);
    await this.messaging.provision(changeLogStreams(s));
    await this.messaging.consume(pushConsumerSpec(s), (m) => this.handle(m), {
      concurrency: this.config.concurrency,
      onError: (e, where) => this.logger.warn(`consumer ${where}: ${String(e)}`),
    });
    this.logger.log(`consuming ${s.pushAll} from ${s.streams.push} as ${pushConsumerSpec(s).durable}`);
  }

  async handle(msg: InboundMessage): Promise<void> {
    const out = await this.processor.process(msg);
    if (out.deadLettered > 0) this.logger.warn(`batch ${out.batchId} from ${out.agentId}: ${out.deadLettered} change(s) dead-lettered`);
  }

  /** SIGTERM: stop pulling, finish and settle the messages in hand, then close NATS. */
  async beforeApplicationShutdown(signal?: string): Promise<void> {
    this.logger.log(`draining (${signal ?? 'shutdown'})`);
    await this.messaging.drain();
  }
}
