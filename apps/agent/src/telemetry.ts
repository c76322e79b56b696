/**
 * The agent's metrics (docs/observability.md, "Agent"): what `agent run` records in the catalog's
 * agent-side instruments, from the sync manager's reports, the store's outbox and sync state, and the
 * bytes the transport moves.
 *
 * - `fleet_sync.outbox.size`, `.outbox.oldest_age`: the store's outbox, sampled;
 * - `fleet_sync.lag{direction}`: pull: seconds since the last pull applied; push: 0 while nothing
 *   waits, else seconds since the last acknowledged push (or since the oldest waiting change, if no
 *   push was acknowledged since it was made), so an idle host is not "behind";
 * - `fleet_sync.retry_queue.size{side=agent}`: 1 while the agent backs off after a failure (it has one
 *   batch or round in flight at a time), else 0;
 * - `fleet_sync.attempts.failed{direction, code}`: each failed push or pull (the sync manager's `failed`);
 * - `fleet_sync.round.duration{direction, outcome}`: each push batch (publish to PubAck) and pull page
 *   (request to applied), from the sync manager's `operation` reports;
 * - `fleet_sync.wire.bytes{direction, message}`: every payload, through `MeteredTransport`.
 */
import type { WireMessage } from '@fleet/agent-sync';
import type { SyncMetrics } from '@fleet/observability';

/** What the recorder reads of the store. */
export interface AgentMetricsStore {
  outboxStats(): { readonly size: number; readonly oldestAt: number | null };
  syncState(): { readonly lastPullAt: number | null };
}

/** The sync manager's reports the recorder uses (a subset of `SyncManagerOptions['onReport']`'s). */
export type AgentReport =
  | { readonly type: 'transition'; readonly from: string; readonly to: string }
  | { readonly type: 'synced'; readonly kind: 'reconnect' | 'sync' | 'push' }
  | { readonly type: 'failed'; readonly op: 'pull' | 'push' | 'verify'; readonly error: string }
  | { readonly type: 'operation'; readonly op: 'pull' | 'push' | 'verify'; readonly outcome: 'ok' | 'failed'; readonly ms: number }
  | { readonly type: string };

/** The FleetError code a failure's text names, or FLEET_INFRA_001 (a transport error). */
export function failureCode(error: string): string {
  return /\bFLEET_[A-Z]+_\d{3}\b/.exec(error)?.[0] ?? 'FLEET_INFRA_001';
}

export class AgentMetrics {
  private lastPushAckAt: number | undefined;
  private backingOff = false;

  constructor(
    private readonly metrics: SyncMetrics,
    private readonly store: AgentMetricsStore,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** A sync manager report. */
  report(r: AgentReport): void {
    if (r.type === 'transition' && 'to' in r) {
      this.backingOff = r.to === 'backoff';
    } else if (r.type === 'operation' && 'ms' in r && r.op !== 'verify') {
      this.metrics.roundDuration.record(r.ms / 1000, { direction: r.op, outcome: r.outcome });
      if (r.op === 'push' && r.outcome === 'ok') this.lastPushAckAt = this.now();
    } else if (r.type === 'failed' && 'op' in r && r.op !== 'verify') {
      this.metrics.failedSyncAttempts.add(1, { direction: r.op, code: failureCode(r.error) });
    }
  }

  /** Payload bytes moved (MeteredTransport's meter). Critical-operation traffic counts as `event`. */
  wire(direction: 'in' | 'out', message: WireMessage, bytes: number): void {
    if (bytes > 0) this.metrics.wireBytes.add(bytes, { direction, message });
  }

  /** The gauges, from the store: call every few seconds. */
  sample(): void {
    const now = this.now();
    const outbox = this.store.outboxStats();
    this.metrics.outboxSize.record(outbox.size);
    this.metrics.outboxOldestAge.record(outbox.oldestAt === null ? 0 : Math.max(0, (now - outbox.oldestAt) / 1000));
    const { lastPullAt } = this.store.syncState();
    if (lastPullAt !== null) this.metrics.syncLag.record(Math.max(0, (now - lastPullAt) / 1000), { direction: 'pull' });
    let pushLag = 0;
    if (outbox.size > 0 && outbox.oldestAt !== null) {
      const since = this.lastPushAckAt !== undefined && this.lastPushAckAt > outbox.oldestAt ? this.lastPushAckAt : outbox.oldestAt;
      pushLag = Math.max(0, (now - since) / 1000);
    }
    this.metrics.syncLag.record(pushLag, { direction: 'push' });
    this.metrics.retryQueueSize.record(this.backingOff ? 1 : 0, { side: 'agent' });
  }
}
