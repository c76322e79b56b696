import { subjects, type Subjects } from '@fleet/contracts';
import type { CriticalTransport } from './critical-participant';
import type { SyncTransport, TransportReply } from './transport';

/** What a sync message is, for `fleet_sync.wire.bytes{message}`: by the subject's kind. */
export type WireMessage = 'push' | 'pull' | 'notify' | 'merkle' | 'event';

/** How a payload moved: a JetStream publish, a request, its reply, an answer this agent gave, or a nudge. */
export type WireKind = 'publish' | 'request' | 'reply' | 'answer' | 'nudge';

/** Called for every payload the agent puts on or takes off the wire (payload bytes, after compression). */
export type WireMeter = (direction: 'in' | 'out', message: WireMessage, bytes: number, kind: WireKind) => void;

/** What an agent subject carries, for `fleet_sync.wire.bytes{message}` (contracts' `agentSubjectKind`); critical operations and anything else: `event`. */
export function wireMessageOf(subject: string, s: Subjects): WireMessage {
  switch (s.agentSubjectKind(subject)) {
    case 'push':
      return 'push';
    case 'pull':
    case 'pullkeys':
    case 'origin':
      return 'pull';
    case 'merkle':
      return 'merkle';
    case 'notify':
      return 'notify';
    default:
      return 'event';
  }
}

/**
 * A transport that reports every payload's size to `meter` and otherwise is `inner`: the agent's
 * `fleet_sync.wire.bytes` (agent run) and the fleet harness's byte counts (demo, benchmarks) both
 * come from it.
 */
export class MeteredTransport implements SyncTransport, CriticalTransport {
  private readonly s: Subjects;

  constructor(
    private readonly inner: SyncTransport & CriticalTransport,
    private readonly meter: WireMeter,
    namespace: string,
  ) {
    this.s = subjects(namespace);
  }

  connect(): Promise<void> {
    return this.inner.connect();
  }

  onStatus(listener: (online: boolean) => void): () => void {
    return this.inner.onStatus(listener);
  }

  publish(subject: string, data: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>>; timeoutMs?: number }): Promise<{ seq: number; duplicate: boolean }> {
    this.meter('out', wireMessageOf(subject, this.s), data.byteLength, 'publish');
    return this.inner.publish(subject, data, opts);
  }

  async request(subject: string, data: Uint8Array, opts?: { timeoutMs?: number; headers?: Readonly<Record<string, string>> }): Promise<TransportReply> {
    const message = wireMessageOf(subject, this.s);
    this.meter('out', message, data.byteLength, 'request');
    const reply = await this.inner.request(subject, data, opts);
    this.meter('in', message, reply.data.byteLength, 'reply');
    return reply;
  }

  respond(subject: string, handler: (data: Uint8Array) => Promise<Uint8Array>): () => void {
    const message = wireMessageOf(subject, this.s);
    return this.inner.respond(subject, async (data) => {
      this.meter('in', message, data.byteLength, 'request');
      const out = await handler(data);
      this.meter('out', message, out.byteLength, 'answer');
      return out;
    });
  }

  subscribe(subject: string, onMessage: () => void): () => void {
    const message = wireMessageOf(subject, this.s);
    return this.inner.subscribe(subject, () => {
      this.meter('in', message, 0, 'nudge');
      onMessage();
    });
  }

  maxPayload(): number | undefined {
    return this.inner.maxPayload();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
