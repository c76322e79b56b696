import { BaseRpcContext, Server, type CustomTransportStrategy, type MessageHandler as NestHandler } from '@nestjs/microservices';
import type { NatsConnection } from '@nats-io/nats-core';
import { lastValueFrom, type Observable } from 'rxjs';
import { FleetError } from '@fleet/errors';
import type { Subjects } from '@fleet/contracts';
import { connectNats, type NatsConnectOptions } from '../connect';
import type { ConsumeOptions } from '../consumer';
import type { BatchOutcome, InboundMessage } from '../message';
import { Messaging } from '../messaging';
import type { StreamSpec } from '../provision';
import { ReplyWithHeaders } from '../publisher';
import type { InboundRequest, Payload } from '../publisher';
import { JETSTREAM_CONSUMER, NATS_RESPONDER, type JetStreamConsumerExtras, type NatsResponderExtras } from './decorators';

export const FLEET_JETSTREAM_TRANSPORT = Symbol('fleet-jetstream');

/** The `@Ctx()` of a JetStream handler: the message (or batch) as delivered. */
export class JetStreamContext extends BaseRpcContext<[InboundMessage | readonly InboundMessage[]]> {
  getMessage(): InboundMessage | readonly InboundMessage[] {
    return this.args[0];
  }
}

/** The `@Ctx()` of a request/reply handler. */
export class NatsRequestContext extends BaseRpcContext<[InboundRequest]> {
  getRequest(): InboundRequest {
    return this.args[0];
  }
}

export interface JetStreamServerOptions {
  /** How to connect (the server then owns and drains the connection), or a connection to use. */
  readonly connection: NatsConnectOptions | NatsConnection;
  readonly subjects: Subjects;
  /** Streams this service declares; provisioned (with the dead-letter stream) before consumers bind. */
  readonly streams?: readonly StreamSpec[];
  readonly deadLetter?: boolean | Partial<StreamSpec>;
  /** Defaults merged under each handler's own consume options (e.g. `onError` for logging). */
  readonly consumeDefaults?: ConsumeOptions;
  /** A request refused for its reply subject (not an inbox, or not the requesting agent's): for logging. */
  readonly onRefusedRequest?: (subject: string, reason: string) => void;
}

/**
 * A Nest microservice transport on JetStream and core NATS:
 * - `@JetStreamEvent(spec)` / `@JetStreamBatch(spec, { batch })` (EventPattern underneath) become
 *   durable pull consumers, provisioned at start, with ack/nak/term/dead-letter rules applied to
 *   whatever the handler returns or throws;
 * - `@NatsRequest(subject, queue)` (MessagePattern underneath) becomes a core-NATS subscription in
 *   that queue group, replying with what the handler returns;
 * - `app.close()` (and SIGTERM with `enableShutdownHooks()`) drains: stop pulling, finish and ack
 *   what is in hand, then drain the connection.
 */
export class JetStreamServer extends Server implements CustomTransportStrategy {
  private messaging: Messaging | undefined;

  constructor(private readonly options: JetStreamServerOptions) {
    super();
    this.transportId = FLEET_JETSTREAM_TRANSPORT;
  }

  listen(callback: (...optionalParams: unknown[]) => unknown): void {
    this.start().then(
      () => callback(),
      (e: unknown) => callback(e),
    );
  }

  /** The transport object, to publish from inside the service (also via JetStreamClientProxy). */
  get bus(): Messaging {
    if (!this.messaging) throw new FleetError('FLEET_CONFIG_001', 'JetStreamServer is not listening yet');
    return this.messaging;
  }

  private async start(): Promise<void> {
    const c = this.options.connection;
    const owned = !isConnection(c);
    const nc = isConnection(c) ? c : await connectNats(c);
    const m = new Messaging(nc, this.options.subjects, owned);
    this.messaging = m;
    await m.provision(this.options.streams ?? [], this.options.deadLetter === undefined ? {} : { deadLetter: this.options.deadLetter });
    for (const [pattern, handler] of this.messageHandlers) {
      const extras = handler.extras ?? {};
      if (handler.isEventHandler) {
        const js = extras[JETSTREAM_CONSUMER] as JetStreamConsumerExtras | undefined;
        if (!js) throw new FleetError('FLEET_CONFIG_001', `event handler ${pattern}: use @JetStreamEvent or @JetStreamBatch to declare its consumer`);
        const opts = { ...this.options.consumeDefaults, ...js.options };
        if (js.mode === 'batch') {
          const batch = js.options.batch;
          if (!batch) throw new FleetError('FLEET_CONFIG_001', `${pattern}: batch size missing`);
          await m.consumeBatch(js.consumer, (msgs) => this.invoke<BatchOutcome>(handler, msgs, new JetStreamContext([msgs])), { ...opts, batch });
        } else {
          await m.consume(js.consumer, async (msg) => void (await this.invoke(handler, msg, new JetStreamContext([msg]))), opts);
        }
      } else {
        const r = extras[NATS_RESPONDER] as NatsResponderExtras | undefined;
        if (!r) throw new FleetError('FLEET_CONFIG_001', `message handler ${pattern}: use @NatsRequest(subject, queue) to name its queue group`);
        m.respond(pattern, r.queue, async (req) => toReply(await this.invoke(handler, req, new NatsRequestContext([req]))), {
          ...(r.maxConcurrent === undefined ? {} : { maxConcurrent: r.maxConcurrent }),
          ...(r.agentReplies === true ? { agentReplies: true } : {}),
          ...(this.options.onRefusedRequest === undefined ? {} : { onRefused: this.options.onRefusedRequest }),
        });
      }
    }
    await nc.flush();
  }

  private async invoke<T>(handler: NestHandler, data: unknown, ctx: BaseRpcContext): Promise<T> {
    const out: unknown = await handler(data, ctx);
    return (await lastValueFrom(this.transformToObservable(out) as Observable<T>, { defaultValue: undefined as T })) as T;
  }

  async close(): Promise<void> {
    await this.messaging?.drain();
  }

  on(): never {
    throw new Error('JetStreamServer does not emit events: use the status of the NATS connection (unwrap())');
  }

  unwrap<T>(): T {
    return this.bus.nc as T;
  }
}

function isConnection(c: NatsConnectOptions | NatsConnection): c is NatsConnection {
  return typeof (c as NatsConnection).publish === 'function';
}

function toReply(v: unknown): Payload | ReplyWithHeaders | void {
  if (v === undefined || v === null) return undefined;
  if (v instanceof ReplyWithHeaders) return v;
  if (typeof v === 'string' || v instanceof Uint8Array) return v;
  return JSON.stringify(v);
}
