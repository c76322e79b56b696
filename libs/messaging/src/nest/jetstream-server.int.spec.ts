import 'reflect-metadata';
import { Controller, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Payload } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { FleetError } from '@fleet/errors';
import { Headers } from '@fleet/contracts';
import type { InboundMessage } from '../message';
import type { InboundRequest } from '../publisher';
import type { PublishAck } from '../publisher';
import { deleteNamespaceStreams, eventually, readStream, SHARED_NATS, testNamespace } from '../test-support';
import { Messaging } from '../messaging';
import { JetStreamBatch, JetStreamEvent, NatsRequest } from './decorators';
import { JetStreamServer } from './server';
import { JetStreamClientProxy, outbound } from './client';

jest.setTimeout(30_000);
const s = testNamespace('tn');
const dec = new TextDecoder();

@Injectable()
class Recorder {
  readonly events: string[] = [];
  readonly batches: string[][] = [];
}

@Controller()
class ChangeLogController {
  constructor(private readonly rec: Recorder) {}

  @JetStreamEvent({ stream: s.streams.push, durable: 'change-log', filterSubject: s.pushAll }, { concurrency: 4 })
  async onPush(@Payload() msg: InboundMessage): Promise<void> {
    const body = dec.decode(msg.data);
    if (body === 'forged') throw new FleetError('FLEET_AUTH_001', `origin x on ${msg.subject}`);
    this.rec.events.push(body);
  }

  @JetStreamBatch({ stream: s.streams.log, durable: 'version-vector' }, { batch: { size: 50 } })
  async onAppended(@Payload() msgs: readonly InboundMessage[]): Promise<void> {
    this.rec.batches.push(msgs.map((m) => dec.decode(m.data)));
  }

  @NatsRequest(s.pullAll, s.queueGroups.pull)
  async onPull(@Payload() req: InboundRequest): Promise<object> {
    if (req.subject === s.pull('nobody')) throw new FleetError('FLEET_AUTH_002', 'no scopes');
    return { echo: dec.decode(req.data), subject: req.subject };
  }
}

@Module({ controllers: [ChangeLogController], providers: [Recorder] })
class AppModule {}

let bus: Messaging;
beforeAll(async () => {
  bus = await Messaging.connect({ servers: SHARED_NATS, name: 'nest-int-observer' }, s);
});
afterAll(async () => {
  await deleteNamespaceStreams(await bus.jsm(), s);
  await bus.drain();
});

it('maps decorated handlers to durable consumers and a queue-group responder, and drains on close', async () => {
  const strategy = new JetStreamServer({
      connection: { servers: SHARED_NATS, name: 'nest-int' },
      subjects: s,
      streams: [
        { name: s.streams.push, subjects: [s.pushAll], storage: 'memory' },
        { name: s.streams.log, subjects: [s.appended], storage: 'memory' },
      ],
  });
  const app = await NestFactory.createMicroservice(AppModule, { strategy, logger: false });
  await app.listen();
  const rec = app.get(Recorder);
  const client = new JetStreamClientProxy({ connection: { servers: SHARED_NATS, name: 'nest-int-client' }, subjects: s });
  try {
    const ack = await firstValueFrom(client.emit<PublishAck>(s.push('a1'), outbound('hello', { msgId: 'chg-1' })));
    expect(ack).toEqual({ stream: s.streams.push, seq: 1, duplicate: false });
    const again = await firstValueFrom(client.emit<PublishAck>(s.push('a1'), outbound('hello', { msgId: 'chg-1' })));
    expect(again.duplicate).toBe(true);
    await eventually(() => rec.events.includes('hello'), 5000, 'event handled');
    const jsm = await bus.jsm();
    await eventually(async () => (await jsm.consumers.info(s.streams.push, 'change-log')).num_ack_pending === 0, 5000, 'acked');

    // a FleetError thrown in a Nest handler keeps its code through the filter: dead-lettered
    await firstValueFrom(client.emit(s.push('a2'), 'forged'));
    const dl = await eventually(async () => (await readStream(jsm, s.streams.deadLetter))[0], 5000, 'dead letter');
    expect(dl.header.get(Headers.RejectCode)).toBe('FLEET_AUTH_001');
    expect(dl.header.get(Headers.OriginalSubject)).toBe(s.push('a2'));

    for (let i = 0; i < 5; i++) await bus.publish(s.appended, `c${i}`);
    await eventually(() => rec.batches.flat().length === 5, 5000, 'batch');
    expect(rec.batches.length).toBeLessThan(5);

    const reply = await firstValueFrom(client.send<Uint8Array>(s.pull('a1'), { cursor: 0 }));
    expect(JSON.parse(dec.decode(reply))).toEqual({ echo: '{"cursor":0}', subject: s.pull('a1') });
    await expect(bus.request(s.pull('nobody'), '{}')).rejects.toMatchObject({ code: 'FLEET_AUTH_002' });
  } finally {
    await client.close();
    await app.close();
  }
  expect(strategy.bus.nc.isClosed()).toBe(true);
});
