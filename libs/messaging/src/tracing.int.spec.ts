import { context, trace, SpanKind } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { Headers } from '@fleet/contracts';
import { Messaging } from './messaging';
import { MessagingAttr } from './tracing';
import { deleteNamespaceStreams, eventually, SHARED_NATS, testNamespace } from './test-support';

jest.setTimeout(30_000);
const s = testNamespace('tt');
const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
provider.register({ propagator: new W3CTraceContextPropagator() });

let bus: Messaging;
beforeAll(async () => {
  bus = await Messaging.connect({ servers: SHARED_NATS, name: 'tracing-int' }, s);
  await bus.provision([{ name: s.streams.log, subjects: [s.appended], storage: 'memory' }]);
});
afterAll(async () => {
  await deleteNamespaceStreams(await bus.jsm(), s);
  await bus.drain();
  await provider.shutdown();
});

it('carries the trace context from publish to handle: same trace, consumer span child of the producer span', async () => {
  const handled: Array<{ traceId: string | undefined; traceparent: string | undefined }> = [];
  await bus.consume({ stream: s.streams.log, durable: 'vv' }, async (m) => {
    handled.push({ traceId: trace.getActiveSpan()?.spanContext().traceId, traceparent: m.header(Headers.TraceParent) });
  });
  const root = trace.getTracer('test').startSpan('agent outbox flush');
  await context.with(trace.setSpan(context.active(), root), () => bus.publish(s.appended, '{}', { msgId: 'c-1' }));
  root.end();
  await eventually(() => handled.length === 1, 5000, 'handled');
  const traceId = root.spanContext().traceId;
  expect(handled[0]?.traceId).toBe(traceId);
  expect(handled[0]?.traceparent).toContain(traceId);

  await eventually(() => exporter.getFinishedSpans().some((sp) => sp.kind === SpanKind.CONSUMER), 5000, 'consumer span');
  const spans = exporter.getFinishedSpans().filter((sp) => sp.spanContext().traceId === traceId);
  const producer = spans.find((sp) => sp.kind === SpanKind.PRODUCER);
  const consumer = spans.find((sp) => sp.kind === SpanKind.CONSUMER);
  expect(producer?.attributes).toMatchObject({
    [MessagingAttr.System]: 'nats',
    [MessagingAttr.DestinationName]: s.appended,
    [MessagingAttr.MessageId]: 'c-1',
    [MessagingAttr.OperationType]: 'publish',
  });
  expect(consumer?.attributes).toMatchObject({
    [MessagingAttr.System]: 'nats',
    [MessagingAttr.DestinationName]: s.appended,
    [MessagingAttr.MessageId]: 'c-1',
    [MessagingAttr.OperationType]: 'process',
    [MessagingAttr.ConsumerGroup]: 'vv',
  });
  expect(consumer?.parentSpanContext?.spanId).toBe(producer?.spanContext().spanId);
});

it('carries it over request/reply too', async () => {
  const seen: Array<string | undefined> = [];
  bus.respond(s.pull('a1'), s.queueGroups.pull, async () => {
    seen.push(trace.getActiveSpan()?.spanContext().traceId);
    return 'pong';
  });
  await bus.nc.flush();
  const root = trace.getTracer('test').startSpan('pull');
  const reply = await context.with(trace.setSpan(context.active(), root), () => bus.request(s.pull('a1'), 'ping'));
  root.end();
  expect(new TextDecoder().decode(reply.data)).toBe('pong');
  expect(seen).toEqual([root.spanContext().traceId]);
});
