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

it('a core publish (publishCore) opens a PRODUCER span too, and the headers carry it as the parent', async () => {
  const subject = s.notify('a1');
  const got: Array<string | undefined> = [];
  const sub = bus.nc.subscribe(subject, { callback: (_e, m) => void got.push(m.headers?.get(Headers.TraceParent)) });
  await bus.nc.flush();
  const root = trace.getTracer('test').startSpan('nudge');
  context.with(trace.setSpan(context.active(), root), () => bus.publishCore(subject, 'nudge'));
  root.end();
  await eventually(() => got.length === 1, 5000, 'the core message');
  sub.unsubscribe();
  const traceId = root.spanContext().traceId;
  const producer = exporter.getFinishedSpans().find((sp) => sp.spanContext().traceId === traceId && sp.kind === SpanKind.PRODUCER);
  expect(producer?.attributes).toMatchObject({
    [MessagingAttr.System]: 'nats',
    [MessagingAttr.DestinationName]: subject,
    [MessagingAttr.OperationType]: 'publish',
    [MessagingAttr.BodySize]: 5,
  });
  expect(producer?.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
  // traceparent = 00-<trace id>-<parent span id>-<flags>: the receiver's parent is the producer span
  expect(got[0]).toBe(`00-${traceId}-${producer?.spanContext().spanId}-01`);
});

it('batch mode: one CONSUMER span per batch, parented on the first message, with links to every message', async () => {
  await bus.provision([{ name: s.streams.push, subjects: [s.pushAll], storage: 'memory' }], { deadLetter: false });
  const subject = s.push('batch');
  // three messages from three different traces, published before the consumer starts: one batch
  const roots = [0, 1, 2].map((i) => trace.getTracer('test').startSpan(`flush ${i}`));
  for (const [i, root] of roots.entries()) {
    await context.with(trace.setSpan(context.active(), root), () => bus.publish(subject, `m${i}`, { msgId: `batch-${i}` }));
    root.end();
  }
  const batches: Array<{ size: number; traceId: string | undefined }> = [];
  await bus.consumeBatch(
    { stream: s.streams.push, durable: 'batcher', filterSubject: subject },
    async (msgs) => {
      batches.push({ size: msgs.length, traceId: trace.getActiveSpan()?.spanContext().traceId });
    },
    { batch: { size: 10, lingerMs: 200 } },
  );
  await eventually(() => batches.length === 1, 5000, 'the batch');
  expect(batches).toEqual([{ size: 3, traceId: roots[0]?.spanContext().traceId }]);

  const producers = roots.map((r) => exporter.getFinishedSpans().find((sp) => sp.kind === SpanKind.PRODUCER && sp.spanContext().traceId === r.spanContext().traceId));
  const consumer = await eventually(
    () => exporter.getFinishedSpans().find((sp) => sp.kind === SpanKind.CONSUMER && sp.attributes[MessagingAttr.ConsumerGroup] === 'batcher'),
    5000,
    'the batch span',
  );
  expect(exporter.getFinishedSpans().filter((sp) => sp.kind === SpanKind.CONSUMER && sp.attributes[MessagingAttr.ConsumerGroup] === 'batcher')).toHaveLength(1);
  expect(consumer.spanContext().traceId).toBe(roots[0]?.spanContext().traceId);
  expect(consumer.parentSpanContext?.spanId).toBe(producers[0]?.spanContext().spanId);
  expect(consumer.links.map((l) => l.context.spanId)).toEqual(producers.map((p) => p?.spanContext().spanId));
  expect(consumer.links.map((l) => l.context.traceId)).toEqual(roots.map((r) => r.spanContext().traceId));
  expect(consumer.attributes).toMatchObject({
    [MessagingAttr.System]: 'nats',
    [MessagingAttr.DestinationName]: subject,
    [MessagingAttr.OperationType]: 'process',
    [MessagingAttr.BatchCount]: 3,
    [MessagingAttr.MessageId]: 'batch-0',
    [MessagingAttr.StreamName]: s.streams.push,
  });
});
