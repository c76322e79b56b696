import type { Attributes, Counter, Gauge, Histogram, Meter, UpDownCounter } from '@opentelemetry/api';

/**
 * The metric catalog: every metric the platform records, declared once with its name, kind, unit,
 * description and the attributes (labels) it may carry. Like the error catalog, names are stable:
 * dashboards and alerts depend on them, so a metric is never renamed, only added or deprecated.
 *
 * Naming: OpenTelemetry style, `fleet_sync.<area>.<what>`, lower snake case, dot-separated, the unit
 * in `unit` (UCUM: `s`, `By`, `{change}`) and never in the name. The `fleet_sync` namespace (not a
 * bare `sync.`) keeps us clear of any other `sync` instrumentation in a shared Prometheus. The
 * Prometheus exporter turns dots into underscores and appends `_total` to counters; it does not
 * append the unit (it goes to the `# UNIT` line): `fleet_sync.wire.bytes` is scraped as
 * `fleet_sync_wire_bytes_total` (see docs/observability.md for the table, and `prometheusName`).
 *
 * Attributes have bounded values on purpose. There is no agent id label: a fleet has up to hundreds
 * of thousands of agents, and one time series per agent per metric would sink Prometheus. Per-agent
 * state is summarised by the sync-health score (health-score.ts) and queried from the server's
 * tables, not from labels. An attribute declared with a list of values accepts only those (checked
 * by the compiler); one declared `'string'` accepts a value from a bounded set defined elsewhere
 * (an error code from the catalog, a strategy or collection name from configuration).
 */

export type MetricKind = 'counter' | 'updown' | 'gauge' | 'histogram';

/** An attribute's allowed values, or `'string'` for a bounded set declared elsewhere. */
export type AttributeSpec = readonly string[] | 'string';

export interface MetricDefinition {
  readonly name: string;
  readonly kind: MetricKind;
  readonly unit: string;
  readonly description: string;
  readonly attributes: Readonly<Record<string, AttributeSpec>>;
  /** Histogram bucket boundaries, in `unit`. OTel's defaults are tuned for milliseconds. */
  readonly buckets?: readonly number[];
}

const DIRECTION_SYNC = ['push', 'pull'] as const;
const WIRE_DIRECTION = ['in', 'out'] as const;
/** Where a sync process runs: scraped server services, or agents on managed hosts (pushed via OTLP). */
const SIDE = ['agent', 'server'] as const;

/** Offline agents are common: a change can take days to converge, so the tail buckets reach a day. */
const CONSISTENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400] as const;
/** Automatic resolution takes milliseconds; manual resolution waits for an operator (hours). */
const RESOLVE_BUCKETS = [0.001, 0.01, 0.1, 1, 10, 60, 300, 900, 3600, 14_400, 86_400, 604_800] as const;
const ROUND_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** One append transaction holds the append lock: milliseconds normally, the lock timeout (30 s) at worst. */
const APPEND_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

export const Metrics = {
  // --- lag and queues (mostly agent side) ---
  syncLag: {
    name: 'fleet_sync.lag',
    kind: 'gauge',
    unit: 's',
    description: 'Seconds since the last successful sync in this direction (agent: last acknowledged push or completed pull).',
    attributes: { direction: DIRECTION_SYNC },
  },
  outboxSize: {
    name: 'fleet_sync.outbox.size',
    kind: 'gauge',
    unit: '{change}',
    description: 'Changes waiting in the durable outbox (after coalescing), not yet acknowledged by JetStream.',
    attributes: {},
  },
  outboxOldestAge: {
    name: 'fleet_sync.outbox.oldest_age',
    kind: 'gauge',
    unit: 's',
    description: 'Age of the oldest unacknowledged outbox entry; 0 when the outbox is empty.',
    attributes: {},
  },
  retryQueueSize: {
    name: 'fleet_sync.retry_queue.size',
    kind: 'gauge',
    unit: '{batch}',
    description: 'Batches waiting for a retry after a failed attempt (backoff with jitter).',
    attributes: { side: SIDE },
  },
  failedSyncAttempts: {
    name: 'fleet_sync.attempts.failed',
    kind: 'counter',
    unit: '{attempt}',
    description: 'Sync attempts (push or pull round) that failed; `code` is the FleetError code, or FLEET_INFRA_001 for transport errors.',
    attributes: { direction: DIRECTION_SYNC, code: 'string' },
  },
  roundDuration: {
    name: 'fleet_sync.round.duration',
    kind: 'histogram',
    unit: 's',
    description: 'Duration of one sync operation: a push batch (publish to PubAck) or a pull page (request to applied).',
    attributes: { direction: DIRECTION_SYNC, outcome: ['ok', 'failed'] },
    buckets: ROUND_BUCKETS,
  },
  // --- conflicts ---
  conflictsDetected: {
    name: 'fleet_sync.conflicts.detected',
    kind: 'counter',
    unit: '{conflict}',
    description: 'Concurrent changes detected (version vectors neither before nor after each other), by the collection strategy.',
    attributes: { strategy: ['lww', 'merge', 'manual', 'custom'], side: SIDE },
  },
  conflictsResolved: {
    name: 'fleet_sync.conflicts.resolved',
    kind: 'counter',
    unit: '{conflict}',
    description: 'Conflicts resolved, by strategy; `by` says whether code or an operator decided.',
    attributes: { strategy: ['lww', 'merge', 'manual', 'custom'], by: ['auto', 'operator'] },
  },
  manualQueueLength: {
    name: 'fleet_sync.conflicts.manual_queue.size',
    kind: 'gauge',
    unit: '{conflict}',
    description: 'Conflicts waiting for an operator in the manual queue (each has a provisional winner meanwhile).',
    attributes: {},
  },
  // --- critical operations (two-phase commit, change-log) ---
  criticalDecisions: {
    name: 'fleet_sync.critical.decisions',
    kind: 'counter',
    unit: '{transaction}',
    description: 'Critical operations decided (the commit point of their two-phase commit), by decision; `by` is recovery for a transaction whose coordinator died undecided (presumed abort).',
    attributes: { decision: ['commit', 'abort'], by: ['coordinator', 'recovery'] },
  },
  criticalPhase2Failures: {
    name: 'fleet_sync.critical.phase2_failures',
    kind: 'counter',
    unit: '{message}',
    description: 'Decisions of critical operations not delivered to a participant (retried by recovery until acknowledged); a steady rise is a host in doubt that cannot be reached.',
    attributes: {},
  },
  criticalPruned: {
    name: 'fleet_sync.critical.pruned',
    kind: 'counter',
    unit: '{transaction}',
    description: 'Finished critical operations (every participant acknowledged the decision) deleted from the decision log once older than FLEET_CHANGELOG_CRITICAL_RETENTION, by outcome.',
    attributes: { state: ['committed', 'aborted'] },
  },
  timeToResolve: {
    name: 'fleet_sync.conflicts.time_to_resolve',
    kind: 'histogram',
    unit: 's',
    description: 'Time from a conflict being detected to its resolution being emitted as a change.',
    attributes: { strategy: ['lww', 'merge', 'manual', 'custom'], by: ['auto', 'operator'] },
    buckets: RESOLVE_BUCKETS,
  },
  // --- consistency ---
  timeToConsistency: {
    name: 'fleet_sync.time_to_consistency',
    kind: 'histogram',
    unit: 's',
    description: "Time from a change's origin HLC (wall part) to its being applied where this process applies it (server projection, or an agent pulling it).",
    attributes: { side: SIDE },
    buckets: CONSISTENCY_BUCKETS,
  },
  consistencyViolations: {
    name: 'fleet_sync.consistency.violations',
    kind: 'counter',
    unit: '{bucket}',
    description: 'Merkle anti-entropy buckets found to differ after sync claimed convergence (each one is repaired, and counted).',
    attributes: { side: SIDE },
  },
  // --- throughput ---
  wireBytes: {
    name: 'fleet_sync.wire.bytes',
    kind: 'counter',
    unit: 'By',
    description: 'Payload bytes sent or received over NATS by sync messages, after compression.',
    attributes: { direction: WIRE_DIRECTION, message: ['push', 'pull', 'notify', 'merkle', 'event', 'dead_letter'] },
  },
  changesAppended: {
    name: 'fleet_sync.changes.appended',
    kind: 'counter',
    unit: '{change}',
    description: 'Changes appended to the change log (a new seq); duplicates do not count here.',
    attributes: { origin: ['agent', 'server'] },
  },
  changesIngested: {
    name: 'fleet_sync.changes.ingested',
    kind: 'counter',
    unit: '{change}',
    description: 'Changes taken in by a consumer, by what became of them (change-log dedupe, version-vector classification, agent merge).',
    attributes: { outcome: ['applied', 'duplicate', 'stale', 'conflict', 'rejected'], side: SIDE },
  },
  appendDuration: {
    name: 'fleet_sync.change_log.append.duration',
    kind: 'histogram',
    unit: 's',
    description: 'Duration of one change-log append transaction (lock wait, lookup, insert, projections, commit); appends are serialised, so this bounds throughput.',
    attributes: { outcome: ['ok', 'failed'] },
    buckets: APPEND_BUCKETS,
  },
  // --- server-side SQL writes (conflict-resolver's capture, docs/server-writes.md) ---
  captureRows: {
    name: 'fleet_sync.capture.rows',
    kind: 'counter',
    unit: '{record}',
    description: "Records written in `server_records` and captured from the WAL, per transaction's net effect: `captured` became a server change, `unchanged` needed none, `rejected` was dead-lettered.",
    attributes: { outcome: ['captured', 'unchanged', 'rejected'] },
  },
  captureLag: {
    name: 'fleet_sync.capture.lag',
    kind: 'gauge',
    unit: 'By',
    description: 'WAL the capture slot holds back (the server\'s position minus the slot\'s acknowledged one), sampled every 15 s by each replica with capture on; a steady rise is a capture that does not keep up or does not run, and PostgreSQL keeps that WAL on disk.',
    attributes: {},
  },
  deadLettered: {
    name: 'fleet_sync.dead_lettered',
    kind: 'counter',
    unit: '{message}',
    description: 'Messages moved to the dead-letter stream, by FleetError code and source stream (`change-log`: logged changes the records projection rejected, FLEET_CHANGE_002).',
    attributes: { code: 'string', source: 'string' },
  },
  requestsRefused: {
    name: 'fleet_sync.requests.refused',
    kind: 'counter',
    unit: '{request}',
    description:
      "Requests a service did not handle because of their reply subject (contracts' replyRefusal: not an inbox, or not the requesting agent's): each is a client trying to have an answer published elsewhere; docs/nats-credentials.md.",
    attributes: { service: 'string' },
  },
} as const satisfies Record<string, MetricDefinition>;

export type MetricKey = keyof typeof Metrics;

type ValueOf<S> = S extends readonly (infer V extends string)[] ? V : string;
/** The attribute object a metric accepts: exactly its declared keys, with their allowed values. */
export type MetricAttributesOf<D extends MetricDefinition> = { readonly [K in keyof D['attributes']]: ValueOf<D['attributes'][K]> };

type Args<D extends MetricDefinition> = keyof D['attributes'] extends never
  ? [value: number, attributes?: Record<string, never>]
  : [value: number, attributes: MetricAttributesOf<D>];

/** A recorder per kind: `add` for counters, `record` for gauges and histograms, as in the OTel API. */
export type Recorder<D extends MetricDefinition> = D['kind'] extends 'counter' | 'updown'
  ? { add(...args: Args<D>): void }
  : { record(...args: Args<D>): void };

export type SyncMetrics = { readonly [K in MetricKey]: Recorder<(typeof Metrics)[K]> };

type Instrument = Counter | UpDownCounter | Gauge | Histogram;

function instrument(meter: Meter, d: MetricDefinition): Instrument {
  const options = { unit: d.unit, description: d.description };
  switch (d.kind) {
    case 'counter':
      return meter.createCounter(d.name, options);
    case 'updown':
      return meter.createUpDownCounter(d.name, options);
    case 'gauge':
      return meter.createGauge(d.name, options);
    case 'histogram':
      return meter.createHistogram(d.name, d.buckets ? { ...options, advice: { explicitBucketBoundaries: [...d.buckets] } } : options);
  }
}

/**
 * Creates every instrument of the catalog on `meter`. Counters reject negative values (OTel drops
 * them with a diagnostic), so a bug that decrements a counter shows as a missing point, not a lie.
 */
export function createSyncMetrics(meter: Meter): SyncMetrics {
  const out: Record<string, unknown> = {};
  for (const [key, d] of Object.entries(Metrics) as [MetricKey, MetricDefinition][]) {
    const inst = instrument(meter, d);
    if (d.kind === 'counter' || d.kind === 'updown') {
      const c = inst as Counter;
      out[key] = { add: (value: number, attributes?: Attributes) => c.add(value, attributes) };
    } else {
      const g = inst as Gauge | Histogram;
      out[key] = { record: (value: number, attributes?: Attributes) => g.record(value, attributes) };
    }
  }
  return out as SyncMetrics;
}

/**
 * The series name Prometheus shows for a catalog entry, for docs and alerts. The exporter
 * (`@opentelemetry/exporter-prometheus` 0.2xx) replaces characters Prometheus forbids with `_` and
 * appends `_total` to monotonic sums; it does not append the unit (that goes to `# UNIT`).
 */
export function prometheusName(d: MetricDefinition): string {
  const name = d.name.replace(/[^a-zA-Z0-9_:]/g, '_').replace(/_{2,}/g, '_');
  return d.kind === 'counter' && !name.endsWith('_total') ? `${name}_total` : name;
}

function attributesCell(d: MetricDefinition): string {
  const parts = Object.entries(d.attributes).map(([k, v]) => (v === 'string' ? `\`${k}\`` : `\`${k}\`: ${v.join(', ')}`));
  return parts.length === 0 ? '-' : parts.join('; ');
}

/**
 * The catalog as a Markdown table, for docs/observability.md (a unit test keeps the two equal):
 * `node -r ./scripts/register.js -e "console.log(require('@fleet/observability').metricCatalogMarkdown())"`.
 */
export function metricCatalogMarkdown(): string {
  const rows = (Object.entries(Metrics) as [MetricKey, MetricDefinition][]).map(
    ([key, d]) => `| \`${key}\` | \`${d.name}\` | \`${prometheusName(d)}\` | ${d.kind} | \`${d.unit}\` | ${attributesCell(d)} | ${d.description} |`,
  );
  return ['| key | OTel name | Prometheus series | kind | unit | attributes | description |', '|---|---|---|---|---|---|---|', ...rows].join('\n');
}
