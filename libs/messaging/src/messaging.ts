import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Subjects } from '@fleet/contracts';
import { connectNats, type NatsConnectOptions } from './connect';
import { JetStreamConsumer, type ConsumeOptions } from './consumer';
import type { BatchHandler, MessageHandler } from './message';
import { deadLetterStreamSpec, provisionStream, type ConsumerSpec, type StreamSpec } from './provision';
import { NatsPublisher, type RequestHandler, type RespondOptions, type Responder } from './publisher';

/**
 * The transport as a plain object (no Nest): one connection, its streams, consumers and
 * responders, and a drain that takes them down in order. The Nest server (nest/server.ts) and the
 * agent both sit on this.
 */
export class Messaging extends NatsPublisher {
  private jsmP: Promise<JetStreamManager> | undefined;
  private readonly consumers: JetStreamConsumer[] = [];
  private readonly responders: Responder[] = [];
  private draining: Promise<void> | undefined;

  constructor(nc: NatsConnection, subjects: Subjects, private readonly ownsConnection = true) {
    super(nc, subjects);
  }

  static async connect(options: NatsConnectOptions, subjects: Subjects): Promise<Messaging> {
    return new Messaging(await connectNats(options), subjects, true);
  }

  jsm(): Promise<JetStreamManager> {
    // retried on failure: a start before NATS is up must not poison the manager
    this.jsmP ??= jetstreamManager(this.nc).catch((e: unknown) => {
      this.jsmP = undefined;
      throw e;
    });
    return this.jsmP;
  }

  /** Creates or updates the streams (and, unless told otherwise, the namespace's dead-letter stream). */
  async provision(streams: readonly StreamSpec[], opts: { deadLetter?: boolean | Partial<StreamSpec> } = {}): Promise<void> {
    const jsm = await this.jsm();
    const all = [...streams];
    if (opts.deadLetter !== false) all.push(deadLetterStreamSpec(this.subjects, typeof opts.deadLetter === 'object' ? opts.deadLetter : {}));
    for (const s of all) await provisionStream(jsm, s);
  }

  /** Binds (provisioning it) a durable consumer and starts handling its messages one by one. */
  async consume(spec: ConsumerSpec, handle: MessageHandler, opts: ConsumeOptions = {}): Promise<JetStreamConsumer> {
    return this.startConsumer(new JetStreamConsumer(this.nc, await this.jsm(), this, spec, { kind: 'single', handle }, opts));
  }

  /** The same in batch mode: `opts.batch.size` messages per call at most. */
  async consumeBatch(spec: ConsumerSpec, handle: BatchHandler, opts: ConsumeOptions & { batch: { size: number; lingerMs?: number } }): Promise<JetStreamConsumer> {
    return this.startConsumer(new JetStreamConsumer(this.nc, await this.jsm(), this, spec, { kind: 'batch', handle }, opts));
  }

  private async startConsumer(c: JetStreamConsumer): Promise<JetStreamConsumer> {
    await c.start();
    this.consumers.push(c);
    return c;
  }

  override respond(subject: string, queue: string, handler: RequestHandler, opts: RespondOptions = {}): Responder {
    const r = super.respond(subject, queue, handler, opts);
    this.responders.push(r);
    return r;
  }

  /**
   * Graceful shutdown: stop pulling and answering, finish and settle what is in hand, then drain the
   * connection (which flushes the acks) when this object owns it. Idempotent.
   */
  drain(): Promise<void> {
    this.draining ??= (async () => {
      await Promise.all([...this.consumers.map((c) => c.drain()), ...this.responders.map((r) => r.drain())]);
      if (this.ownsConnection && !this.nc.isClosed()) {
        await this.nc.flush().catch(() => undefined);
        await this.nc.drain().catch(() => undefined);
      }
    })();
    return this.draining;
  }
}
