import { FleetError } from '@fleet/errors';
import { Headers } from '@fleet/contracts';
import { Messaging } from './messaging';
import { consumerDrift, provisionConsumer, provisionStream, type ConsumerSpec, type StreamSpec } from './provision';
import type { InboundMessage } from './message';
import { deleteNamespaceStreams, eventually, readStream, SHARED_NATS, testNamespace } from './test-support';

jest.setTimeout(30_000);
const s = testNamespace('tm');
const dec = new TextDecoder();
const fastBackoff = { baseMs: 30, maxMs: 200, jitter: 0 };
const pushStream: StreamSpec = { name: s.streams.push, subjects: [s.pushAll], storage: 'memory' };
let n = 0;
/** A durable per test, filtered on a subject of its own, so tests do not see each other's messages. */
function spec(extra: Partial<ConsumerSpec> = {}): ConsumerSpec & { subject: string } {
  const agent = `a${++n}`;
  return { stream: s.streams.push, durable: `d${n}`, filterSubject: s.push(agent), subject: s.push(agent), ...extra };
}

let bus: Messaging;
const opened: Messaging[] = [];
async function open(): Promise<Messaging> {
  const m = await Messaging.connect({ servers: SHARED_NATS, name: 'messaging-int' }, s);
  opened.push(m);
  return m;
}

beforeAll(async () => {
  bus = await open();
  await bus.provision([pushStream]);
});

afterAll(async () => {
  await deleteNamespaceStreams(await bus.jsm(), s);
  await Promise.all(opened.map((m) => m.drain()));
});

async function deadLetters(source = s.streams.push) {
  const all = await readStream(await bus.jsm(), s.streams.deadLetter);
  return all.filter((m) => m.subject === s.deadLetter(source));
}

describe('provisioning', () => {
  it('is idempotent and follows declaration changes', async () => {
    const jsm = await bus.jsm();
    await bus.provision([pushStream]); // twice in a row
    const a = await provisionStream(jsm, pushStream);
    expect(a.config.subjects).toEqual([s.pushAll]);
    const changed = await provisionStream(jsm, { ...pushStream, maxAgeMs: 3_600_000 });
    expect(changed.config.max_age).toBe(3_600_000 * 1e6);
    await provisionStream(jsm, pushStream);

    const c = spec();
    const c1 = await provisionConsumer(jsm, c);
    const c2 = await provisionConsumer(jsm, c);
    expect(c2.created).toEqual(c1.created);
    const c3 = await provisionConsumer(jsm, { ...c, maxAckPending: 7 });
    expect(c3.config.max_ack_pending).toBe(7);
    expect(c3.created).toEqual(c1.created); // updated in place, not recreated
  });

  it('is idempotent with unlimited deliveries (maxDeliver -1, the change-log default): no update on the second start', async () => {
    const jsm = await bus.jsm();
    const c = spec({ maxDeliver: -1 });
    const first = await provisionConsumer(jsm, c);
    expect(first.config.max_deliver).toBe(-1); // what the server stores for "unlimited"
    expect(consumerDrift(c, first.config)).toEqual([]);
    const update = jest.spyOn(jsm.consumers, 'update');
    try {
      const again = await provisionConsumer(jsm, c);
      await provisionConsumer(jsm, c);
      expect(update).not.toHaveBeenCalled();
      expect(again.config.max_deliver).toBe(-1);
      // a real change is still followed, and back again
      const limited = await provisionConsumer(jsm, { ...c, maxDeliver: 5 });
      expect(limited.config.max_deliver).toBe(6);
      expect(update).toHaveBeenCalledTimes(1);
      expect((await provisionConsumer(jsm, c)).config.max_deliver).toBe(-1);
      expect(update).toHaveBeenCalledTimes(2);
      await provisionConsumer(jsm, c);
      expect(update).toHaveBeenCalledTimes(2);
    } finally {
      update.mockRestore();
    }
  });

  it('two replicas share one durable consumer: the work is split, each message handled once', async () => {
    const c = spec();
    const a = await open();
    const b = await open();
    const seen: Array<[string, string]> = [];
    const handler = (who: string) => async (m: InboundMessage) => {
      seen.push([who, dec.decode(m.data)]);
      await new Promise((r) => setTimeout(r, 5));
    };
    await Promise.all([a.consume(c, handler('a'), { concurrency: 2 }), b.consume(c, handler('b'), { concurrency: 2 })]);
    for (let i = 0; i < 40; i++) await bus.publish(c.subject, `m${i}`, { msgId: `${c.durable}-${i}` });
    await eventually(() => seen.length >= 40, 10_000, '40 messages');
    await new Promise((r) => setTimeout(r, 300));
    expect(seen).toHaveLength(40);
    expect(new Set(seen.map(([, d]) => d)).size).toBe(40);
    expect(seen.some(([w]) => w === 'a')).toBe(true);
    expect(seen.some(([w]) => w === 'b')).toBe(true);
    await Promise.all([a.drain(), b.drain()]);
  });
});

describe('publishing', () => {
  it('dedupes by Nats-Msg-Id and enforces the expected last subject sequence', async () => {
    const subject = s.push('pub');
    const a = await bus.publish(subject, '1', { msgId: 'p-1' });
    expect(await bus.publish(subject, '1', { msgId: 'p-1' })).toEqual({ ...a, duplicate: true });
    const b = await bus.publish(subject, '2', { expectedLastSubjectSequence: a.seq });
    expect(b.seq).toBeGreaterThan(a.seq);
    await expect(bus.publish(subject, '3', { expectedLastSubjectSequence: a.seq })).rejects.toMatchObject({ code: 'FLEET_MSG_002' });
  });
});

describe('settlement', () => {
  it('acks only after the handler resolved: a transient failure is redelivered, then handled, no dead letter', async () => {
    const c = spec();
    const calls: number[] = [];
    await bus.consume(
      c,
      async (m) => {
        calls.push(m.deliveryCount);
        if (m.deliveryCount === 1) throw new FleetError('FLEET_INFRA_001', 'database restarting');
      },
      { backoff: fastBackoff },
    );
    const ack = await bus.publish(c.subject, 'x', { msgId: `${c.durable}-1` });
    expect(ack).toMatchObject({ stream: s.streams.push, duplicate: false });
    await eventually(() => calls.length === 2, 5000, 'redelivery');
    const jsm = await bus.jsm();
    await eventually(async () => (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, 5000, 'acked');
    expect(calls).toEqual([1, 2]);
    expect((await deadLetters()).filter((d) => d.header.get(Headers.OriginalSequence) === String(ack.seq))).toHaveLength(0);
  });

  it('dead-letters a permanent failure with its reason and the original headers, then terms it', async () => {
    const c = spec();
    let calls = 0;
    await bus.consume(c, async () => {
      calls++;
      throw new FleetError('FLEET_DECODE_002', 'changes[0].key: required');
    });
    const ack = await bus.publish(c.subject, '{"bad":true}', { msgId: `${c.durable}-1`, headers: { [Headers.Protocol]: '1' } });
    const dl = await eventually(async () => (await deadLetters()).find((d) => d.header.get(Headers.OriginalSequence) === String(ack.seq)), 5000, 'dead letter');
    expect(dl.header.get(Headers.RejectCode)).toBe('FLEET_DECODE_002');
    expect(dl.header.get(Headers.RejectReason)).toContain('changes[0].key: required');
    expect(dl.header.get(Headers.OriginalSubject)).toBe(c.subject);
    expect(dl.header.get(Headers.OriginalStream)).toBe(s.streams.push);
    expect(dl.header.get(Headers.DeliveryCount)).toBe('1');
    expect(dl.header.get(Headers.Protocol)).toBe('1');
    expect(dec.decode(dl.data)).toBe('{"bad":true}');
    const jsm = await bus.jsm();
    await eventually(async () => (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, 5000, 'termed');
    await new Promise((r) => setTimeout(r, 300));
    expect(calls).toBe(1);
  });

  it('dead-letters a message whose delivery count reached max_deliver', async () => {
    const c = spec({ maxDeliver: 3 });
    const counts: number[] = [];
    await bus.consume(
      c,
      async (m) => {
        counts.push(m.deliveryCount);
        throw new Error('still down');
      },
      { backoff: fastBackoff },
    );
    const ack = await bus.publish(c.subject, 'y');
    const dl = await eventually(async () => (await deadLetters()).find((d) => d.header.get(Headers.OriginalSequence) === String(ack.seq)), 8000, 'dead letter');
    expect(dl.header.get(Headers.RejectCode)).toBe('FLEET_MSG_001');
    expect(dl.header.get(Headers.RejectReason)).toContain('still down');
    expect(dl.header.get(Headers.DeliveryCount)).toBe('3');
    await new Promise((r) => setTimeout(r, 400));
    expect(counts).toEqual([1, 2, 3]);
  });
});

describe('batch mode', () => {
  it('hands several messages at once, dead-letters a part, settles per message', async () => {
    const c = spec();
    const batches: string[][] = [];
    const jsm = await bus.jsm();
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push((await bus.publish(c.subject, `b${i}`)).seq);
    let failedOnce = false;
    await bus.consumeBatch(
      c,
      async (msgs) => {
        batches.push(msgs.map((m) => dec.decode(m.data)));
        const failures = new Map<InboundMessage, unknown>();
        for (const m of msgs) {
          const body = dec.decode(m.data);
          // one bad change inside b1: dead-letter that part, keep (and ack) the rest of the message
          if (body === 'b1') await m.deadLetter('{"change":"bad one"}', new FleetError('FLEET_AUTH_001', 'origin a9 on a1'));
          if (body === 'b3') failures.set(m, new FleetError('FLEET_DECODE_004', 'too big'));
          if (body === 'b4' && !failedOnce) {
            failedOnce = true;
            failures.set(m, new FleetError('FLEET_INFRA_001', 'lock timeout'));
          }
        }
        return { failures };
      },
      { batch: { size: 10, lingerMs: 50 }, backoff: fastBackoff },
    );
    await eventually(async () => (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0 && batches.flat().filter((b) => b === 'b4').length === 2, 5000, 'settled');
    expect(batches[0]).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
    const dls = (await deadLetters()).filter((d) => seqs.map(String).includes(d.header.get(Headers.OriginalSequence)));
    const part = dls.find((d) => d.header.get(Headers.RejectCode) === 'FLEET_AUTH_001');
    expect(part && dec.decode(part.data)).toBe('{"change":"bad one"}');
    expect(part?.header.get(Headers.OriginalSequence)).toBe(String(seqs[1]));
    const whole = dls.find((d) => d.header.get(Headers.RejectCode) === 'FLEET_DECODE_004');
    expect(whole && dec.decode(whole.data)).toBe('b3');
    expect(dls).toHaveLength(2);
    // b0, b1, b2 were acked once, b3 termed, b4 redelivered once then acked
    expect(batches.flat().sort()).toEqual(['b0', 'b1', 'b2', 'b3', 'b4', 'b4']);
  });

  it('a message refused for its size just under max_payload is dead-lettered cut short, not redelivered for ever', async () => {
    const c = spec();
    const jsm = await bus.jsm();
    const max = bus.nc.info?.max_payload as number;
    const big = Uint8Array.from({ length: max - 1024 }, (_, i) => (i * 31 + 7) % 251);
    const seq = (await bus.publish(c.subject, big)).seq;
    const seen: number[] = [];
    await bus.consumeBatch(
      c,
      async (msgs) => {
        for (const m of msgs) seen.push(m.data.byteLength);
        // The reason alone takes more room than the message has left: whole, the dead letter would not fit.
        return { failures: new Map(msgs.map((m) => [m, new FleetError('FLEET_DECODE_004', `push of ${m.data.byteLength} bytes is too large; ${'x'.repeat(1500)}`)])) };
      },
      { batch: { size: 10, lingerMs: 20 }, backoff: fastBackoff },
    );
    await eventually(async () => (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0 && (await deadLetters()).some((d) => d.header.get(Headers.OriginalSequence) === String(seq)), 5000, 'dead-lettered');
    const dl = (await deadLetters()).find((d) => d.header.get(Headers.OriginalSequence) === String(seq));
    expect(dl?.header.get(Headers.RejectCode)).toBe('FLEET_DECODE_004');
    expect(dl?.header.get(Headers.DeadLetterTruncated)).toMatch(new RegExp(`^${big.byteLength} sha256:[0-9a-f]{64}$`));
    expect(dl!.data.byteLength).toBeLessThan(big.byteLength);
    expect(Buffer.from(dl!.data).equals(Buffer.from(big.subarray(0, dl!.data.byteLength)))).toBe(true);
    expect(seen).toEqual([big.byteLength]); // termed after the dead letter: delivered once
  });

  it('a thrown error fails the whole batch (all redelivered)', async () => {
    const c = spec();
    const jsm = await bus.jsm();
    for (let i = 0; i < 3; i++) await bus.publish(c.subject, `w${i}`);
    const seen: string[][] = [];
    await bus.consumeBatch(
      c,
      async (msgs) => {
        seen.push(msgs.map((m) => `${dec.decode(m.data)}@${m.deliveryCount}`));
        if (seen.length === 1) throw new Error('transaction rolled back');
      },
      { batch: { size: 10, lingerMs: 50 }, backoff: fastBackoff },
    );
    await eventually(async () => seen.flat().length >= 6 && (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, 5000, 'redelivered batch');
    expect(seen.flat().sort()).toEqual(['w0@1', 'w0@2', 'w1@1', 'w1@2', 'w2@1', 'w2@2']);
  });
});

describe('batch mode with concurrency', () => {
  it('runs up to `batch.concurrency` batches at once, each settled on its own', async () => {
    const c = spec();
    const jsm = await bus.jsm();
    for (let i = 0; i < 40; i++) await bus.publish(c.subject, `p${i}`);
    let inFlight = 0;
    let max = 0;
    const seen: string[] = [];
    let failedOnce = false;
    await bus.consumeBatch(
      c,
      async (msgs) => {
        inFlight++;
        max = Math.max(max, inFlight);
        await new Promise((r) => setTimeout(r, 60));
        inFlight--;
        seen.push(...msgs.map((m) => dec.decode(m.data)));
        // one batch fails (retryable): only its messages come back
        if (!failedOnce && msgs.some((m) => dec.decode(m.data) === 'p5')) {
          failedOnce = true;
          throw new Error('transaction rolled back');
        }
      },
      { batch: { size: 4, lingerMs: 20, concurrency: 2 }, backoff: fastBackoff },
    );
    await eventually(async () => new Set(seen).size === 40 && (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, 10_000, 'all settled');
    expect(max).toBe(2);
    // every message handled; only the failed batch's messages (p5 among them) were handled twice
    const twice = [...new Set(seen)].filter((b) => seen.filter((x) => x === b).length > 1);
    expect(twice).toContain('p5');
    expect(twice.length).toBeLessThanOrEqual(4);
  });
});

describe('long handlers (working)', () => {
  // ackWait 2.5 s, handlers of 6 s (over two ack waits). Two consumer instances (two connections)
  // share the durable, each with one slot: a redelivery would go to the idle one. working() every
  // ackWait / 3 leaves 1.6 s of slack for a stalled event loop on a loaded machine.
  const ackWaitMs = 2500;
  const handlerMs = 6000;
  async function longRun(opts: { autoWorkingMs?: number | false; manualWorking?: boolean }) {
    const c = spec({ ackWaitMs });
    const [a, b] = [await open(), await open()];
    const calls: Array<{ who: string; deliveryCount: number; body: string }> = [];
    let finished = 0;
    const handler = (who: string) => async (m: InboundMessage) => {
      calls.push({ who, deliveryCount: m.deliveryCount, body: dec.decode(m.data) });
      const until = Date.now() + handlerMs;
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        if (opts.manualWorking) m.working();
      }
      finished++;
    };
    const consumeOpts = opts.autoWorkingMs === undefined ? {} : { autoWorkingMs: opts.autoWorkingMs };
    await Promise.all([a.consume(c, handler('a'), consumeOpts), b.consume(c, handler('b'), consumeOpts)]);
    await bus.publish(c.subject, 'long', { msgId: `${c.durable}-long` });
    const jsm = await bus.jsm();
    await eventually(async () => finished >= 1 && (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, 15_000, 'handled and acked');
    await new Promise((r) => setTimeout(r, ackWaitMs + 300)); // a late redelivery would show now
    const info = await jsm.consumers.info(c.stream, c.durable);
    await Promise.all([a.drain(), b.drain()]);
    return { calls, info };
  }

  it('a handler running well past ackWait is delivered once: working() is called automatically (ackWait / 3)', async () => {
    const { calls, info } = await longRun({});
    expect(calls).toEqual([expect.objectContaining({ deliveryCount: 1, body: 'long' })]);
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(info.delivered.consumer_seq).toBe(1); // one delivery in all
  });

  it('with autoWorkingMs: false, a handler calling msg.working() itself is delivered once too', async () => {
    const { calls, info } = await longRun({ autoWorkingMs: false, manualWorking: true });
    expect(calls).toEqual([expect.objectContaining({ deliveryCount: 1, body: 'long' })]);
    expect(info.num_redelivered).toBe(0);
    expect(info.delivered.consumer_seq).toBe(1);
  });

  it('control: with autoWorkingMs: false and no working(), the same handler is redelivered to the other instance', async () => {
    const { calls } = await longRun({ autoWorkingMs: false });
    expect(calls.length).toBeGreaterThanOrEqual(2);
    expect(calls[0]).toMatchObject({ deliveryCount: 1 });
    expect(calls[1]).toMatchObject({ deliveryCount: 2 });
    expect(calls[1]?.who).not.toBe(calls[0]?.who); // the first instance's only slot was still busy
  });
});

describe('batch mode: messages waiting for a busy slot', () => {
  it('are kept alive (working) while every slot is busy past ackWait, so they are delivered once, not also to another replica', async () => {
    const ackWaitMs = 2500;
    const c = spec({ ackWaitMs });
    const [a, b] = [await open(), await open()];
    const calls: Array<{ who: string; bodies: string[]; deliveryCounts: number[] }> = [];
    const slow = new Set(['m0', 'm1', 'm2']);
    const handler = (who: string) => async (msgs: readonly InboundMessage[]) => {
      const bodies = msgs.map((m) => dec.decode(m.data));
      calls.push({ who, bodies, deliveryCounts: msgs.map((m) => m.deliveryCount) });
      if (bodies.some((x) => slow.has(x))) await new Promise((r) => setTimeout(r, 6000)); // every slot busy, past two ack waits
    };
    // Three slots of batches of 2 (a fetch of 6): m0, m1, m2 arrive apart, each flushed alone by the
    // linger, filling the slots; m3 and m4 then make a full batch that waits for a slot for ~6 s, and m5
    // waits behind it, read from the fetch but not yet by the loop.
    await a.consumeBatch(c, handler('a'), { batch: { size: 2, lingerMs: 10, concurrency: 3 } });
    for (const m of ['m0', 'm1', 'm2']) {
      await bus.publish(c.subject, m);
      await eventually(() => calls.flatMap((x) => x.bodies).includes(m), 5000, `${m} handled`);
    }
    for (const m of ['m3', 'm4', 'm5']) await bus.publish(c.subject, m);
    await new Promise((r) => setTimeout(r, 300));
    // An idle replica: a redelivery of m3, m4 or m5 would go to it.
    await b.consumeBatch(c, handler('b'), { batch: { size: 2, lingerMs: 10, concurrency: 1 } });
    const jsm = await bus.jsm();
    await eventually(async () => calls.flatMap((x) => x.bodies).includes('m5') && (await jsm.consumers.info(c.stream, c.durable)).num_ack_pending === 0, 20_000, 'all handled and acked');
    await new Promise((r) => setTimeout(r, ackWaitMs + 300)); // a late redelivery would show now
    const info = await jsm.consumers.info(c.stream, c.durable);
    await Promise.all([a.drain(), b.drain()]);
    expect(calls.flatMap((x) => x.bodies).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
    expect(calls.flatMap((x) => x.deliveryCounts)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(info.num_redelivered).toBe(0);
  });
});

describe('flow control and lifecycle', () => {
  it('never runs more than `concurrency` handlers at once', async () => {
    const c = spec();
    let inFlight = 0;
    let max = 0;
    let done = 0;
    for (let i = 0; i < 30; i++) await bus.publish(c.subject, `c${i}`);
    await bus.consume(
      c,
      async () => {
        inFlight++;
        max = Math.max(max, inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        done++;
      },
      { concurrency: 4 },
    );
    await eventually(() => done === 30, 10_000, 'all handled');
    expect(max).toBe(4);
  });

  it('drain finishes the handlers in flight and acks them before closing', async () => {
    const c = spec();
    const m = await open();
    let started = 0;
    let finished = 0;
    await m.consume(
      c,
      async () => {
        started++;
        await new Promise((r) => setTimeout(r, 400));
        finished++;
      },
      { concurrency: 3 },
    );
    for (let i = 0; i < 3; i++) await bus.publish(c.subject, `d${i}`);
    await eventually(() => started === 3, 5000, 'handlers started');
    await m.drain();
    expect(finished).toBe(3);
    expect(m.nc.isClosed()).toBe(true);
    const info = await (await bus.jsm()).consumers.info(c.stream, c.durable);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
    expect(info.ack_floor.stream_seq).toBeGreaterThan(0);
  });

  it('recreates the consume loop when the durable consumer is deleted under it', async () => {
    const c = spec();
    const got: string[] = [];
    await bus.consume(c, async (m) => void got.push(dec.decode(m.data)), { expiresMs: 1000 });
    await bus.publish(c.subject, 'before');
    await eventually(() => got.includes('before'), 5000, 'first');
    await (await bus.jsm()).consumers.delete(c.stream, c.durable);
    await new Promise((r) => setTimeout(r, 200));
    await bus.publish(c.subject, 'after');
    await eventually(() => got.includes('after'), 15_000, 'after recreation');
  });
});
