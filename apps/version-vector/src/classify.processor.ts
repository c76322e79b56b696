import { Logger } from '@nestjs/common';
import { chunkEvents, decodeAppendedRefs, encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import type { ChangeIgnored, ChangesIgnoredEvent, ConflictDetected, ConflictsDetectedEvent, RecordApplied, RecordsAppliedEvent, Subjects } from '@fleet/contracts';
import { decodeHlc } from '@fleet/sync-core';
import type { LoggedChange, RecordRef } from '@fleet/sync-core';
import { headerValue, retryPublish } from '@fleet/messaging';
import type { DeadLetterOrigin } from '@fleet/messaging';
import type { ErrorCode } from '@fleet/errors';
import type { SyncMetrics } from '@fleet/observability';
import { refKey } from '@fleet/server-store';
import type { DetectedConflict, ProjectionBatchResult, RecordsProjection } from '@fleet/server-store';
import type { DataSource } from 'typeorm';

/** What the processor needs of an inbound message (a subset of messaging's InboundMessage). */
export interface AppendedMessage {
  readonly data: Uint8Array;
}

export interface EventPublisher {
  publish(subject: string, payload: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>> }): Promise<unknown>;
  /** Copies a rejected change to the dead-letter stream (messaging's `NatsPublisher.deadLetter`; deduplicated by origin). */
  deadLetter(payload: Uint8Array, code: ErrorCode, reason: string, origin: DeadLetterOrigin): Promise<unknown>;
}

/**
 * Where a change rejected by the projection is said to come from in its dead letter: the change log
 * (PostgreSQL, not a stream), at its seq. One dead letter per logged change, however often it is folded.
 */
export const CHANGE_LOG_SOURCE = 'change-log';

/**
 * Appended events -> records projection -> classification events. Transport-independent: the
 * controller hands a batch of messages here and acks those not in `failures` once it resolves.
 * Every step is idempotent: the projection applies each record's changes exactly once in log order
 * (a redelivered event finds them applied), and events carry stable msg ids.
 */
export class ClassifyProcessor {
  private readonly logger = new Logger('classify');

  constructor(
    private readonly ds: DataSource,
    private readonly projection: RecordsProjection,
    private readonly publisher: EventPublisher,
    private readonly subjects: Subjects,
    private readonly metrics: SyncMetrics,
    private readonly now: () => number = () => Date.now(),
  ) {}

  async processMany<M extends AppendedMessage>(msgs: readonly M[]): Promise<{ result: ProjectionBatchResult; failures: Map<M, unknown> }> {
    const failures = new Map<M, unknown>();
    // Only which records: the projection reads their changes from the log (decodeAppendedRefs).
    const changes: RecordRef[] = [];
    for (const m of msgs) {
      try {
        changes.push(...decodeAppendedRefs(m.data).changes);
      } catch (e) {
        failures.set(m, e); // non-retryable FleetError: that message alone is dead-lettered
      }
    }
    const result = await this.projection.applyLogged(this.ds, changes);
    await this.publish(result);
    this.record(result);
    return { result, failures };
  }

  /**
   * The log sweep: applies whatever the log holds after the durable cursor H (a change whose
   * `appended` event was lost included), in transactions of `limit` logged changes, until caught up;
   * publishes the same events as the event path. Returns how many changes it scanned, or `undefined`
   * when another replica holds the sweep lock. Correctness does not depend on events, only latency.
   */
  async sweep(limit = 1000): Promise<{ scanned: number; applied: number; conflicts: number; cursor: number } | undefined> {
    let scanned = 0;
    let applied = 0;
    let conflicts = 0;
    for (;;) {
      const r = await this.projection.sweep(this.ds, { limit });
      if (r === undefined) return scanned === 0 ? undefined : { scanned, applied, conflicts, cursor: -1 };
      scanned += r.scanned;
      applied += r.result.classified.length;
      conflicts += r.result.conflicts.length;
      await this.publish(r.result);
      this.record(r.result);
      if (!r.hasMore) return { scanned, applied, conflicts, cursor: r.to };
    }
  }

  /**
   * One event per subject per projection transaction (chunked by `chunkEvents`), not one per record
   * or change: publishing (PubAck round trips, spans) was the largest JavaScript cost per conflict.
   * Msg ids are stable: revs, seqs and conflict ids are assigned once, so a chunk is named by its
   * first and last one (a re-publish of the same chunk dedupes).
   */
  private async publish(r: ProjectionBatchResult): Promise<void> {
    const s = this.subjects;
    const headers = { [Headers.Protocol]: String(PROTOCOL_VERSION) };
    const out: Promise<unknown>[] = [];
    const applied: RecordApplied[] = r.records.map((rec) => ({
      seq: rec.seq,
      rev: rec.rev,
      scope: rec.ref.scope,
      collection: rec.ref.collection,
      key: rec.ref.key,
      hash: rec.hash,
      status: rec.status,
      conflicted: rec.conflicted,
      vv: rec.vv,
    }));
    for (const c of chunkEvents(applied, (records): RecordsAppliedEvent => ({ protocol: PROTOCOL_VERSION, records }))) {
      out.push(this.publishOne(s.classified('applied'), c.payload, { msgId: `applied-${c.items[0]?.rev}-${c.items[c.items.length - 1]?.rev}`, headers }));
    }
    const vvOf = new Map(r.records.map((x) => [refKey(x.ref), x.vv]));
    const ignored: ChangeIgnored[] = [];
    for (const c of r.classified) {
      if (c.outcome !== 'stale' && c.outcome !== 'duplicate' && c.outcome !== 'rejected') continue;
      if (c.rejection !== undefined) out.push(this.deadLetter(c.change, c.rejection));
      ignored.push({
        seq: c.change.seq,
        changeId: c.change.changeId,
        origin: c.change.origin,
        scope: c.change.scope,
        collection: c.change.collection,
        key: c.change.key,
        outcome: c.outcome,
        changeVv: c.change.vv,
        recordVv: vvOf.get(refKey(c.change)) ?? c.change.vv,
        ...(c.rejection === undefined ? {} : { reason: headerValue(c.rejection) }),
      });
    }
    for (const c of chunkEvents(ignored, (changes): ChangesIgnoredEvent => ({ protocol: PROTOCOL_VERSION, changes }))) {
      out.push(this.publishOne(s.classified('stale'), c.payload, { msgId: `ignored-${c.items[0]?.seq}-${c.items[c.items.length - 1]?.seq}`, headers }));
    }
    const detected: ConflictDetected[] = r.conflicts.map((c) => ({ conflictId: c.id, conflictKey: c.conflict.id, seq: c.seq, ref: c.ref, strategy: c.strategy }));
    for (const c of chunkEvents(detected, (conflicts): ConflictsDetectedEvent => ({ protocol: PROTOCOL_VERSION, conflicts }))) {
      out.push(this.publishOne(s.classified('conflict'), c.payload, { msgId: `conflicts-${c.items[0]?.conflictId}-${c.items[c.items.length - 1]?.conflictId}`, headers }));
    }
    await Promise.all(out);
  }

  /**
   * A change the projection rejected (a reused dot) stays in the log, changes nothing, and is copied to
   * the dead-letter stream with the reason, for the operator (the batch around it goes on). Its dead
   * letter is named by its seq: a re-fold (a redelivered event, a rebuild) stores it once.
   */
  private deadLetter(change: LoggedChange, reason: string): Promise<unknown> {
    this.logger.warn(`change ${change.changeId} (seq ${change.seq}, ${change.origin}#${change.originSeq}) rejected: ${reason}`);
    this.metrics.deadLettered.add(1, { code: 'FLEET_CHANGE_002', source: CHANGE_LOG_SOURCE });
    const origin: DeadLetterOrigin = { subject: this.subjects.push(change.origin), stream: CHANGE_LOG_SOURCE, streamSequence: change.seq, deliveryCount: 1 };
    return retryPublish(() => this.publisher.deadLetter(encodeJson(change), 'FLEET_CHANGE_002', reason, origin));
  }

  /** Retried (bounded, backoff, same msg id: JetStream dedupes) before the batch fails. */
  private publishOne(subject: string, payload: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>> }): Promise<unknown> {
    return retryPublish(() => this.publisher.publish(subject, payload, opts));
  }

  private record(r: ProjectionBatchResult): void {
    const conflictSeqs = new Set(r.conflicts.map((c) => c.seq));
    const now = this.now();
    // Counters summed per attribute set before they are added: one `add` per outcome, not per change
    // (each call hashes its attributes; per change it was a visible share of the service's CPU).
    const ingested = new Map<'applied' | 'conflict' | 'stale' | 'duplicate' | 'rejected', number>();
    for (const c of r.classified) {
      const outcome = conflictSeqs.has(c.change.seq) ? 'conflict' : c.outcome === 'stale' || c.outcome === 'duplicate' || c.outcome === 'rejected' ? c.outcome : 'applied';
      ingested.set(outcome, (ingested.get(outcome) ?? 0) + 1);
      if (outcome === 'applied' || outcome === 'conflict') this.metrics.timeToConsistency.record(Math.max(0, now - decodeHlc(c.change.hlc).wallMs) / 1000, { side: 'server' });
    }
    for (const [outcome, n] of ingested) this.metrics.changesIngested.add(n, { outcome, side: 'server' });
    const detected = new Map<DetectedConflict['strategy'], number>();
    for (const c of r.conflicts) detected.set(c.strategy, (detected.get(c.strategy) ?? 0) + 1);
    for (const [strategy, n] of detected) this.metrics.conflictsDetected.add(n, { strategy, side: 'server' });
  }
}
