/**
 * Streams and durable pull consumers are declared in code and provisioned at start, idempotently:
 * created when missing, updated when the declaration changed, left alone otherwise. Every replica of
 * a service runs this; racing replicas are fine (a lost "create" race falls back to the update path),
 * and they all bind the same durable consumer, so JetStream splits the work between them.
 *
 * Only nats-server 2.9 features are used: one `filter_subject` per consumer, no metadata, no
 * subject transforms.
 */
import { AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamApiError, ReplayPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { ConsumerConfig, ConsumerInfo, JetStreamManager, StreamConfig, StreamInfo } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { FleetError } from '@fleet/errors';
import type { Subjects } from '@fleet/contracts';

export interface StreamSpec {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly description?: string;
  /** Default `limits`: the change log and the push stream are replayable history. */
  readonly retention?: 'limits' | 'workqueue' | 'interest';
  readonly storage?: 'file' | 'memory';
  readonly maxAgeMs?: number;
  readonly maxBytes?: number;
  readonly maxMsgSize?: number;
  readonly maxMsgsPerSubject?: number;
  /** The `Nats-Msg-Id` dedupe window. Default 2 min (the server's default). */
  readonly duplicateWindowMs?: number;
  readonly replicas?: number;
}

export interface ConsumerSpec {
  readonly stream: string;
  /** The durable name: every replica of a service binds the same one and shares its messages. */
  readonly durable: string;
  /** One subject (2.9 has no multiple filter subjects); default: the whole stream. */
  readonly filterSubject?: string;
  readonly description?: string;
  /**
   * Deliveries before a transiently failing message is dead-lettered (FLEET_MSG_001). Default 10;
   * -1 (or 0): unlimited, never dead-lettered for failing. The server's own `max_deliver` is one
   * more (`maxDeliver + 1`; -1 when unlimited): we dead-letter on our last delivery ourselves, so
   * the server never strands a message, and its extra delivery is a backstop for when that
   * dead-letter publish failed.
   */
  readonly maxDeliver?: number;
  /** Redelivery when not acked in time; long handlers call `working()`. Default 30 s. */
  readonly ackWaitMs?: number;
  /**
   * Unacked messages in flight across ALL replicas (server-side). Default 1000. The per-process
   * bound is `concurrency` / `batch` in the consume options.
   */
  readonly maxAckPending?: number;
  /** Where a NEW durable starts: `all` (default) or `new`. Not changeable after creation. */
  readonly deliverPolicy?: 'all' | 'new';
}

export const CONSUMER_DEFAULTS = { maxDeliver: 10, ackWaitMs: 30_000, maxAckPending: 1000 } as const;

/** The dead-letter stream of a namespace: every source's dead letters, kept 30 days by default. */
export function deadLetterStreamSpec(s: Subjects, overrides: Partial<StreamSpec> = {}): StreamSpec {
  return {
    name: s.streams.deadLetter,
    subjects: [s.deadLetterAll],
    description: 'Rejected messages with their reason (Fleet-Reject-* headers); see docs/messaging.md',
    maxAgeMs: 30 * 24 * 3600 * 1000,
    ...overrides,
  };
}

function streamConfig(spec: StreamSpec): Partial<StreamConfig> & { name: string } {
  const cfg: Partial<StreamConfig> & { name: string } = {
    name: spec.name,
    subjects: [...spec.subjects],
    retention: spec.retention === 'workqueue' ? RetentionPolicy.Workqueue : spec.retention === 'interest' ? RetentionPolicy.Interest : RetentionPolicy.Limits,
    storage: spec.storage === 'memory' ? StorageType.Memory : StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: spec.replicas ?? 1,
    max_age: nanos(spec.maxAgeMs ?? 0),
    max_bytes: spec.maxBytes ?? -1,
    max_msg_size: spec.maxMsgSize ?? -1,
    max_msgs_per_subject: spec.maxMsgsPerSubject ?? -1,
    duplicate_window: nanos(spec.duplicateWindowMs ?? 120_000),
  };
  if (spec.description !== undefined) cfg.description = spec.description;
  return cfg;
}

/** The fields we declare that differ from what the server has (empty: nothing to do). */
export function streamDrift(spec: StreamSpec, actual: StreamConfig): string[] {
  const want = streamConfig(spec);
  const drift: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  if (!same([...(want.subjects ?? [])].sort(), [...(actual.subjects ?? [])].sort())) drift.push('subjects');
  for (const k of ['max_age', 'max_bytes', 'max_msg_size', 'max_msgs_per_subject', 'duplicate_window', 'num_replicas', 'description'] as const) {
    if (!same(want[k], actual[k])) drift.push(k);
  }
  return drift;
}

/** Creates the stream, or updates it when its declaration changed. Returns its info. */
export async function provisionStream(jsm: JetStreamManager, spec: StreamSpec): Promise<StreamInfo> {
  try {
    let info: StreamInfo | undefined;
    try {
      info = await jsm.streams.info(spec.name);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (info === undefined) {
      try {
        return await jsm.streams.add(streamConfig(spec));
      } catch (e) {
        // another replica created it between our info and add: fall through to the update path
        if (!isAlreadyExists(e)) throw e;
        info = await jsm.streams.info(spec.name);
      }
    }
    if (streamDrift(spec, info.config).length === 0) return info;
    const { name: _name, retention: _r, storage: _s, ...update } = streamConfig(spec);
    return await jsm.streams.update(spec.name, update);
  } catch (e) {
    throw new FleetError('FLEET_MSG_003', `stream ${spec.name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function consumerConfig(spec: ConsumerSpec): ConsumerConfig {
  const maxDeliver = spec.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver;
  const cfg: ConsumerConfig = {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: spec.deliverPolicy === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    ack_wait: nanos(spec.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs),
    // one more than ours: our last delivery dead-letters and terms; the server's limit is a backstop.
    // Unlimited is -1, which is what the server stores for it (it turns a 0 into -1): sending
    // `maxDeliver + 1` = 0 would read back as drift and update the consumer on every start.
    max_deliver: serverMaxDeliver(maxDeliver),
    max_ack_pending: spec.maxAckPending ?? CONSUMER_DEFAULTS.maxAckPending,
  };
  if (spec.filterSubject !== undefined) cfg.filter_subject = spec.filterSubject;
  if (spec.description !== undefined) cfg.description = spec.description;
  return cfg;
}

/** The server's `max_deliver` for ours: one more (a backstop), or -1 (unlimited) for -1 or 0. */
function serverMaxDeliver(maxDeliver: number): number {
  return maxDeliver > 0 ? maxDeliver + 1 : -1;
}

/** The fields we declare that differ from what the server has (empty: nothing to do). */
export function consumerDrift(spec: ConsumerSpec, actual: ConsumerConfig): string[] {
  const want = consumerConfig(spec);
  const drift: string[] = [];
  // the server reports unlimited as -1 (or 0 / absent from other servers): all the same to us
  const normal = (k: string, v: unknown) => (k === 'max_deliver' && (typeof v !== 'number' || v <= 0) ? -1 : (v ?? ''));
  for (const k of ['ack_wait', 'max_deliver', 'max_ack_pending', 'filter_subject', 'description'] as const) {
    if (normal(k, want[k]) !== normal(k, actual[k])) drift.push(k);
  }
  return drift;
}

/** Creates the durable consumer, or updates it when its declaration changed. */
export async function provisionConsumer(jsm: JetStreamManager, spec: ConsumerSpec): Promise<ConsumerInfo> {
  try {
    let info: ConsumerInfo | undefined;
    try {
      info = await jsm.consumers.info(spec.stream, spec.durable);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (info === undefined) {
      try {
        return await jsm.consumers.add(spec.stream, consumerConfig(spec));
      } catch (e) {
        if (!isAlreadyExists(e)) throw e;
        info = await jsm.consumers.info(spec.stream, spec.durable);
      }
    }
    if (consumerDrift(spec, info.config).length === 0) return info;
    const { ack_wait, max_deliver, max_ack_pending, filter_subject, description } = consumerConfig(spec);
    const update: Record<string, unknown> = { ack_wait, max_deliver, max_ack_pending };
    if (filter_subject !== undefined) update['filter_subject'] = filter_subject;
    if (description !== undefined) update['description'] = description;
    return await jsm.consumers.update(spec.stream, spec.durable, update);
  } catch (e) {
    throw new FleetError('FLEET_MSG_003', `consumer ${spec.stream}/${spec.durable}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function isNotFound(e: unknown): boolean {
  return e instanceof JetStreamApiError ? e.code === 10014 || e.code === 10059 || e.status === 404 : false;
}

function isAlreadyExists(e: unknown): boolean {
  // 10058: stream name in use with a different configuration; 10013 / 10148: consumer name in use
  if (e instanceof JetStreamApiError && [10058, 10013, 10148, 10105].includes(e.code)) return true;
  return e instanceof Error && /already (in use|exists)/i.test(e.message);
}
