import { createHash } from 'node:crypto';
import type { LoggedChange } from '@fleet/sync-core';
import { FleetError } from '@fleet/errors';
import {
  decodePushBatch,
  encodeJson,
  Headers,
  MAX_APPENDED_EVENT_BYTES,
  MAX_CHANGES_PER_APPENDED_EVENT,
  PROTOCOL_VERSION,
  splitPushBatch,
} from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';
import type { ChangeLog } from '@fleet/server-store';

/** What the processor needs of an inbound push message (a subset of messaging's InboundMessage). */
export interface PushMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Dead-letters one part (a change) of the message with its reason; durable when it resolves. */
  deadLetter(payload: Uint8Array | string, error: FleetError): Promise<void>;
}

/** Publishes to JetStream and resolves on the PubAck (messaging's NatsPublisher fits). */
export interface EventPublisher {
  publish(subject: string, payload: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>> }): Promise<unknown>;
}

export interface PushOutcome {
  readonly agentId: string;
  readonly batchId: string;
  readonly appended: number;
  readonly duplicates: number;
  readonly deadLettered: number;
  readonly events: number;
}

/**
 * Push batch -> change log -> appended events. Transport-independent: the JetStream handler
 * passes each message here and acks when `process` resolves; if it throws, a non-retryable
 * FleetError dead-letters the whole message, anything else is redelivered. Every step is
 * idempotent, so a redelivery after a crash at any point is harmless.
 */
export class PushBatchProcessor {
  constructor(
    private readonly log: ChangeLog,
    private readonly publisher: EventPublisher,
    private readonly subjects: Subjects,
  ) {}

  async process(msg: PushMessage): Promise<PushOutcome> {
    const agentId = this.subjects.agentOfPush(msg.subject);
    if (agentId === undefined) throw new FleetError('FLEET_AUTH_001', `message on ${JSON.stringify(msg.subject)} is not on a push subject`);
    const batch = decodePushBatch(msg.data); // whole message dead-lettered if this throws
    const { accepted, rejected } = splitPushBatch(batch, agentId); // throws FLEET_AUTH_001 for a forged envelope

    const result = await this.log.appendBatch(accepted);

    // After the append: a failure from here on redelivers the message, and the append is then a duplicate.
    for (const r of rejected) await msg.deadLetter(encodeJson(r.value), r.error);
    for (const r of result.rejected) await msg.deadLetter(encodeJson(r.change), r.error);

    const toAnnounce = uniqueBySeq([...result.appended, ...result.duplicates]);
    const events = chunkEvents(toAnnounce);
    for (const changes of events) {
      // The AppendedEvent shape (contracts' AppendedEventSchema; the int test decodes it with decodeAppendedEvent).
      const event = { protocol: PROTOCOL_VERSION, changes };
      await this.publisher.publish(this.subjects.appended, encodeJson(event), {
        msgId: appendedMsgId(changes),
        headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) },
      });
    }
    return {
      agentId,
      batchId: batch.batchId,
      appended: result.appended.length,
      duplicates: result.duplicates.length,
      deadLettered: rejected.length + result.rejected.length,
      events: events.length,
    };
  }
}

function uniqueBySeq(changes: readonly LoggedChange[]): LoggedChange[] {
  const bySeq = new Map<number, LoggedChange>();
  for (const c of changes) bySeq.set(c.seq, c);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** Splits into events within the contract's count and byte limits (a logged change is a little larger than the pushed one). */
export function chunkEvents(changes: readonly LoggedChange[]): LoggedChange[][] {
  const out: LoggedChange[][] = [];
  let cur: LoggedChange[] = [];
  let bytes = 64; // envelope
  for (const c of changes) {
    const size = encodeJson(c).byteLength + 1;
    if (cur.length > 0 && (cur.length >= MAX_CHANGES_PER_APPENDED_EVENT || bytes + size > MAX_APPENDED_EVENT_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 64;
    }
    cur.push(c);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Dedupe id of an appended event: the same set of seqs always gets the same id (a re-emission after
 * a crash is dropped by JetStream within its window), and two different sets with the same bounds
 * (e.g. {3,5} and {3,4,5}) get different ids, so neither is dropped by mistake.
 */
export function appendedMsgId(changes: readonly LoggedChange[]): string {
  const first = changes[0]?.seq ?? 0;
  const last = changes[changes.length - 1]?.seq ?? 0;
  const digest = createHash('sha256').update(changes.map((c) => c.seq).join(',')).digest('hex').slice(0, 16);
  return `appended-${first}-${last}-${digest}`;
}
