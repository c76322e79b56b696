import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Subjects } from '@fleet/contracts';
import { connectNats, type NatsConnectOptions } from '../connect';
import { NatsPublisher, type Payload, type PublishOptions } from '../publisher';

const OUTBOUND = Symbol('fleet-outbound');

/** What to `emit` when the publish needs a dedupe id or an expected sequence. */
export interface OutboundMessage extends PublishOptions {
  readonly [OUTBOUND]: true;
  readonly payload: Payload;
}

export function outbound(payload: Payload, opts: PublishOptions = {}): OutboundMessage {
  return { [OUTBOUND]: true, payload, ...opts };
}

function isOutbound(v: unknown): v is OutboundMessage {
  return typeof v === 'object' && v !== null && OUTBOUND in v;
}

/**
 * Nest ClientProxy on the same transport: `emit(subject, data)` publishes to JetStream and emits the
 * PubAck (`{ stream, seq, duplicate }`); `send(subject, data)` is a core-NATS request whose reply
 * is the response. `data` is `outbound(payload, { msgId, expectedLastSubjectSequence })`, bytes, a
 * string, or any value (sent as JSON).
 */
export class JetStreamClientProxy extends ClientProxy {
  private publisher: NatsPublisher | undefined;
  private connecting: Promise<NatsPublisher> | undefined;

  constructor(private readonly options: { connection: NatsConnectOptions | NatsConnection; subjects: Subjects; requestTimeoutMs?: number }) {
    super();
  }

  async connect(): Promise<NatsConnection> {
    this.connecting ??= (async () => {
      const c = this.options.connection;
      const nc = 'publish' in c ? c : await connectNats(c);
      this.publisher = new NatsPublisher(nc, this.options.subjects);
      return this.publisher;
    })();
    return (await this.connecting).nc;
  }

  async close(): Promise<void> {
    const c = this.options.connection;
    if (this.publisher && !('publish' in c)) await this.publisher.nc.drain().catch(() => undefined);
    this.publisher = undefined;
    this.connecting = undefined;
  }

  unwrap<T>(): T {
    if (!this.publisher) throw new Error('not connected');
    return this.publisher.nc as T;
  }

  protected async dispatchEvent<T = unknown>(packet: ReadPacket): Promise<T> {
    await this.connect();
    const p = this.publisher as NatsPublisher;
    const subject = this.normalizePattern(packet.pattern);
    const d: unknown = packet.data;
    if (isOutbound(d)) {
      const { payload, ...opts } = d;
      return (await p.publish(subject, payload, opts)) as T;
    }
    return (await p.publish(subject, toPayload(d))) as T;
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    let cancelled = false;
    void (async () => {
      try {
        await this.connect();
        const p = this.publisher as NatsPublisher;
        const d: unknown = packet.data;
        const reply = await p.request(this.normalizePattern(packet.pattern), isOutbound(d) ? d.payload : toPayload(d), { timeoutMs: this.options.requestTimeoutMs ?? 5000 });
        if (!cancelled) callback({ response: reply.data, isDisposed: true });
      } catch (err) {
        if (!cancelled) callback({ err, isDisposed: true });
      }
    })();
    return () => {
      cancelled = true;
    };
  }
}

function toPayload(d: unknown): Payload {
  return typeof d === 'string' || d instanceof Uint8Array ? d : JSON.stringify(d ?? null);
}
