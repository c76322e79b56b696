import { applyDecorators, Catch, UseFilters, type RpcExceptionFilter } from '@nestjs/common';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { throwError, type Observable } from 'rxjs';
import type { ConsumeOptions } from '../consumer';
import type { ConsumerSpec } from '../provision';

/** Key of the `extras` that @JetStreamEvent / @JetStreamBatch put on an @EventPattern. */
export const JETSTREAM_CONSUMER = 'fleet:jetstream-consumer';
/** Key of the `extras` that @NatsRequest puts on a @MessagePattern. */
export const NATS_RESPONDER = 'fleet:nats-responder';

export interface JetStreamConsumerExtras {
  readonly consumer: ConsumerSpec;
  readonly mode: 'single' | 'batch';
  readonly options: ConsumeOptions;
}

export interface NatsResponderExtras {
  readonly queue: string;
  readonly maxConcurrent?: number;
  /** Requests on agents' own subjects: answered only in the requesting agent's inbox (contracts' replyRefusal). */
  readonly agentReplies?: boolean;
}

/**
 * Nest's default RPC exception filter replaces any error that is not an RpcException with
 * `{ status: 'error', message: 'Internal server error' }`, which would hide whether a FleetError is
 * retryable. This filter hands the error to the transport as it was thrown; the transport then
 * applies the ack/nak/term/dead-letter rules (or answers the request with the code).
 */
@Catch()
export class PassThroughRpcFilter implements RpcExceptionFilter {
  catch(exception: unknown): Observable<never> {
    return throwError(() => exception);
  }
}

/** The pattern under which a consumer's handler is registered (the stream and durable name). */
export function consumerPattern(c: ConsumerSpec): string {
  return `jetstream:${c.stream}/${c.durable}`;
}

/**
 * Handles the messages of a durable pull consumer one by one (`options.concurrency` at once):
 * `handle(@Payload() msg: InboundMessage)`. The consumer is provisioned by JetStreamServer at start.
 */
export function JetStreamEvent(consumer: ConsumerSpec, options: ConsumeOptions = {}): MethodDecorator {
  const extras: JetStreamConsumerExtras = { consumer, mode: 'single', options };
  return applyDecorators(EventPattern(consumerPattern(consumer), { [JETSTREAM_CONSUMER]: extras }), UseFilters(PassThroughRpcFilter));
}

/**
 * Handles the messages of a durable pull consumer in batches of up to `options.batch.size`:
 * `handle(@Payload() msgs: readonly InboundMessage[]): Promise<BatchOutcome>`.
 */
export function JetStreamBatch(consumer: ConsumerSpec, options: ConsumeOptions & { batch: { size: number; lingerMs?: number } }): MethodDecorator {
  const extras: JetStreamConsumerExtras = { consumer, mode: 'batch', options };
  return applyDecorators(EventPattern(consumerPattern(consumer), { [JETSTREAM_CONSUMER]: extras }), UseFilters(PassThroughRpcFilter));
}

/**
 * Answers core-NATS requests on `subject` in queue group `queue` (replicas share the load):
 * `handle(@Payload() req: InboundRequest): Promise<Uint8Array | string | object | void>`.
 */
export function NatsRequest(subject: string, queue: string, options: { maxConcurrent?: number; agentReplies?: boolean } = {}): MethodDecorator {
  const extras: NatsResponderExtras = { queue, ...options };
  return applyDecorators(MessagePattern(subject, { [NATS_RESPONDER]: extras }), UseFilters(PassThroughRpcFilter));
}
