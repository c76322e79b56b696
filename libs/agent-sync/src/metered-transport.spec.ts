import { subjects } from '@fleet/contracts';
import { MeteredTransport, wireMessageOf, type WireKind, type WireMessage } from './metered-transport';
import type { SyncTransport, TransportReply } from './transport';
import type { CriticalTransport } from './critical-participant';

const s = subjects('ns1');

describe('wireMessageOf', () => {
  it('names each agent subject by its kind', () => {
    expect(wireMessageOf(s.push('h1'), s)).toBe('push');
    expect(wireMessageOf(s.pull('h1'), s)).toBe('pull');
    expect(wireMessageOf(s.pullKeys('h1'), s)).toBe('pull');
    expect(wireMessageOf(s.origin('h1'), s)).toBe('pull');
    expect(wireMessageOf(s.merkle('h1'), s)).toBe('merkle');
    expect(wireMessageOf(s.notify('h1'), s)).toBe('notify');
    expect(wireMessageOf(s.tpcAgent('h1'), s)).toBe('event');
    expect(wireMessageOf('other.push.h1', s)).toBe('event'); // another namespace's subject
  });
});

describe('MeteredTransport', () => {
  it('reports every payload with its direction, message and kind, and passes everything through', async () => {
    const seen: Array<[string, WireMessage, number, WireKind]> = [];
    let answer: ((d: Uint8Array) => Promise<Uint8Array>) | undefined;
    let nudge: (() => void) | undefined;
    const inner: SyncTransport & CriticalTransport = {
      connect: async () => undefined,
      onStatus: () => () => undefined,
      publish: async () => ({ seq: 9, duplicate: false }),
      request: async () => ({ data: new Uint8Array(40) }) as TransportReply,
      respond: (_subject, handler) => ((answer = handler), () => undefined),
      subscribe: (_subject, onMessage) => ((nudge = onMessage), () => undefined),
      maxPayload: () => 1024,
      close: async () => undefined,
    };
    const t = new MeteredTransport(inner, (d, m, b, k) => void seen.push([d, m, b, k]), 'ns1');
    expect(await t.publish(s.push('h1'), new Uint8Array(100), { msgId: 'b1' })).toEqual({ seq: 9, duplicate: false });
    expect((await t.request(s.pull('h1'), new Uint8Array(10))).data.byteLength).toBe(40);
    t.respond(s.tpcAgent('h1'), async () => new Uint8Array(3));
    await answer?.(new Uint8Array(7));
    let nudged = 0;
    t.subscribe(s.notify('h1'), () => void nudged++);
    nudge?.();
    expect(nudged).toBe(1);
    expect(t.maxPayload()).toBe(1024);
    expect(seen).toEqual([
      ['out', 'push', 100, 'publish'],
      ['out', 'pull', 10, 'request'],
      ['in', 'pull', 40, 'reply'],
      ['in', 'event', 7, 'request'],
      ['out', 'event', 3, 'answer'],
      ['in', 'notify', 0, 'nudge'],
    ]);
  });
});
