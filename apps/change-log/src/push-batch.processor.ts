import { createHash } from 'node:crypto';
import type { Change, LoggedChange } from '@fleet/sync-core';
import { FleetError, isFleetError } from '@fleet/errors';
import {
  decodePushBatch,
  encodeJson,
  Headers,
  MAX_APPENDED_EVENT_BYTES,
  MAX_CHANGES_PER_APPENDED_EVENT,
  PROTOCOL_VERSION,
  splitPushBatch,
} from '@fleet/contracts';
import type { PushBatch, RejectedChange as RefusedChange, Subjects } from '@fleet/contracts';
import type { ChangeLog, RejectedChange } from '@fleet/server-store';
import { syncMetrics } from '@fleet/observability';
import type { SyncMetrics } from '@fleet/observability';
import { Failpoints } from './failpoints';

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
  /** Appended events published for the whole group this message was appended with. */
  readonly events: number;
}

export interface GroupOutcome<M> {
  /** Messages that were appended (and may be acked), with what became of their changes. */
  readonly outcomes: ReadonlyMap<M, PushOutcome>;
  /**
   * Messages that must not be acked, with why: a non-retryable FleetError (undecodable envelope,
   * forged agent) is dead-lettered whole by the transport; anything else is redelivered.
   */
  readonly failures: ReadonlyMap<M, unknown>;
}

/** Failpoints the processor hits (see failpoints.ts); test-only. */
export const PROCESSOR_FAILPOINTS = ['change-log.after-commit'] as const;

export interface PushBatchProcessorOptions {
  readonly metrics?: SyncMetrics;
  readonly failpoints?: Failpoints;
}

interface Parsed<M> {
  readonly msg: M;
  readonly agentId: string;
  readonly batch: PushBatch;
  readonly accepted: readonly Change[];
  readonly refused: readonly RefusedChange[];
}

/**
 * Push batches -> change log -> appended events. Transport-independent: the JetStream handler
 * passes messages here and acks those that did not fail; a non-retryable FleetError dead-letters
 * the whole message, anything else is redelivered. Every step is idempotent, so a redelivery after
 * a crash at any point is harmless (appends become duplicates, dead letters and events carry
 * stable msg ids).
 *
 * Several push messages may be appended in ONE transaction (`processMany`): appends are serialised
 * by the append lock, so the number of transactions, not the number of rows, bounds throughput.
 * Each message still keeps its own fate: its refused changes are dead-lettered through that
 * message, an undecodable envelope fails only that message, and every message is acked only after
 * the commit (and after its dead letters and the group's events are durable).
 */
export class PushBatchProcessor {
  private readonly metrics: SyncMetrics;
  private readonly failpoints: Failpoints;
  /** The last append handed to the log: the next one starts after it settles. */
  private appendTail: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: ChangeLog,
    private readonly publisher: EventPublisher,
    private readonly subjects: Subjects,
    options: PushBatchProcessorOptions = {},
  ) {
    this.metrics = options.metrics ?? syncMetrics();
    this.failpoints = options.failpoints ?? Failpoints.none;
  }

  /** One message on its own; throws what `processMany` would report as its failure. */
  async process(msg: PushMessage): Promise<PushOutcome> {
    const { outcomes, failures } = await this.processMany([msg]);
    if (failures.has(msg)) throw failures.get(msg);
    return outcomes.get(msg) as PushOutcome;
  }

  /**
   * Appends the changes of every message in one transaction. Throws (every message is then
   * redelivered) when the append or the event publish fails; a message whose own step failed
   * (envelope, dead-letter publish) is reported in `failures`.
   */
  async processMany<M extends PushMessage>(msgs: readonly M[]): Promise<GroupOutcome<M>> {
    const failures = new Map<M, unknown>();
    const parsed: Parsed<M>[] = [];
    for (const msg of msgs) {
      try {
        const agentId = this.subjects.agentOfPush(msg.subject);
        if (agentId === undefined) throw new FleetError('FLEET_AUTH_001', `message on ${JSON.stringify(msg.subject)} is not on a push subject`);
        const batch = decodePushBatch(msg.data); // whole message dead-lettered if this throws
        const { accepted, rejected } = splitPushBatch(batch, agentId); // throws FLEET_AUTH_001 for a forged envelope
        parsed.push({ msg, agentId, batch, accepted, refused: rejected });
      } catch (e) {
        failures.set(msg, e);
        // The transport dead-letters a message that failed with a non-retryable FleetError.
        if (isFleetError(e) && !e.retryable) this.metrics.deadLettered.add(1, { code: e.code, source: this.subjects.streams.push });
      }
    }
    if (parsed.length === 0) return { outcomes: new Map(), failures };

    const all = parsed.flatMap((p) => p.accepted);
    let started = performance.now();
    let result;
    // Groups in flight (batch concurrency) append in the order they were handed here, which is the
    // order they were fetched as long as nothing above awaits (keep it so): each append starts once the
    // one before has settled. Left to race for the append lock, a later push of an agent could be
    // logged before an earlier one (a record's changes out of their origin order). Decoding still
    // overlaps the append before it. The duration is the append's own, from when its turn came.
    const append = this.appendTail.then(() => {
      started = performance.now();
      return this.log.appendBatch(all);
    });
    this.appendTail = append.then(
      () => undefined,
      () => undefined,
    );
    try {
      result = await append;
    } catch (e) {
      this.metrics.appendDuration.record((performance.now() - started) / 1000, { outcome: 'failed' });
      throw e;
    }
    this.metrics.appendDuration.record((performance.now() - started) / 1000, { outcome: 'ok' });
    // Committed. A crash from here until the ack redelivers the messages; their changes are then duplicates.
    await this.failpoints.hit('change-log.after-commit');

    this.metrics.changesAppended.add(result.appended.length, { origin: 'agent' });
    this.metrics.changesIngested.add(result.appended.length, { outcome: 'applied', side: 'server' });
    this.metrics.changesIngested.add(result.duplicates.length, { outcome: 'duplicate', side: 'server' });

    const refusedByLog = new Map<Change, RejectedChange>(result.rejected.map((r) => [r.change, r]));
    const appendedIds = new Set(result.appended.map((c) => c.changeId));
    const counted = new Set<string>();
    const outcomes = new Map<M, PushOutcome>();
    for (const p of parsed) {
      let appended = 0;
      let duplicates = 0;
      let deadLettered = 0;
      try {
        for (const r of p.refused) {
          await p.msg.deadLetter(encodeJson(r.value), r.error);
          this.countDeadLetter(r.error);
          deadLettered++;
        }
        for (const c of p.accepted) {
          const refused = refusedByLog.get(c);
          if (refused !== undefined) {
            await p.msg.deadLetter(encodeJson(refused.change), refused.error);
            this.countDeadLetter(refused.error);
            deadLettered++;
            continue;
          }
          // appendBatch classifies in input order: the first occurrence of a new id is the appended one.
          const id = c.changeId.toLowerCase();
          if (appendedIds.has(id) && !counted.has(id)) {
            counted.add(id);
            appended++;
          } else duplicates++;
        }
      } catch (e) {
        failures.set(p.msg, e); // the dead-letter publish failed: redeliver this message only
        continue;
      }
      outcomes.set(p.msg, { agentId: p.agentId, batchId: p.batch.batchId, appended, duplicates, deadLettered, events: 0 });
    }

    const events = encodeAppendedEvents(uniqueBySeq([...result.appended, ...result.duplicates]));
    // Published together (one connection keeps their order); throws -> every message redelivered.
    await Promise.all(
      events.map(({ changes, payload }) =>
        this.publisher.publish(this.subjects.appended, payload, {
          msgId: appendedMsgId(changes),
          headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) },
        }),
      ),
    );
    for (const [m, o] of outcomes) outcomes.set(m, { ...o, events: events.length });
    return { outcomes, failures };
  }

  private countDeadLetter(error: FleetError): void {
    this.metrics.deadLettered.add(1, { code: error.code, source: this.subjects.streams.push });
    this.metrics.changesIngested.add(1, { outcome: 'rejected', side: 'server' });
  }
}

function uniqueBySeq(changes: readonly LoggedChange[]): LoggedChange[] {
  const bySeq = new Map<number, LoggedChange>();
  for (const c of changes) bySeq.set(c.seq, c);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/** Splits into events within the contract's count and byte limits (a logged change is a little larger than the pushed one). */
export function chunkEvents(changes: readonly LoggedChange[]): LoggedChange[][] {
  return encodeAppendedEvents(changes).map((e) => e.changes);
}

const utf8 = new TextEncoder();

/**
 * `chunkEvents`, with each event's payload: the AppendedEvent shape (contracts' AppendedEventSchema;
 * the int tests decode it with decodeAppendedEvent), byte for byte what
 * `encodeJson({ protocol, changes })` writes, but each change is serialised once (it was twice: once
 * to measure it, once in the event).
 */
export function encodeAppendedEvents(changes: readonly LoggedChange[]): { changes: LoggedChange[]; payload: Uint8Array }[] {
  const out: { changes: LoggedChange[]; payload: Uint8Array }[] = [];
  let cur: LoggedChange[] = [];
  let parts: string[] = [];
  let bytes = 64; // envelope
  const flush = () => {
    out.push({ changes: cur, payload: utf8.encode(`{"protocol":${JSON.stringify(PROTOCOL_VERSION)},"changes":[${parts.join(',')}]}`) });
    cur = [];
    parts = [];
    bytes = 64;
  };
  for (const c of changes) {
    const json = JSON.stringify(c);
    const size = Buffer.byteLength(json, 'utf8') + 1;
    if (cur.length > 0 && (cur.length >= MAX_CHANGES_PER_APPENDED_EVENT || bytes + size > MAX_APPENDED_EVENT_BYTES)) flush();
    cur.push(c);
    parts.push(json);
    bytes += size;
  }
  if (cur.length > 0) flush();
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
