/**
 * The agent's side of the wire, pure: building requests and reading replies with the schemas of
 * `@fleet/contracts`. No I/O (lint keeps this folder to the core's rules): the adapter un-gzips and
 * moves the bytes; time comes in as a parameter.
 */
import { FleetError, isErrorCode } from '@fleet/errors';
import {
  decodePullReply,
  decodeReply,
  encodeJson,
  fromWireRecord,
  HEALTH_REPORT_PROTOCOL_VERSION,
  MAX_CHANGES_PER_PUSH,
  MAX_PULL_LIMIT,
  MAX_PULL_RESPONSE_BYTES,
  MAX_PUSH_BATCH_BYTES,
  MAX_REPORTED_AGE_MS,
  MAX_REPORTED_COUNT,
  MAX_SNAPSHOT_RESPONSE_BYTES,
  MerkleResponseSchema,
  PROTOCOL_VERSION,
  PullKeysResponseSchema,
  PullResponseSchema,
} from '@fleet/contracts';
import type { ErrorReply, MerkleRequest, PullCursor, PullKeysRequest, PullRequest, PushHealth, Reply, WireRecord } from '@fleet/contracts';
import { batchIdOf, planPushBatch, visibleHash } from '@fleet/sync-core';
import type { Change, MerkleEntry, MerkleVerifyRequest, MerkleVerifyResponse, RecordRef, RemoteRecord } from '@fleet/sync-core';

/** Room kept for the batch envelope (protocol, batchId, agentId, sentAt, brackets). */
const ENVELOPE_BYTES = 512;

export interface PushBatchMessage {
  readonly batchId: string;
  readonly changeIds: readonly string[];
  readonly payload: Uint8Array;
}

/**
 * The next push batch from the outbox rows (already in originSeq order, as `peekOutbox` returns
 * them): at most MAX_CHANGES_PER_PUSH, at most `maxPayload` bytes (the server's `max_payload`
 * minus header room, never above MAX_PUSH_BATCH_BYTES). `undefined` when there is nothing to send.
 * Throws FLEET_DECODE_004 for a single change too large to ever send (it would block the queue;
 * contracts' field caps make it a bug).
 */
export function buildPushBatch(agentId: string, outbox: readonly Change[], sentAtMs: number, maxPayload: number = MAX_PUSH_BATCH_BYTES): PushBatchMessage | undefined {
  const maxBytes = Math.min(MAX_PUSH_BATCH_BYTES, maxPayload) - ENVELOPE_BYTES;
  const plan = planPushBatch(outbox, { maxChanges: MAX_CHANGES_PER_PUSH, maxBytes, sizeOf: (c) => encodeJson(c).byteLength });
  if (plan.oversized !== undefined) {
    throw new FleetError('FLEET_DECODE_004', `change ${plan.oversized.changeId} alone is over the push budget of ${maxBytes} bytes`, {
      details: { changeId: plan.oversized.changeId },
    });
  }
  if (plan.changes.length === 0) return undefined;
  const changeIds = plan.changes.map((c) => c.changeId);
  const batchId = batchIdOf(changeIds);
  const payload = encodeJson({ protocol: PROTOCOL_VERSION, batchId, agentId, sentAt: Math.max(0, Math.floor(sentAtMs)), changes: plan.changes });
  return { batchId, changeIds, payload };
}

/** What the agent store tells of its outbox (agent-store's `outboxStats`, the part the push-side report uses). */
export interface OutboxFigures {
  /** Unsent changes queued. */
  readonly size: number;
  /** How long the oldest has waited (ms), or null when the outbox is empty. */
  readonly oldestAgeMs: number | null;
  /** Queued changes with at least one failed push attempt. */
  readonly failures: number;
  /** Failed push attempts recorded since the last acknowledged batch (the store keeps it across restarts). */
  readonly consecutiveFailures: number;
}

const count = (n: number): number => (Number.isFinite(n) && n > 0 ? Math.min(MAX_REPORTED_COUNT, Math.floor(n)) : 0);

/**
 * The push side a pull request reports (`health`, protocol 2): the outbox's figures, and the push attempts
 * failed in a row, the larger of the store's count and `failedInARow` (the sync manager's own, which also
 * counts a push that failed before a batch was published). Every number is clamped to what the schema
 * takes (0 for anything not a number), so a report never makes the pull it rides on fail to decode.
 */
export function pushHealthOf(o: OutboxFigures, failedInARow: number): PushHealth {
  const outbox = count(o.size);
  const age = outbox === 0 || o.oldestAgeMs === null || !Number.isFinite(o.oldestAgeMs) || o.oldestAgeMs <= 0 ? 0 : Math.min(MAX_REPORTED_AGE_MS, Math.floor(o.oldestAgeMs)); // `<= 0`: -0 too (JSON sends it as 0)
  return { outbox, oldestUnsentAgeMs: age, retryQueue: Math.min(outbox, count(o.failures)), failedPushes: count(Math.max(count(o.consecutiveFailures), count(failedInARow))) };
}

/**
 * From cursor 0 (a fresh store) the agent asks for a snapshot: current states in bulk, then the log
 * (docs/delta-calculator.md). With `health` the request is written at protocol 2 (the version that has
 * it), without it at 1, so a server that speaks only 1 still reads every pull that carries no report.
 */
export function buildPullRequest(agentId: string, scopes: readonly string[], cursor: PullCursor, limit?: number, ownFrom?: number, health?: PushHealth): PullRequest {
  return {
    protocol: health === undefined ? PROTOCOL_VERSION : HEALTH_REPORT_PROTOCOL_VERSION,
    agentId,
    scopes: [...scopes],
    cursor,
    ...(limit === undefined ? {} : { limit: Math.min(limit, MAX_PULL_LIMIT) }),
    acceptEncodings: ['gzip', 'identity'],
    ...(cursor === 0 ? { snapshot: true } : {}),
    ...(ownFrom === undefined || !Number.isSafeInteger(ownFrom) || ownFrom < 1 ? {} : { ownFrom }),
    ...(health === undefined ? {} : { health }),
  };
}

export interface PullPage {
  readonly records: readonly RemoteRecord[];
  readonly nextCursor: PullCursor;
  readonly hasMore: boolean;
  readonly fullResync: boolean;
}

/** A FleetError for an error reply, keeping the remote code when this build knows it. */
export function remoteError(error: ErrorReply['error'], what: string): FleetError {
  const code = isErrorCode(error.code) ? error.code : 'FLEET_MSG_004';
  return new FleetError(code, `${what}: ${error.message}`, { details: { remote: true, remoteCode: error.code } });
}

function unwrap<T>(reply: Reply<T>, what: string): T {
  if (!reply.ok) throw remoteError(reply.error, what);
  return reply.value;
}

const toRemote = (state: ReturnType<typeof fromWireRecord>): RemoteRecord => ({ scope: state.ref.scope, collection: state.ref.collection, key: state.ref.key, state });

/** Decodes a pull reply (bytes after the encoding was undone). */
export function decodePullPage(bytes: Uint8Array): PullPage {
  const r = unwrap(decodeReply(PullResponseSchema, bytes, MAX_PULL_RESPONSE_BYTES), 'pull');
  return { records: r.records.map((w) => toRemote(fromWireRecord(w))), nextCursor: r.nextCursor, hasMore: r.hasMore, fullResync: r.fullResync ?? false };
}

/** A pull page as checked wire records (for the store's `applyRemoteWire`, which does not check them again). */
export interface PullWirePage {
  readonly records: readonly WireRecord[];
  readonly nextCursor: PullCursor;
  readonly hasMore: boolean;
  readonly fullResync: boolean;
  /** A page of the snapshot asked for from cursor 0. */
  readonly snapshot: boolean;
}

/**
 * Decodes a pull reply (bytes after the encoding was undone), keeping the records in their wire form.
 * Snapshot pages may be up to MAX_SNAPSHOT_RESPONSE_BYTES; any other page is still held to MAX_PULL_RESPONSE_BYTES.
 */
export function decodePullWirePage(bytes: Uint8Array): PullWirePage {
  const r = unwrap(decodePullReply(bytes, MAX_SNAPSHOT_RESPONSE_BYTES), 'pull');
  return { records: r.records, nextCursor: r.nextCursor, hasMore: r.hasMore, fullResync: r.fullResync ?? false, snapshot: r.snapshot ?? false };
}

/** The decoded states of wire records. */
export function remoteRecordsOf(records: readonly WireRecord[]): RemoteRecord[] {
  return records.map((w) => toRemote(fromWireRecord(w)));
}

export function buildPullKeysRequest(agentId: string, records: readonly RecordRef[]): PullKeysRequest {
  return {
    protocol: PROTOCOL_VERSION,
    agentId,
    records: records.map((r) => ({ scope: r.scope, collection: r.collection, key: r.key })),
    acceptEncodings: ['gzip', 'identity'],
  };
}

export function decodePullKeysPage(bytes: Uint8Array): { records: RemoteRecord[]; answered: number } {
  const r = unwrap(decodeReply(PullKeysResponseSchema, bytes, MAX_PULL_RESPONSE_BYTES), 'pull keys');
  return { records: r.records.map((w) => toRemote(fromWireRecord(w))), answered: r.answered };
}

export function buildMerkleRequest(agentId: string, scope: string, collection: string, msg: MerkleVerifyRequest): MerkleRequest {
  return { protocol: PROTOCOL_VERSION, agentId, scope, collection, msg: msg as MerkleRequest['msg'] };
}

export function decodeMerkleReply(bytes: Uint8Array): MerkleVerifyResponse {
  return unwrap(decodeReply(MerkleResponseSchema, bytes, MAX_PULL_RESPONSE_BYTES), 'merkle').msg as MerkleVerifyResponse;
}

/** The hash every deleted (or absent) record has: the server's trees hold live records only. */
export const DELETED_RECORD_HASH = visibleHash(null);

/**
 * The entries to build the agent's tree from. The delta calculator's trees hold VISIBLE records only
 * (a tombstone the agent never saw is not a difference), while the local store lists deleted records
 * too: drop them here, or every local tombstone would read as "missing there".
 */
export function liveMerkleEntries(entries: Iterable<MerkleEntry>): MerkleEntry[] {
  const out: MerkleEntry[] = [];
  for (const e of entries) if (e.recordHash !== DELETED_RECORD_HASH) out.push(e);
  return out;
}

/** Splits keys into pull-keys requests the server will take (count cap). */
export function chunk<T>(items: readonly T[], size: number = MAX_PULL_LIMIT): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
