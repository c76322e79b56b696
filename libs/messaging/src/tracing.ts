/**
 * OpenTelemetry across NATS: W3C trace context travels in message headers (`traceparent`,
 * `tracestate`), so one change is one trace from the agent's outbox to every service that touched
 * it. Only `@opentelemetry/api` is used: the app installs the SDK and the propagator; without one,
 * every call here is a no-op.
 */
import { context, propagation, trace, SpanKind, SpanStatusCode, type Context, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import type { MsgHdrs } from '@nats-io/nats-core';

export const TRACER_NAME = '@fleet/messaging';

/**
 * Messaging semantic-convention attribute names (semconv 1.2x, `messaging.*`), spelled out because
 * they live in the incubating entry point of @opentelemetry/semantic-conventions.
 */
export const MessagingAttr = {
  System: 'messaging.system',
  DestinationName: 'messaging.destination.name',
  MessageId: 'messaging.message.id',
  Operation: 'messaging.operation',
  OperationType: 'messaging.operation.type',
  OperationName: 'messaging.operation.name',
  ConsumerGroup: 'messaging.consumer.group.name',
  BatchCount: 'messaging.batch.message_count',
  BodySize: 'messaging.message.body.size',
  /** Not in semconv: where JetStream stored the message, for correlating with `nats stream get`. */
  StreamName: 'messaging.nats.stream.name',
  StreamSequence: 'messaging.nats.stream.sequence',
  DeliveryCount: 'messaging.nats.delivery_count',
} as const;

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

const getter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => carrier?.keys() ?? [],
  get: (carrier, key) => (carrier?.has(key) ? carrier.get(key) : undefined),
};

export function tracer() {
  return trace.getTracer(TRACER_NAME);
}

/** Writes the trace context of `ctx` (default: the active one) into the headers. */
export function injectTraceContext(headers: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, headers, setter);
}

/** The context carried by the headers (the active one when they carry none). */
export function extractTraceContext(headers: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), headers, getter);
}

/** A PRODUCER (publish) or CLIENT (request) span for `destination`, with the messaging attributes. */
function startPublishSpan(destination: string, operation: 'publish' | 'send', attributes: Record<string, string | number | boolean | undefined>): Span {
  return tracer().startSpan(`${operation} ${destination}`, {
    kind: operation === 'publish' ? SpanKind.PRODUCER : SpanKind.CLIENT,
    attributes: clean({
      [MessagingAttr.System]: 'nats',
      [MessagingAttr.DestinationName]: destination,
      [MessagingAttr.Operation]: operation,
      [MessagingAttr.OperationType]: operation,
      [MessagingAttr.OperationName]: operation,
      ...attributes,
    }),
  });
}

/**
 * Runs `fn` in a PRODUCER span for a publish to `destination`; the span is active while `fn` runs, so
 * `injectTraceContext` inside `fn` writes this span as the parent of whatever consumes the message.
 */
export async function withProducerSpan<T>(
  destination: string,
  operation: 'publish' | 'send',
  attributes: Record<string, string | number | boolean | undefined>,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return runInSpan(startPublishSpan(destination, operation, attributes), context.active(), fn);
}

/** The same for a synchronous publish (core NATS: fire and forget): the span ends when `fn` returns. */
export function withProducerSpanSync<T>(destination: string, attributes: Record<string, string | number | boolean | undefined>, fn: (span: Span) => T): T {
  const span = startPublishSpan(destination, 'publish', attributes);
  try {
    const out = context.with(trace.setSpan(context.active(), span), () => fn(span));
    endSpanOk(span);
    return out;
  } catch (e) {
    endSpanFailed(span, e);
    throw e;
  }
}

/**
 * Runs `fn` in a CONSUMER (or SERVER, for request/reply) span whose parent is the trace context of
 * the message headers. Batches get one span with links to each message's context.
 */
export async function withConsumerSpan<T>(
  destination: string,
  parent: Context,
  attributes: Record<string, string | number | boolean | undefined>,
  fn: (span: Span) => Promise<T>,
  opts: { kind?: SpanKind; links?: Context[] } = {},
): Promise<T> {
  const links = (opts.links ?? [])
    .map((c) => trace.getSpanContext(c))
    .filter((sc): sc is NonNullable<typeof sc> => sc !== undefined)
    .map((sc) => ({ context: sc }));
  const span = tracer().startSpan(
    `process ${destination}`,
    {
      kind: opts.kind ?? SpanKind.CONSUMER,
      links,
      attributes: clean({
        [MessagingAttr.System]: 'nats',
        [MessagingAttr.DestinationName]: destination,
        [MessagingAttr.Operation]: 'process',
        [MessagingAttr.OperationType]: 'process',
        [MessagingAttr.OperationName]: 'process',
        ...attributes,
      }),
    },
    parent,
  );
  return runInSpan(span, parent, fn);
}

async function runInSpan<T>(span: Span, parent: Context, fn: (span: Span) => Promise<T>): Promise<T> {
  try {
    const out = await context.with(trace.setSpan(parent, span), () => fn(span));
    endSpanOk(span);
    return out;
  } catch (e) {
    endSpanFailed(span, e);
    throw e;
  }
}

function endSpanOk(span: Span): void {
  span.setStatus({ code: SpanStatusCode.OK });
  span.end();
}

function endSpanFailed(span: Span, e: unknown): void {
  span.recordException(e instanceof Error ? e : String(e));
  span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
  span.end();
}

function clean(a: Record<string, string | number | boolean | undefined>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(a)) if (v !== undefined) out[k] = v;
  return out;
}
