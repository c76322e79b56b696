import { decodeAppendedEvent, encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import type { ChangeIgnoredEvent, ConflictDetectedEvent, RecordAppliedEvent, Subjects } from '@fleet/contracts';
import { decodeHlc } from '@fleet/sync-core';
import type { LoggedChange } from '@fleet/sync-core';
import type { SyncMetrics } from '@fleet/observability';
import type { ProjectionBatchResult, RecordsProjection } from '@fleet/server-store';
import type { DataSource } from 'typeorm';

/** What the processor needs of an inbound message (a subset of messaging's InboundMessage). */
export interface AppendedMessage {
  readonly data: Uint8Array;
}

export interface EventPublisher {
  publish(subject: string, payload: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>> }): Promise<unknown>;
}

/**
 * Appended events -> records projection -> classification events. Transport-independent: the
 * controller hands a batch of messages here and acks those not in `failures` once it resolves.
 * Every step is idempotent: the projection applies each record's changes exactly once in log order
 * (a redelivered event finds them applied), and events carry stable msg ids.
 */
export class ClassifyProcessor {
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
    const changes: LoggedChange[] = [];
    for (const m of msgs) {
      try {
        changes.push(...decodeAppendedEvent(m.data).changes);
      } catch (e) {
        failures.set(m, e); // non-retryable FleetError: that message alone is dead-lettered
      }
    }
    const result = await this.projection.applyLogged(this.ds, changes);
    await this.publish(result);
    this.record(result);
    return { result, failures };
  }

  private async publish(r: ProjectionBatchResult): Promise<void> {
    const s = this.subjects;
    const headers = { [Headers.Protocol]: String(PROTOCOL_VERSION) };
    const out: Promise<unknown>[] = [];
    for (const rec of r.records) {
      const e: RecordAppliedEvent = {
        protocol: PROTOCOL_VERSION,
        seq: rec.seq,
        rev: rec.rev,
        scope: rec.ref.scope,
        collection: rec.ref.collection,
        key: rec.ref.key,
        hash: rec.hash,
        status: rec.status,
        conflicted: rec.conflicted,
        vv: rec.vv,
      };
      out.push(this.publisher.publish(s.classified('applied'), encodeJson(e), { msgId: `applied-${rec.rev}`, headers }));
    }
    for (const c of r.classified) {
      if (c.outcome !== 'stale' && c.outcome !== 'duplicate') continue;
      const e: ChangeIgnoredEvent = {
        protocol: PROTOCOL_VERSION,
        seq: c.change.seq,
        changeId: c.change.changeId,
        origin: c.change.origin,
        scope: c.change.scope,
        collection: c.change.collection,
        key: c.change.key,
        outcome: c.outcome,
        changeVv: c.change.vv,
        recordVv: r.records.find((x) => x.ref.scope === c.change.scope && x.ref.collection === c.change.collection && x.ref.key === c.change.key)?.vv ?? c.change.vv,
      };
      out.push(this.publisher.publish(s.classified('stale'), encodeJson(e), { msgId: `ignored-${c.change.seq}`, headers }));
    }
    for (const c of r.conflicts) {
      const e: ConflictDetectedEvent = { protocol: PROTOCOL_VERSION, conflictId: c.id, seq: c.seq, ref: c.ref, strategy: c.strategy, conflict: c.conflict as ConflictDetectedEvent['conflict'] };
      out.push(this.publisher.publish(s.classified('conflict'), encodeJson(e), { msgId: `conflict-${c.id}`, headers }));
    }
    await Promise.all(out);
  }

  private record(r: ProjectionBatchResult): void {
    const conflictSeqs = new Set(r.conflicts.map((c) => c.seq));
    const now = this.now();
    for (const c of r.classified) {
      const outcome = conflictSeqs.has(c.change.seq) ? 'conflict' : c.outcome === 'stale' || c.outcome === 'duplicate' ? c.outcome : 'applied';
      this.metrics.changesIngested.add(1, { outcome, side: 'server' });
      if (outcome === 'applied' || outcome === 'conflict') this.metrics.timeToConsistency.record(Math.max(0, now - decodeHlc(c.change.hlc).wallMs) / 1000, { side: 'server' });
    }
    for (const c of r.conflicts) this.metrics.conflictsDetected.add(1, { strategy: c.strategy, side: 'server' });
  }
}
