import { FleetError } from '@fleet/errors';
import { Headers } from '@fleet/contracts';
import { deadLetterHeaders, deadLetterMsgId, headerValue, nakDelayMs, settle } from './policy';
import { streamDrift, consumerDrift } from './provision';
import { Semaphore } from './semaphore';

const noJitter = { baseMs: 100, maxMs: 1000, jitter: 0 };

describe('nakDelayMs', () => {
  it('doubles with the delivery count up to the cap', () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => nakDelayMs(n, noJitter))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });
  it('jitter only shortens the delay, within the fraction', () => {
    const p = { baseMs: 1000, maxMs: 10_000, jitter: 0.2 };
    expect(nakDelayMs(1, p, () => 0)).toBe(1000);
    expect(nakDelayMs(1, p, () => 0.999999)).toBe(800);
  });
  it('treats nonsense counts as a first delivery', () => {
    expect(nakDelayMs(0, noJitter)).toBe(100);
    expect(nakDelayMs(-3, noJitter)).toBe(100);
  });
});

describe('settle', () => {
  const table: Array<[string, unknown, number, number, string]> = [
    ['success', undefined, 1, 5, 'ack'],
    ['permanent FleetError on first delivery', new FleetError('FLEET_DECODE_002'), 1, 5, 'dead-letter:FLEET_DECODE_002'],
    ['forged origin', new FleetError('FLEET_AUTH_001'), 3, 5, 'dead-letter:FLEET_AUTH_001'],
    ['transient FleetError', new FleetError('FLEET_INFRA_001'), 1, 5, 'nak'],
    ['unclassified error is assumed transient', new TypeError('x'), 2, 5, 'nak'],
    ['transient at max_deliver', new FleetError('FLEET_INFRA_001'), 5, 5, 'dead-letter:FLEET_MSG_001'],
    ['unclassified past max_deliver', new Error('boom'), 6, 5, 'dead-letter:FLEET_MSG_001'],
    ['no max_deliver: retry forever', new Error('boom'), 99, 0, 'nak'],
  ];
  it.each(table)('%s', (_name, error, count, max, expected) => {
    const s = settle(error, count, max, noJitter);
    expect(s.kind === 'dead-letter' ? `${s.kind}:${s.code}` : s.kind).toBe(expected);
  });
  it('naks with the backoff of the delivery count', () => {
    expect(settle(new Error('x'), 3, 10, noJitter)).toEqual({ kind: 'nak', delayMs: 400, reason: 'Error: x' });
  });
  it('keeps the last failure in the reason of a max_deliver dead letter', () => {
    const s = settle(new FleetError('FLEET_INFRA_001', 'pg down'), 4, 4, noJitter);
    expect(s.kind === 'dead-letter' && s.reason).toBe('after 4 deliveries: FLEET_INFRA_001: dependency unavailable: pg down');
  });
});

describe('deadLetterHeaders', () => {
  const origin = { subject: 'sync.push.a1', stream: 'SYNC_PUSH', streamSequence: 42, deliveryCount: 2 };
  it('keeps the original headers (trace context) and drops JetStream instructions', () => {
    const h = deadLetterHeaders(
      [
        ['traceparent', ['00-abc-def-01']],
        ['Fleet-Protocol', ['1']],
        ['Nats-Msg-Id', ['chg-1']],
        ['Nats-Expected-Last-Subject-Sequence', ['3']],
        [Headers.RejectCode, ['OLD']],
      ],
      'FLEET_DECODE_002',
      'bad\nline',
      origin,
    );
    expect(h).toEqual([
      ['traceparent', '00-abc-def-01'],
      ['Fleet-Protocol', '1'],
      [Headers.RejectCode, 'FLEET_DECODE_002'],
      [Headers.RejectReason, 'bad line'],
      [Headers.OriginalSubject, 'sync.push.a1'],
      [Headers.OriginalStream, 'SYNC_PUSH'],
      [Headers.OriginalSequence, '42'],
      [Headers.DeliveryCount, '2'],
    ]);
  });
  it('bounds a header value', () => {
    expect(headerValue('x'.repeat(5000)).length).toBe(1024);
  });
  it('dedupe ids distinguish parts', () => {
    expect(new Set([deadLetterMsgId('S', 1), deadLetterMsgId('S', 1, 0), deadLetterMsgId('S', 1, 1), deadLetterMsgId('S', 2)]).size).toBe(4);
  });
});

describe('drift', () => {
  it('sees nothing to change when the server matches the declaration', () => {
    const spec = { name: 'S', subjects: ['a.>', 'b.>'] };
    const actual = { subjects: ['b.>', 'a.>'], max_age: 0, max_bytes: -1, max_msg_size: -1, max_msgs_per_subject: -1, duplicate_window: 120e9, num_replicas: 1 };
    expect(streamDrift(spec, actual as never)).toEqual([]);
    expect(streamDrift({ ...spec, maxAgeMs: 1000 }, actual as never)).toEqual(['max_age']);
  });
  it('compares the consumer fields we own', () => {
    const c = { stream: 'S', durable: 'd', maxDeliver: 3 };
    const actual = { ack_wait: 30e9, max_deliver: 4, max_ack_pending: 1000 };
    expect(consumerDrift(c, actual as never)).toEqual([]);
    expect(consumerDrift({ ...c, maxDeliver: 5 }, actual as never)).toEqual(['max_deliver']);
  });
});

describe('Semaphore', () => {
  it('never runs more than its size', async () => {
    const sem = new Semaphore(3);
    let now = 0;
    let max = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        sem.run(async () => {
          max = Math.max(max, ++now);
          await new Promise((r) => setTimeout(r, 1));
          now--;
        }),
      ),
    );
    expect(max).toBe(3);
    await sem.idle();
  });
});
