import { createHash } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import {
  chunkEvents,
  decodeConflictsDetectedEvent,
  encodeJson,
  Headers,
  MAX_CHANGES_PER_APPENDED_EVENT,
  PROTOCOL_VERSION,
} from '@fleet/contracts';
import type { ConflictItem, ConflictResolved, ConflictsResolvedEvent, ConflictStatus, Subjects, WireManualChoice } from '@fleet/contracts';
import { DEFAULT_PUBLISH_RETRY, retryPublish, type PublishRetryPolicy } from '@fleet/messaging';
import type { SyncMetrics } from '@fleet/observability';
import type { ConflictDecision, ConflictDesk, ConflictEntry } from '@fleet/server-store';
import type { LoggedChange } from '@fleet/sync-core';

export interface Publisher {
  publish(subject: string, payload: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>> }): Promise<unknown>;
}

/** What the service needs of an inbound conflict event. */
export interface ConflictMessage {
  readonly data: Uint8Array;
  readonly deliveryCount: number;
}

/**
 * Announces server changes on `<ns>.log.appended` exactly as the change log does (same msg-id scheme: a
 * re-publish dedupes). Each chunk is retried (`retryPublish`: bounded, with backoff, same msg id) before
 * the failure is reported; a change whose announcement is lost anyway is still projected by
 * version-vector's log sweep (docs/conflicts.md): the event only makes it quicker.
 */
export async function publishAppended(publisher: Publisher, s: Subjects, changes: readonly LoggedChange[], retry: PublishRetryPolicy = DEFAULT_PUBLISH_RETRY): Promise<void> {
  const sorted = [...changes].sort((a, b) => a.seq - b.seq);
  for (let i = 0; i < sorted.length; i += MAX_CHANGES_PER_APPENDED_EVENT) {
    const chunk = sorted.slice(i, i + MAX_CHANGES_PER_APPENDED_EVENT);
    const first = chunk[0]?.seq ?? 0;
    const last = chunk[chunk.length - 1]?.seq ?? 0;
    const digest = createHash('sha256').update(chunk.map((c) => c.seq).join(',')).digest('hex').slice(0, 16);
    const payload = encodeJson({ protocol: PROTOCOL_VERSION, changes: chunk });
    const opts = { msgId: `appended-${first}-${last}-${digest}`, headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) } };
    await retryPublish(() => publisher.publish(s.appended, payload, opts), retry);
  }
}

export function toWireItem(e: ConflictEntry): ConflictItem {
  return {
    id: e.id,
    ref: e.ref,
    seq: e.seq,
    strategy: e.strategy,
    status: e.status,
    conflict: e.conflict as ConflictItem['conflict'],
    outcome: e.outcome as ConflictItem['outcome'],
    resolvedBy: e.resolvedBy,
    resolutionChangeId: e.resolutionChangeId,
    detectedAt: e.detectedAt.toISOString(),
    resolvedAt: e.resolvedAt === null ? null : e.resolvedAt.toISOString(),
  };
}

/**
 * The conflict-resolver's work, transport-independent: decide detected conflicts (the strategy's
 * resolution as a new change, or the manual queue), the operator's list / show / resolve, the sweep
 * of open conflicts whose event was lost, and the metrics. The decisions themselves are
 * `ConflictDesk`'s (libs/server-store), made under the `ServerWriter`'s per-record lock.
 */
export class ResolverService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('ResolverService');
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(
    private readonly desk: ConflictDesk,
    private readonly publisher: () => Publisher,
    private readonly s: Subjects,
    private readonly metrics: SyncMetrics,
    private readonly sweep: { readonly intervalMs: number; readonly ageMs: number },
    private readonly now: () => number = () => Date.now(),
    /** Conflicts decided in one ServerWriter transaction (one append lock, one multi-row append, one publish). */
    private readonly txnConflicts = 1000,
  ) {}

  onApplicationBootstrap(): void {
    if (this.sweep.intervalMs > 0) {
      this.sweepTimer = setInterval(() => {
        this.sweeping ??= this.sweepOnce()
          .then(() => undefined)
          .catch((e: unknown) => this.logger.warn(`sweep: ${String(e)}`))
          .finally(() => (this.sweeping = undefined));
      }, this.sweep.intervalMs);
      this.sweepTimer.unref();
    }
    void this.updateQueueGauge();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    await this.sweeping;
  }

  /**
   * A batch of conflict events (each lists the conflicts of one projection transaction): decode (an
   * undecodable one fails alone), decide in transactions of up to `txnConflicts` conflicts, publish.
   */
  async onConflictEvents<M extends ConflictMessage>(msgs: readonly M[]): Promise<Map<M, unknown>> {
    const failures = new Map<M, unknown>();
    const ids: number[] = [];
    let redelivered = false;
    for (const m of msgs) {
      try {
        for (const c of decodeConflictsDetectedEvent(m.data).conflicts) ids.push(c.conflictId);
        if (m.deliveryCount > 1) redelivered = true;
      } catch (e) {
        failures.set(m, e);
      }
    }
    for (let i = 0; i < ids.length; i += this.txnConflicts) await this.decide(ids.slice(i, i + this.txnConflicts), redelivered);
    return failures;
  }

  /** Open conflicts older than the sweep age: their event was lost (a crash between commit and publish). */
  async sweepOnce(): Promise<number> {
    const ids = await this.desk.staleOpenIds(this.sweep.ageMs);
    if (ids.length > 0) {
      this.logger.warn(`sweep: ${ids.length} open conflict(s) without a decision, deciding now`);
      await this.decide(ids, true);
    }
    return ids.length;
  }

  private async decide(ids: readonly number[], republish: boolean): Promise<void> {
    const { decisions, appended, decidedBefore } = await this.desk.resolveOpen(ids);
    // Committed: from here, failures redeliver the events, which find the rows decided (and republish below).
    await publishAppended(this.publisher(), this.s, appended);
    if (republish && decidedBefore.length > 0) await publishAppended(this.publisher(), this.s, await this.desk.changesById(decidedBefore));
    const seqOf = new Map(appended.map((c) => [c.changeId, c.seq]));
    await this.announce(decisions.map((d) => [d, seqOf.get(d.change?.changeId ?? '')] as const));
    const now = this.now();
    for (const d of decisions) {
      if (d.status !== 'auto-resolved') continue;
      this.metrics.conflictsResolved.add(d.conflictIds.length, { strategy: d.strategy, by: 'auto' });
      for (const at of d.detectedAt) this.metrics.timeToResolve.record(Math.max(0, now - at.getTime()) / 1000, { strategy: d.strategy, by: 'auto' });
    }
    if (decisions.some((d) => d.status !== 'auto-resolved')) await this.updateQueueGauge();
  }

  /** One `ConflictsResolvedEvent` per decided transaction (chunked); the msg id names the chunk's rows and statuses, so a re-announce dedupes. */
  private async announce(decided: readonly (readonly [ConflictDecision, number | undefined])[]): Promise<void> {
    const items: ConflictResolved[] = decided.map(([d, seq]) => ({
      conflictIds: [...d.conflictIds],
      ref: d.ref,
      strategy: d.strategy,
      status: d.status,
      ...(d.change === undefined ? {} : { resolutionChangeId: d.change.changeId }),
      ...(seq === undefined ? {} : { resolutionSeq: seq }),
    }));
    const headers = { [Headers.Protocol]: String(PROTOCOL_VERSION) };
    await Promise.all(
      chunkEvents(items, (decisions): ConflictsResolvedEvent => ({ protocol: PROTOCOL_VERSION, decisions })).map((c) => {
        const digest = createHash('sha256')
          .update(c.items.map((i) => `${i.status}:${i.conflictIds.join('.')}`).join(','))
          .digest('hex')
          .slice(0, 16);
        return this.publisher().publish(this.s.resolved, c.payload, { msgId: `resolved-${c.items[0]?.conflictIds[0]}-${digest}`, headers });
      }),
    );
  }

  async list(q: { status?: ConflictStatus; after?: number; limit?: number }): Promise<{ protocol: typeof PROTOCOL_VERSION; items: ConflictItem[]; nextCursor: number; hasMore: boolean }> {
    const page = await this.desk.list(q);
    return { protocol: PROTOCOL_VERSION, items: page.items.map(toWireItem), nextCursor: page.nextCursor, hasMore: page.hasMore };
  }

  async show(id: number): Promise<{ protocol: typeof PROTOCOL_VERSION; item: ConflictItem }> {
    return { protocol: PROTOCOL_VERSION, item: toWireItem(await this.desk.find(id)) };
  }

  /**
   * An operator's decision. Committed first, then announced; if the announcement still fails after the
   * publisher's retries, the answer says so (`announced: false`; HTTP 202) instead of an error: the
   * decision stands (a retry would get FLEET_CONFLICT_002), and version-vector's log sweep projects it.
   */
  async resolve(id: number, choice: WireManualChoice): Promise<{ protocol: typeof PROTOCOL_VERSION; item: ConflictItem; change: LoggedChange; announced: boolean }> {
    try {
      const { entry, change, detectedAt } = await this.desk.resolveByOperator(id, choice);
      this.metrics.conflictsResolved.add(1, { strategy: entry.strategy, by: 'operator' });
      this.metrics.timeToResolve.record(Math.max(0, this.now() - detectedAt.getTime()) / 1000, { strategy: entry.strategy, by: 'operator' });
      let announced = true;
      try {
        await publishAppended(this.publisher(), this.s, [change]);
        await this.announce([[{ ref: entry.ref, strategy: entry.strategy, status: 'resolved', conflictIds: [id], detectedAt: [detectedAt], change }, change.seq]]);
      } catch (e) {
        // Whatever failed (even a refusal that will not pass on a retry), the decision is committed:
        // answering an error would have the operator resolve again and be refused (FLEET_CONFLICT_002).
        announced = false;
        this.logger.warn(`conflict ${id}: resolution ${change.changeId} (seq ${change.seq}) committed; its announcement failed after retries: ${String(e)}; the log sweep projects it`);
      }
      return { protocol: PROTOCOL_VERSION, item: toWireItem(entry), change, announced };
    } finally {
      await this.updateQueueGauge();
    }
  }

  private async updateQueueGauge(): Promise<void> {
    try {
      this.metrics.manualQueueLength.record(await this.desk.pendingCount());
    } catch (e) {
      this.logger.warn(`manual queue gauge: ${String(e)}`);
    }
  }
}
