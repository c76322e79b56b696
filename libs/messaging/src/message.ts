import type { JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs } from '@nats-io/nats-core';
import type { FleetError } from '@fleet/errors';
import { Headers } from '@fleet/contracts';

/**
 * One JetStream message as a handler sees it. The payload is bytes: decoding it (with the schemas
 * in libs/contracts) is the handler's job, at the boundary, never a cast.
 */
export interface InboundMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly stream: string;
  readonly consumer: string;
  readonly streamSequence: number;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  /** The publisher's `Nats-Msg-Id`, when it set one. */
  readonly msgId: string | undefined;
  /** A header's first value, or undefined. */
  header(name: string): string | undefined;
  /** Tells the server the handler is still at work, restarting the ack-wait timer. */
  working(): void;
  /**
   * Dead-letters a PART of this message (one bad change inside a batch) with its own payload and
   * reason, while the rest is processed and the message acked. Await it before returning: the
   * message is acked after the handler resolves, so the part must be durable first. The error must
   * be a FleetError: its code is the dead letter's reject code.
   */
  deadLetter(payload: Uint8Array | string, error: FleetError): Promise<void>;
}

/** What a batch handler returns: nothing (all succeeded) or the messages that failed, with why. */
export type BatchOutcome = void | undefined | { readonly failures: ReadonlyMap<InboundMessage, unknown> };

export type MessageHandler = (msg: InboundMessage) => Promise<void>;
export type BatchHandler = (msgs: readonly InboundMessage[]) => Promise<BatchOutcome>;

export type DeadLetterFn = (m: JsMsg, payload: Uint8Array, error: FleetError, part: number) => Promise<void>;

export function wrapMessage(m: JsMsg, deadLetter: DeadLetterFn): InboundMessage {
  let part = 0;
  const info = m.info;
  return {
    subject: m.subject,
    data: m.data,
    headers: m.headers,
    stream: info.stream,
    consumer: info.consumer,
    streamSequence: info.streamSequence,
    deliveryCount: info.deliveryCount,
    msgId: m.headers?.has(Headers.MsgId) ? m.headers.get(Headers.MsgId) : undefined,
    header: (name) => (m.headers?.has(name) ? m.headers.get(name) : undefined),
    working: () => m.working(),
    deadLetter: (payload, error) => deadLetter(m, typeof payload === 'string' ? new TextEncoder().encode(payload) : payload, error, part++),
  };
}
