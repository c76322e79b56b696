/**
 * A durable pull consumer driven by a fetch loop. Why `fetch` and not `consume()`: `consume()`
 * refills its buffer as messages ARRIVE, not as they are handled, so a slow handler lets the buffer
 * grow without bound while each buffered message's ack-wait ticks. The loop here asks the server
 * for exactly as many messages as there are free handler slots, so the messages a process holds
 * (buffered + in flight) never exceed `concurrency` (in batch mode, `batch.concurrency` batches).
 *
 * Each fetch is a pull request with server heartbeats; a fetch that ends for any reason (expired,
 * heartbeats missed after a NATS restart, consumer deleted) is simply followed by the next one, after
 * re-provisioning the consumer when it was missing. So consumers resume by themselves.
 */
import { jetstream, type Consumer, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { FleetError } from '@fleet/errors';
import { CONSUMER_DEFAULTS, provisionConsumer, type ConsumerSpec } from './provision';
import { DEFAULT_BACKOFF, describeError, nakDelayMs, settle, type BackoffPolicy } from './policy';
import { wrapMessage, type BatchHandler, type InboundMessage, type MessageHandler } from './message';
import { extractTraceContext, MessagingAttr, withConsumerSpan } from './tracing';
import type { NatsPublisher } from './publisher';
import { Semaphore } from './semaphore';

export interface ConsumeOptions {
  /** Handlers in flight at once in this process (single-message mode). Default 1. */
  readonly concurrency?: number;
  /**
   * Batch mode: the handler receives up to `size` messages at once, gathered for at most `lingerMs`
   * after the first arrives (default 20 ms). `concurrency` batches are in flight at a time (default
   * 1): with 2, the next batch is fetched and handled while the previous one waits on I/O (a
   * database commit), so the process's CPU and the I/O overlap. Each batch is still settled on its
   * own, when its handler resolves.
   */
  readonly batch?: { readonly size: number; readonly lingerMs?: number; readonly concurrency?: number };
  /** Pull request expiry (>= 1000). Shorter means faster recovery after a NATS restart. Default 10 s. */
  readonly expiresMs?: number;
  /**
   * While a handler runs, call `working()` every this many ms so that a long handler is not
   * redelivered to another replica. Default ack_wait / 3; `false` disables it.
   */
  readonly autoWorkingMs?: number | false;
  readonly backoff?: BackoffPolicy;
  /** Where problems of the loop itself are reported (never thrown: the loop keeps going). */
  readonly onError?: (error: unknown, where: string) => void;
  /** Randomness for the backoff jitter (a parameter, for tests). */
  readonly random?: () => number;
}

export type ConsumerHandler = { readonly kind: 'single'; readonly handle: MessageHandler } | { readonly kind: 'batch'; readonly handle: BatchHandler };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref?.());

export class JetStreamConsumer {
  private readonly js: JetStreamClient;
  private consumer: Consumer | undefined;
  private fetching: ConsumerMessages | undefined;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private readonly slots: Semaphore;
  private readonly maxDeliver: number;
  private readonly ackWaitMs: number;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly publisher: NatsPublisher,
    readonly spec: ConsumerSpec,
    private readonly handler: ConsumerHandler,
    private readonly opts: ConsumeOptions = {},
  ) {
    this.js = jetstream(nc);
    this.slots = new Semaphore(Math.max(1, (handler.kind === 'batch' ? opts.batch?.concurrency : opts.concurrency) ?? 1));
    this.maxDeliver = spec.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver;
    this.ackWaitMs = spec.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs;
    if (handler.kind === 'batch' && (!Number.isInteger(opts.batch?.size) || (opts.batch?.size ?? 0) < 1)) {
      throw new RangeError('batch mode needs batch.size >= 1');
    }
    if (handler.kind === 'batch' && opts.batch?.concurrency !== undefined && (!Number.isInteger(opts.batch.concurrency) || opts.batch.concurrency < 1)) {
      throw new RangeError('batch.concurrency must be an integer >= 1');
    }
  }

  /** Handlers currently running (for tests and metrics). */
  get inFlight(): number {
    return this.slots.inFlight;
  }

  /** Provisions the durable consumer and starts pulling. Resolves once the consumer exists. */
  async start(): Promise<void> {
    await this.bind();
    this.loop = this.run();
  }

  /**
   * Graceful drain: stop pulling, let the messages already received be handled and settled, then
   * resolve. The caller closes (drains) the connection afterwards, which flushes the acks.
   */
  async drain(): Promise<void> {
    this.stopping = true;
    // closing a fetch lets its already-buffered messages through before the iterator ends
    await this.fetching?.close().catch(() => undefined);
    await this.loop;
    await this.slots.idle();
  }

  private async bind(): Promise<void> {
    await provisionConsumer(this.jsm, this.spec);
    this.consumer = await this.js.consumers.get(this.spec.stream, this.spec.durable);
  }

  private report(e: unknown, where: string): void {
    this.opts.onError?.(e, `${this.spec.stream}/${this.spec.durable} ${where}`);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        if (this.consumer === undefined) await this.bind();
        if (this.handler.kind === 'batch') await this.fetchBatch(this.handler.handle);
        else await this.fetchSingles(this.handler.handle);
        failures = 0;
      } catch (e) {
        if (this.stopping) break;
        failures++;
        // Whatever ended the fetch (consumer deleted, heartbeats missed because the consumer is gone
        // or NATS restarted), check the consumer on the next turn: provisioning is one info request
        // when all is well, and recreates the durable when it was deleted.
        this.consumer = undefined;
        this.report(e, 'fetch');
        await sleep(Math.min(5000, nakDelayMs(failures, { baseMs: 100, maxMs: 5000, jitter: 0.5 }, this.opts.random)));
      }
    }
  }

  private fetchOptions(max: number) {
    return { max_messages: max, expires: Math.max(1000, this.opts.expiresMs ?? 10_000) };
  }

  private async fetchSingles(handle: MessageHandler): Promise<void> {
    await this.slots.whenFree();
    if (this.stopping || this.consumer === undefined) return;
    const iter = await this.consumer.fetch(this.fetchOptions(this.slots.free));
    this.fetching = iter;
    try {
      for await (const m of iter) {
        // never blocks: the fetch asked for no more than the free slots
        await this.slots.acquire();
        void this.handleOne(m, handle).finally(() => this.slots.release());
      }
    } finally {
      this.fetching = undefined;
    }
  }

  private async fetchBatch(handle: BatchHandler): Promise<void> {
    await this.slots.whenFree();
    if (this.stopping || this.consumer === undefined) return;
    const size = this.opts.batch?.size ?? 1;
    const linger = this.opts.batch?.lingerMs ?? 20;
    // At most one batch per free slot, so a process never holds more than concurrency x size messages.
    const iter = await this.consumer.fetch(this.fetchOptions(size * this.slots.free));
    this.fetching = iter;
    const it = iter[Symbol.asyncIterator]();
    let buf: JsMsg[] = [];
    // Messages in hand (gathered, or a batch waiting for a slot) are kept alive like those being
    // handled: every slot can stay busy for longer than the ack wait (a handler waiting on a lock), and
    // a message not kept alive would be redelivered to another replica meanwhile.
    const inHand = new Set<JsMsg>();
    const every = this.autoWorkingEvery();
    const keepAlive = every === undefined ? undefined : setInterval(() => inHand.forEach((m) => m.working()), every);
    // Taken in hand as soon as the fetch yields it, even while the loop is blocked on a busy slot.
    const read = (): Promise<IteratorResult<JsMsg>> => {
      const p = it.next();
      void p.then((r) => (r.done === true ? undefined : inHand.add(r.value)), () => undefined);
      return p;
    };
    const flush = async () => {
      if (buf.length === 0) return;
      const batch = buf;
      buf = [];
      // Waits while every slot is busy; the handler then runs while the loop gathers the next batch.
      await this.slots.acquire();
      for (const m of batch) inHand.delete(m); // from here on, withAutoWorking keeps them alive
      void this.handleBatch(batch, handle)
        .catch((e: unknown) => this.report(e, 'batch'))
        .finally(() => this.slots.release());
    };
    try {
      let next = read();
      for (;;) {
        let r: IteratorResult<JsMsg> | 'linger';
        if (buf.length === 0) r = await next;
        else {
          let timer: NodeJS.Timeout | undefined;
          r = await Promise.race([next, new Promise<'linger'>((res) => (timer = setTimeout(() => res('linger'), linger)))]);
          clearTimeout(timer);
        }
        if (r === 'linger') {
          // A partial batch goes when a slot is free; else the loop keeps gathering (and keeping alive)
          // rather than queue one more batch behind the busy slots.
          if (this.slots.free > 0) await flush();
          continue;
        }
        if (r.done) break;
        buf.push(r.value);
        next = read();
        if (buf.length >= size) await flush();
      }
    } finally {
      // whatever happened to the fetch, the messages in hand are handled and settled
      await flush();
      if (keepAlive !== undefined) clearInterval(keepAlive);
      this.fetching = undefined;
    }
  }

  /** How often messages in hand get `working()` (every ackWait / 3 by default); undefined when off. */
  private autoWorkingEvery(): number | undefined {
    return this.opts.autoWorkingMs === false ? undefined : (this.opts.autoWorkingMs ?? Math.max(100, Math.floor(this.ackWaitMs / 3)));
  }

  private withAutoWorking<T>(msgs: readonly JsMsg[], fn: () => Promise<T>): Promise<T> {
    const every = this.autoWorkingEvery();
    if (every === undefined) return fn();
    const t = setInterval(() => msgs.forEach((m) => m.working()), every);
    return fn().finally(() => clearInterval(t));
  }

  private wrap(m: JsMsg): InboundMessage {
    return wrapMessage(m, (orig, payload, error, part) => this.deadLetterPart(orig, payload, error, part));
  }

  private async deadLetterPart(m: JsMsg, payload: Uint8Array, error: FleetError, part: number): Promise<void> {
    await this.publisher.deadLetter(payload, m.headers, error.code, describeError(error), originOf(m), part);
  }

  private spanAttrs(m: JsMsg) {
    return {
      [MessagingAttr.MessageId]: m.headers?.has('Nats-Msg-Id') ? m.headers.get('Nats-Msg-Id') : undefined,
      [MessagingAttr.ConsumerGroup]: this.spec.durable,
      [MessagingAttr.StreamName]: m.info.stream,
      [MessagingAttr.StreamSequence]: m.info.streamSequence,
      [MessagingAttr.DeliveryCount]: m.info.deliveryCount,
      [MessagingAttr.BodySize]: m.data.length,
    };
  }

  private async handleOne(m: JsMsg, handle: MessageHandler): Promise<void> {
    let error: unknown;
    try {
      await withConsumerSpan(m.subject, extractTraceContext(m.headers), this.spanAttrs(m), () => this.withAutoWorking([m], () => handle(this.wrap(m))));
    } catch (e) {
      error = e;
    }
    await this.settleMsg(m, error);
  }

  private async handleBatch(msgs: readonly JsMsg[], handle: BatchHandler): Promise<void> {
    const wrapped = msgs.map((m) => this.wrap(m));
    const first = msgs[0];
    if (first === undefined) return;
    let failures: ReadonlyMap<InboundMessage, unknown> = new Map();
    let whole: { error: unknown } | undefined;
    try {
      // one span for the batch: the parent is the first message's trace, links to every message's
      const outcome = await withConsumerSpan(
        first.subject,
        extractTraceContext(first.headers),
        { ...this.spanAttrs(first), [MessagingAttr.BatchCount]: msgs.length },
        () => this.withAutoWorking(msgs, () => handle(wrapped)),
        { links: msgs.map((m) => extractTraceContext(m.headers)) },
      );
      if (outcome) failures = outcome.failures;
    } catch (e) {
      whole = { error: e };
    }
    await Promise.all(
      msgs.map((m, i) => {
        const w = wrapped[i];
        const error = whole ? whole.error : w !== undefined && failures.has(w) ? (failures.get(w) ?? new Error('failed')) : undefined;
        return this.settleMsg(m, error);
      }),
    );
  }

  /** Applies the outcome rules of policy.ts; a dead letter that cannot be written is nak'ed, never dropped. */
  private async settleMsg(m: JsMsg, error: unknown): Promise<void> {
    const s = settle(error, m.info.deliveryCount, this.maxDeliver, this.opts.backoff ?? DEFAULT_BACKOFF, this.opts.random);
    try {
      switch (s.kind) {
        case 'ack':
          m.ack();
          return;
        case 'nak':
          m.nak(s.delayMs);
          return;
        case 'dead-letter':
          try {
            await this.publisher.deadLetter(m.data, m.headers, s.code, s.reason, originOf(m));
          } catch (e) {
            this.report(e, 'dead-letter');
            m.nak(nakDelayMs(m.info.deliveryCount, this.opts.backoff ?? DEFAULT_BACKOFF, this.opts.random));
            return;
          }
          m.term();
          return;
      }
    } catch (e) {
      // ack/nak on a closed connection: the message will be redelivered after ack_wait
      this.report(e, 'settle');
    }
  }
}

function originOf(m: JsMsg) {
  return { subject: m.subject, stream: m.info.stream, streamSequence: m.info.streamSequence, deliveryCount: m.info.deliveryCount };
}
