import { createHash } from 'node:crypto';
import { jetstream, JetStreamApiError, type JetStreamClient, type JetStreamPublishOptions } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { SpanKind } from '@opentelemetry/api';
import { FleetError, isErrorCode } from '@fleet/errors';
import { Headers, replyRefusal, type Subjects } from '@fleet/contracts';
import { deadLetterHeaders, deadLetterMsgId, describeError, type DeadLetterOrigin } from './policy';
import { injectTraceContext, extractTraceContext, MessagingAttr, withConsumerSpan, withProducerSpan, withProducerSpanSync } from './tracing';
import { Semaphore } from './semaphore';

export type Payload = Uint8Array | string;

export interface PublishOptions {
  /** `Nats-Msg-Id`: JetStream drops a second publish with the same id within the dedupe window. */
  readonly msgId?: string;
  /** `Nats-Expected-Last-Subject-Sequence`: refuse (FLEET_MSG_002) if the subject moved on. */
  readonly expectedLastSubjectSequence?: number;
  /** Extra headers (e.g. `Fleet-Protocol`). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

/** What JetStream answered: where the message is stored, and whether it was a dedupe hit. */
export interface PublishAck {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

export interface Reply {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
}

/** A request/reply request as a responder sees it. */
export interface InboundRequest extends Reply {
  header(name: string): string | undefined;
}

/**
 * A reply that carries headers (e.g. `Fleet-Encoding` on a compressed pull page). A request handler
 * returns it instead of a bare payload when the reply's meaning depends on a header.
 */
export class ReplyWithHeaders {
  constructor(
    readonly data: Payload,
    readonly headers: Readonly<Record<string, string>>,
  ) {}
}

export type RequestHandler = (req: InboundRequest) => Promise<Payload | ReplyWithHeaders | void>;

export interface RespondOptions {
  /** Handlers running at once (default 16); the rest wait in order. */
  readonly maxConcurrent?: number;
  /** The requests come on agents' own subjects (`<ns>.<kind>.<agentId>`): answer only in that agent's inbox. */
  readonly agentReplies?: boolean;
  /** A request whose reply subject was refused (not handled, not answered). */
  readonly onRefused?: (subject: string, reason: string) => void;
}

export interface Responder {
  readonly subject: string;
  readonly queue: string;
  /** Stop taking requests, finish those in hand. */
  drain(): Promise<void>;
}

const enc = new TextEncoder();
const toBytes = (p: Payload): Uint8Array => (typeof p === 'string' ? enc.encode(p) : p);

function buildHeaders(extra: Readonly<Record<string, string>> | undefined): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(extra ?? {})) h.set(k, v);
  injectTraceContext(h);
  return h;
}

/**
 * Publishing side of the transport, plus request/reply. Every publish carries the trace context of
 * the active span (a PRODUCER span is opened around it).
 */
export class NatsPublisher {
  readonly js: JetStreamClient;

  constructor(
    readonly nc: NatsConnection,
    /** The namespace: dead letters go to `subjects.deadLetter(stream)` in `subjects.streams.deadLetter`. */
    readonly subjects: Subjects,
  ) {
    this.js = jetstream(nc);
  }

  /** Publishes to JetStream and waits for the PubAck: the message is stored when this resolves. */
  async publish(subject: string, payload: Payload, opts: PublishOptions = {}): Promise<PublishAck> {
    return withProducerSpan(subject, 'publish', { [MessagingAttr.MessageId]: opts.msgId }, async (span) => {
      const data = toBytes(payload);
      span.setAttribute(MessagingAttr.BodySize, data.length);
      const o: Partial<JetStreamPublishOptions> = { headers: buildHeaders(opts.headers) };
      if (opts.msgId !== undefined) o.msgID = opts.msgId;
      if (opts.expectedLastSubjectSequence !== undefined) o.expect = { lastSubjectSequence: opts.expectedLastSubjectSequence };
      if (opts.timeoutMs !== undefined) o.timeout = opts.timeoutMs;
      try {
        const ack = await this.js.publish(subject, data, o);
        span.setAttribute(MessagingAttr.StreamName, ack.stream);
        span.setAttribute(MessagingAttr.StreamSequence, ack.seq);
        return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
      } catch (e) {
        if (e instanceof JetStreamApiError && e.code === 10071) {
          throw new FleetError('FLEET_MSG_002', `${subject}: expected last sequence ${String(opts.expectedLastSubjectSequence)}`, { cause: e });
        }
        throw new FleetError('FLEET_INFRA_001', `publish to ${subject}: ${describeError(e)}`, { cause: e });
      }
    });
  }

  /**
   * Core NATS publish: fire and forget, no storage. For nudges (`sync.notify.<agent>`), whose loss
   * only delays a pull until the scheduler's next tick.
   */
  publishCore(subject: string, payload: Payload = new Uint8Array(), opts: { headers?: Readonly<Record<string, string>> } = {}): void {
    const data = toBytes(payload);
    // a PRODUCER span like a JetStream publish (no message id, no stream): the headers carry it as the parent
    withProducerSpanSync(subject, { [MessagingAttr.BodySize]: data.length }, () => {
      this.nc.publish(subject, data, { headers: buildHeaders(opts.headers) });
    });
  }

  /**
   * Request/reply over core NATS. A responder that failed answers with `Fleet-Reject-Code`: that
   * becomes a FleetError here (same code when known); no responder or a timeout is FLEET_INFRA_001.
   */
  async request(subject: string, payload: Payload, opts: { timeoutMs?: number; headers?: Readonly<Record<string, string>> } = {}): Promise<Reply> {
    return withProducerSpan(subject, 'send', {}, async () => {
      let msg;
      try {
        msg = await this.nc.request(subject, toBytes(payload), { timeout: opts.timeoutMs ?? 5000, headers: buildHeaders(opts.headers) });
      } catch (e) {
        throw new FleetError('FLEET_INFRA_001', `request ${subject}: ${describeError(e)}`, { cause: e });
      }
      const code = msg.headers?.has(Headers.RejectCode) ? msg.headers.get(Headers.RejectCode) : undefined;
      if (code !== undefined) {
        const reason = msg.headers?.get(Headers.RejectReason) ?? '';
        throw new FleetError(isErrorCode(code) ? code : 'FLEET_MSG_004', reason, { details: { remote: true, subject } });
      }
      return { subject: msg.subject, data: msg.data, headers: msg.headers };
    });
  }

  /**
   * Answers requests on `subject` in a queue group: each request goes to one member of the group,
   * so replicas share the load. At most `maxConcurrent` handlers run at once; the rest wait in
   * order. A thrown FleetError is answered with its code and reason in headers and its JSON body.
   */
  respond(subject: string, queue: string, handler: RequestHandler, opts: RespondOptions = {}): Responder {
    const sem = new Semaphore(opts.maxConcurrent ?? 16);
    const sub = this.nc.subscribe(subject, {
      queue,
      callback: (err, msg) => {
        if (err) return;
        // An answer goes out with this service's permissions: only to an inbox, and for an agent's
        // request only to that agent's (contracts' replyRefusal). Refused: not handled, not answered.
        const refusal = msg.reply ? replyRefusal(msg.subject, msg.reply, { agent: opts.agentReplies === true, strict: this.nc.info?.auth_required === true }) : undefined;
        if (refusal !== undefined) {
          opts.onRefused?.(msg.subject, refusal);
          return;
        }
        void sem.run(() =>
          withConsumerSpan(
            msg.subject,
            extractTraceContext(msg.headers),
            { [MessagingAttr.ConsumerGroup]: queue },
            async () => {
              const req: InboundRequest = {
                subject: msg.subject,
                data: msg.data,
                headers: msg.headers,
                header: (n) => (msg.headers?.has(n) ? msg.headers.get(n) : undefined),
              };
              try {
                const out = await handler(req);
                if (!msg.reply) return;
                if (out instanceof ReplyWithHeaders) {
                  const h = natsHeaders();
                  for (const [k, v] of Object.entries(out.headers)) h.set(k, v);
                  msg.respond(toBytes(out.data), { headers: h });
                } else msg.respond(out === undefined ? new Uint8Array() : toBytes(out));
              } catch (e) {
                const h = natsHeaders();
                const fe = e instanceof FleetError ? e : undefined;
                h.set(Headers.RejectCode, fe?.code ?? 'FLEET_MSG_004');
                h.set(Headers.RejectReason, describeError(e).replace(/[\r\n]+/g, ' ').slice(0, 1024));
                const body = fe ? fe.toJSON() : { code: 'FLEET_MSG_004', message: 'the responder failed' };
                if (msg.reply) msg.respond(enc.encode(JSON.stringify(body)), { headers: h });
                throw e;
              }
            },
            { kind: SpanKind.SERVER },
          ).catch(() => undefined),
        );
      },
    });
    return {
      subject,
      queue,
      drain: async () => {
        await sub.drain().catch(() => undefined);
        await sem.idle();
      },
    };
  }

  /**
   * Copies a message (or a part of one) to the dead-letter stream with its reason and origin. The
   * publish is deduplicated by origin and part, so a dead letter whose `term` got lost and that is
   * dead-lettered again on redelivery is stored once.
   */
  async deadLetter(
    payload: Uint8Array,
    original: MsgHdrs | undefined,
    code: FleetError['code'],
    reason: string,
    origin: DeadLetterOrigin,
    part?: number,
  ): Promise<PublishAck> {
    const h = natsHeaders();
    const headers = deadLetterHeaders(original, code, reason, origin);
    const msgID = deadLetterMsgId(origin.stream, origin.streamSequence, part);
    const subject = this.subjects.deadLetter(origin.stream);
    // A message refused for its size can sit just under max_payload; with the dead letter's headers
    // added it would not fit, the publish would fail for ever and the message be redelivered for ever.
    // So it is stored cut short, saying so (length and hash of the original): the reason is the point.
    const cut = fitDeadLetter(payload, headers, msgID, this.nc.info?.max_payload);
    for (const [k, v] of cut.headers) h.append(k, v);
    try {
      const ack = await this.js.publish(subject, cut.payload, { headers: h, msgID });
      return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
    } catch (e) {
      throw new FleetError('FLEET_INFRA_001', `dead-letter to ${subject}: ${describeError(e)}`, { cause: e });
    }
  }
}

/** Bytes a header block takes on the wire: `NATS/1.0\r\n`, `k: v\r\n` per value, `\r\n`. */
function headerBytes(headers: readonly (readonly [string, string])[]): number {
  let n = 12;
  for (const [k, v] of headers) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 4;
  return n;
}

/**
 * The dead letter as it can be stored: whole when payload and headers fit `maxPayload` (with a margin
 * for what the client adds), else the payload cut to fit and `Fleet-Dead-Letter-Truncated` added.
 * Pure; exported for its unit test.
 */
export function fitDeadLetter(
  payload: Uint8Array,
  headers: readonly (readonly [string, string])[],
  msgId: string,
  maxPayload: number | undefined,
): { payload: Uint8Array; headers: Array<readonly [string, string]> } {
  const all: Array<readonly [string, string]> = [...headers, ['Nats-Msg-Id', msgId]];
  const margin = 256;
  if (maxPayload === undefined || payload.byteLength + headerBytes(all) + margin <= maxPayload) return { payload, headers: [...headers] };
  const marker = [Headers.DeadLetterTruncated, `${payload.byteLength} sha256:${createHash('sha256').update(payload).digest('hex')}`] as const;
  const room = Math.max(0, maxPayload - headerBytes([...all, marker]) - margin);
  return { payload: payload.subarray(0, room), headers: [...headers, marker] };
}