/**
 * The messages between agents and services, one schema each, with their decoders. Each
 * decoder takes the raw bytes and returns a typed value or throws a FleetError (see codec.ts).
 */
import { z } from 'zod';
import type { Change } from '@fleet/sync-core';
import { FleetError, isFleetError } from '@fleet/errors';
import { checkProtocol, decodeJson, decodeMessage, decodeWith, OVERSIZED } from './codec';
import {
  AgentIdSchema,
  ChangeIdSchema,
  CollectionSchema,
  decodeChange,
  KeySchema,
  LoggedChangeSchema,
  NonNegativeIntSchema,
  PositiveIntSchema,
  ProtocolSchema,
  ScopeSchema,
  UuidSchema,
} from './change';
import {
  MAX_APPENDED_EVENT_BYTES,
  MAX_CHANGES_PER_APPENDED_EVENT,
  MAX_CHANGES_PER_PUSH,
  MAX_DEAD_LETTER_BYTES,
  MAX_ERROR_REPLY_BYTES,
  MAX_PULL_LIMIT,
  MAX_PULL_REQUEST_BYTES,
  MAX_PULL_RESPONSE_BYTES,
  MAX_PULL_SCOPES,
  MAX_PUSH_BATCH_BYTES,
  MAX_REASON_LENGTH,
  MAX_REPORTED_AGE_MS,
  MAX_REPORTED_COUNT,
} from './limits';
import { HEALTH_REPORT_PROTOCOL_VERSION, PROTOCOL_VERSION } from './protocol';
import { assertOriginMatches, assertScopeWritableBy } from './scope';
import { wireRecordsSchema, WireRecordsSchema } from './wire-record';

const ReasonSchema = z
  .string({ error: 'expected a string' })
  .max(MAX_REASON_LENGTH, { error: `longer than ${MAX_REASON_LENGTH} characters` });

/** `FLEET_<AREA>_<NNN>`. Not checked against this build's catalog: a newer peer may send a code we do not know yet. */
export const ErrorCodeSchema = z.string({ error: 'expected a string' }).regex(/^FLEET_[A-Z]+_\d{3}$/, { error: 'expected an error code FLEET_<AREA>_<NNN>' });

function strictlyAscendingSeq(changes: readonly { seq: number }[], ctx: z.core.$RefinementCtx): void {
  for (let i = 1; i < changes.length; i++) {
    const prev = changes[i - 1];
    const cur = changes[i];
    if (prev !== undefined && cur !== undefined && !(cur.seq > prev.seq)) {
      ctx.addIssue({ code: 'custom', path: ['changes', i, 'seq'], message: `expected seq above ${prev.seq} (changes in ascending seq order)` });
    }
  }
}

// --- push: agent -> server, subject `<ns>.push.<agentId>` (JetStream) ---

/**
 * A batch from an agent's outbox. The envelope is decoded first and each change separately
 * (`splitPushBatch`), so one bad change is dead-lettered alone while the rest are appended.
 * The outbox row of every change leaves the agent only after the PubAck of its batch.
 */
export const PushBatchSchema = z.strictObject({
  protocol: ProtocolSchema,
  /** Dedupe id of this publish (`Nats-Msg-Id`): a retried publish of the same batch is dropped by JetStream. */
  batchId: UuidSchema,
  /** Must equal the agent id of the push subject (checked by `splitPushBatch`). */
  agentId: AgentIdSchema,
  /** The agent's wall clock when it sent, epoch ms. Informational (lag metrics); never used for ordering. */
  sentAt: NonNegativeIntSchema.exactOptional(),
  changes: z
    .array(z.unknown(), { error: 'expected an array' })
    .min(1, { error: 'a batch carries at least one change' })
    .max(MAX_CHANGES_PER_PUSH, { error: `more than ${MAX_CHANGES_PER_PUSH} changes` }),
});
export type PushBatch = z.output<typeof PushBatchSchema>;

/** Decodes a push batch's envelope; its `changes` are still unknown (see `splitPushBatch`). */
export function decodePushBatch(bytes: Uint8Array): PushBatch {
  return decodeMessage(PushBatchSchema, bytes, MAX_PUSH_BATCH_BYTES);
}

/** One change of a batch that was refused, with why; the caller dead-letters it. */
export interface RejectedChange {
  readonly index: number;
  /** The change as received, for the dead letter. */
  readonly value: unknown;
  readonly error: FleetError;
}

/**
 * Decodes each change of a batch published on `subjectAgentId`'s push subject and checks its
 * authority (origin is that agent: FLEET_AUTH_001; scope is its host scope: FLEET_AUTH_003).
 * Throws FLEET_AUTH_001 for the whole batch if the envelope names another agent.
 */
export function splitPushBatch(batch: PushBatch, subjectAgentId: string): { accepted: Change[]; rejected: RejectedChange[] } {
  if (batch.agentId !== subjectAgentId) {
    throw new FleetError('FLEET_AUTH_001', `batch ${batch.batchId} names agent ${JSON.stringify(batch.agentId)} but was published by ${JSON.stringify(subjectAgentId)}`, {
      details: { batchId: batch.batchId, agentId: batch.agentId, subjectAgentId },
    });
  }
  const accepted: Change[] = [];
  const rejected: RejectedChange[] = [];
  batch.changes.forEach((value, index) => {
    try {
      const change = decodeChange(value, ['changes', index]);
      assertOriginMatches(change, subjectAgentId);
      assertScopeWritableBy(change, subjectAgentId);
      accepted.push(change);
    } catch (error) {
      if (!isFleetError(error)) throw error;
      rejected.push({ index, value, error });
    }
  });
  return { accepted, rejected };
}

// --- appended: change-log -> other services, subject `<ns>.log.appended` ---

/** Changes the change log appended, in seq order (one event per appended batch). */
export const AppendedEventSchema = z
  .strictObject({
    protocol: ProtocolSchema,
    changes: z
      .array(LoggedChangeSchema, { error: 'expected an array' })
      .min(1, { error: 'an event carries at least one change' })
      .max(MAX_CHANGES_PER_APPENDED_EVENT, { error: `more than ${MAX_CHANGES_PER_APPENDED_EVENT} changes` }),
  })
  .superRefine((e, ctx) => strictlyAscendingSeq(e.changes, ctx));
export type AppendedEvent = z.output<typeof AppendedEventSchema>;

export function decodeAppendedEvent(bytes: Uint8Array): AppendedEvent {
  return decodeMessage(AppendedEventSchema, bytes, MAX_APPENDED_EVENT_BYTES);
}

// --- pull: request/reply on `<ns>.pull.<agentId>` ---

/** Payload encodings, named in the `Fleet-Encoding` header (absent = identity). */
export const PAYLOAD_ENCODINGS = ['identity', 'gzip'] as const;
export type PayloadEncoding = (typeof PAYLOAD_ENCODINGS)[number];
export const PayloadEncodingSchema = z.enum(PAYLOAD_ENCODINGS, { error: `expected one of ${PAYLOAD_ENCODINGS.join(', ')}` });

/** The value of a `Fleet-Encoding` header; FLEET_DECODE_001 for an encoding this build cannot undo. */
export function decodeEncodingHeader(value: string | undefined): PayloadEncoding {
  if (value === undefined || value === '') return 'identity';
  const r = PayloadEncodingSchema.safeParse(value);
  if (!r.success) throw new FleetError('FLEET_DECODE_001', `unknown payload encoding ${JSON.stringify(value)}`);
  return r.data;
}

/**
 * A pull cursor. A NUMBER is a change-log `seq`: everything up to it has been delivered. A STRING is a
 * position inside a full resync (`r.<seq>.<after>`) or a snapshot (`s.<seq>.<after>`, the bulk first
 * pull an agent asks for with `snapshot: true`): the agent is being sent the server's record states of
 * its scopes as of at least log position `<seq>`, in (scope, collection, key) order, and `<after>`
 * (base64url of the JSON `[scope, collection, key]`, empty at the start) is the last record sent.
 * When the states are exhausted the server continues with the log after `<seq>`, as a number again.
 * Agents store the cursor as given and never look inside.
 */
// The position is base64url of the JSON of (scope, collection, key): a 512-byte key of control characters
// is 3 KiB of JSON escapes, so the bound is the worst case (4,478 characters), not a typical size.
export const RESYNC_CURSOR = /^([rs])\.(0|[1-9][0-9]{0,15})\.([A-Za-z0-9_-]{0,4608})$/;
export const PullCursorSchema = z.union([NonNegativeIntSchema, z.string().regex(RESYNC_CURSOR, { error: 'expected a cursor returned by the server' })], {
  error: 'expected a cursor: a non-negative integer or a string returned by the server',
});
export type PullCursor = z.output<typeof PullCursorSchema>;

/** `resync`: the log cursor was older than the retention horizon; `snapshot`: the agent asked for a bulk first pull. */
export type StateStreamKind = 'resync' | 'snapshot';

export type ParsedCursor =
  | { readonly kind: 'log'; readonly seq: number }
  | { readonly kind: 'resync'; readonly mode: StateStreamKind; readonly at: number; readonly after?: { readonly scope: string; readonly collection: string; readonly key: string } };

/** Reads a cursor; FLEET_DECODE_002 if a resync cursor's position does not decode. */
export function parsePullCursor(c: PullCursor): ParsedCursor {
  if (typeof c === 'number') return { kind: 'log', seq: c };
  const m = RESYNC_CURSOR.exec(c);
  if (m === null) throw new FleetError('FLEET_DECODE_002', `cursor: ${JSON.stringify(c.slice(0, 64))} is not a cursor`);
  const mode: StateStreamKind = m[1] === 's' ? 'snapshot' : 'resync';
  const at = Number(m[2]);
  if (!Number.isSafeInteger(at)) throw new FleetError('FLEET_DECODE_002', 'cursor: position out of range');
  if (m[3] === '') return { kind: 'resync', mode, at };
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(m[3] as string, 'base64url').toString('utf8'));
  } catch {
    throw new FleetError('FLEET_DECODE_002', 'cursor: position does not decode');
  }
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'string')) throw new FleetError('FLEET_DECODE_002', 'cursor: position does not decode');
  return { kind: 'resync', mode, at, after: { scope: v[0] as string, collection: v[1] as string, key: v[2] as string } };
}

export function resyncCursor(at: number, after?: { readonly scope: string; readonly collection: string; readonly key: string }, mode: StateStreamKind = 'resync'): string {
  return `${mode === 'snapshot' ? 's' : 'r'}.${at}.${after === undefined ? '' : Buffer.from(JSON.stringify([after.scope, after.collection, after.key]), 'utf8').toString('base64url')}`;
}

const AcceptEncodingsSchema = z.array(PayloadEncodingSchema, { error: 'expected an array' }).max(PAYLOAD_ENCODINGS.length, { error: 'too many encodings' });

const ReportedCountSchema = z.int({ error: 'expected an integer' }).min(0, { error: 'expected at least 0' }).max(MAX_REPORTED_COUNT, { error: `expected at most ${MAX_REPORTED_COUNT}` });

/**
 * The agent's push side as it stands when it sends a pull (protocol 2): what the server cannot see
 * otherwise, since a push that never reached it leaves no trace there. Ages, not times: they are
 * measured on the agent's one clock, so a clock set wrong against the server's does not skew them.
 */
export const PushHealthSchema = z.strictObject({
  /** Unsent changes queued in the outbox (after coalescing). */
  outbox: ReportedCountSchema,
  /** How long the oldest of them has waited, in ms (0: the outbox is empty). */
  oldestUnsentAgeMs: z.int({ error: 'expected an integer' }).min(0, { error: 'expected at least 0' }).max(MAX_REPORTED_AGE_MS, { error: `expected at most ${MAX_REPORTED_AGE_MS}` }),
  /** Of those, the changes a push already failed to deliver at least once (waiting for a retry). */
  retryQueue: ReportedCountSchema,
  /** Push attempts that failed in a row since the last acknowledged one (0: the last one went through). */
  failedPushes: ReportedCountSchema,
});
export type PushHealth = z.output<typeof PushHealthSchema>;

export const PullRequestSchema = z
  .strictObject({
    protocol: ProtocolSchema,
    /** Must equal the agent id of the pull subject (the delta calculator checks it). */
    agentId: AgentIdSchema,
    /** Scopes to read: the agent's host scope, `fleet`, its groups. No duplicates. Keep the same set between pages of one cursor. */
    scopes: z
      .array(ScopeSchema, { error: 'expected an array of scopes' })
      .min(1, { error: 'at least one scope' })
      .max(MAX_PULL_SCOPES, { error: `more than ${MAX_PULL_SCOPES} scopes` })
      .refine((s) => new Set(s).size === s.length, { error: 'scopes are listed twice' }),
    /** The `nextCursor` of the previous response. 0 = from the start. */
    cursor: PullCursorSchema,
    /** At most this many log entries (or resync records) are read for the page (the server may return fewer, and caps it). */
    limit: z.int({ error: 'expected an integer' }).min(1, { error: 'expected at least 1' }).max(MAX_PULL_LIMIT, { error: `expected at most ${MAX_PULL_LIMIT}` }).exactOptional(),
    /** Encodings the agent can undo; the server compresses a large response only with one of them. */
    acceptEncodings: AcceptEncodingsSchema.exactOptional(),
    /**
     * With cursor 0: send the current record STATES of the scopes (key order, from the server's
     * projection) rather than folding the whole change log, then continue with the log after the
     * position the snapshot covers. For a fresh agent (or one that lost its data). Pages carry
     * `snapshot: true` and `s.` cursors. Ignored for any other cursor.
     */
    snapshot: z.boolean({ error: 'expected a boolean' }).exactOptional(),
    /**
     * The agent's store holds every change of the agent's own origin with `originSeq >= ownFrom` (it
     * made them: the first sequence it assigned itself, see docs/agent.md): log pages leave those out
     * rather than echo them back. Absent: nothing is left out. Whole states (snapshot, resync) are sent
     * as they are.
     */
    ownFrom: z.int({ error: 'expected an integer' }).min(1, { error: 'expected at least 1' }).max(Number.MAX_SAFE_INTEGER).exactOptional(),
    /**
     * Protocol 2: the agent's push side (`PushHealthSchema`), for the server's sync-health score. Absent:
     * not reported (an agent of protocol 1, or one whose store cannot tell); the pull is the same.
     */
    health: PushHealthSchema.exactOptional(),
  })
  .superRefine((r, ctx) => {
    if (r.health !== undefined && r.protocol < HEALTH_REPORT_PROTOCOL_VERSION) {
      ctx.addIssue({ code: 'custom', path: ['health'], message: `needs protocol ${HEALTH_REPORT_PROTOCOL_VERSION} (a protocol ${r.protocol} pull request has no health)` });
    }
  });
export type PullRequest = z.output<typeof PullRequestSchema>;

export function decodePullRequest(bytes: Uint8Array): PullRequest {
  return decodeMessage(PullRequestSchema, bytes, MAX_PULL_REQUEST_BYTES);
}

/**
 * One page. `records` holds, per record touched by the page's log entries, the DELTA STATE: the fold
 * of those entries from an empty state (sync-core), so only the fields they wrote, with their write
 * stamps. The agent JOINS each into its own state (`fromWireRecord` then `mergeRecordStates`): a
 * CRDT join, so a page delivered twice or overlapping another does no harm, and its state equals
 * the fold of every change up to `nextCursor`. During a full resync the records are whole states.
 * Compression is not a body field: the whole payload is gzipped and the `Fleet-Encoding` header
 * says so; this decodes the bytes after the agent undid it.
 */
/**
 * A page of a snapshot (the agent asked for one with `snapshot: true`, so it takes them) may be larger
 * than other pages: up to this many records and, uncompressed, MAX_SNAPSHOT_RESPONSE_BYTES (the wire
 * payload stays under the server's max_payload; gzip takes such pages to ~1/10). Fewer, larger pages:
 * fewer round trips, transactions and commits for a bulk first pull.
 */
export const MAX_SNAPSHOT_PAGE_RECORDS = 16_384;
export const MAX_SNAPSHOT_RESPONSE_BYTES = 8 * 1024 * 1024;

export const PullResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  records: wireRecordsSchema(MAX_SNAPSHOT_PAGE_RECORDS),
  /** Send this as `cursor` next time. Persist it only after the records are joined. */
  nextCursor: PullCursorSchema,
  /** More is waiting: pull again now rather than on the schedule. */
  hasMore: z.boolean({ error: 'expected a boolean' }),
  /**
   * The request's cursor was older than what the log still holds (compacted away, see
   * docs/delta-calculator.md): this and the following pages carry whole record states of the
   * scopes, then the log resumes. Joining is still the right thing to do (states are CRDTs, and the
   * agent's own unpushed writes must survive); nothing needs to be dropped.
   */
  fullResync: z.boolean({ error: 'expected a boolean' }).exactOptional(),
  /**
   * A page of the snapshot the agent asked for (`snapshot: true` with cursor 0): whole record
   * states, joined like any page. Unlike `fullResync` it is no sign of lost data (no verification
   * needed afterwards).
   */
  snapshot: z.boolean({ error: 'expected a boolean' }).exactOptional(),
}).superRefine((r, ctx) => {
  if (r.snapshot !== true && Array.isArray(r.records) && r.records.length > MAX_PULL_LIMIT) ctx.addIssue({ code: 'custom', path: ['records'], message: `more than ${MAX_PULL_LIMIT} records`, params: OVERSIZED });
});
export type PullResponse = z.output<typeof PullResponseSchema>;

/** Only a snapshot page may be above MAX_PULL_RESPONSE_BYTES (when the caller's cap let it through). */
function pageSizeCheck(r: PullResponse, bytes: Uint8Array): PullResponse {
  if (r.snapshot !== true && bytes.byteLength > MAX_PULL_RESPONSE_BYTES) {
    throw new FleetError('FLEET_DECODE_004', `payload is ${bytes.byteLength} bytes, the limit is ${MAX_PULL_RESPONSE_BYTES}`, { details: { bytes: bytes.byteLength, limit: MAX_PULL_RESPONSE_BYTES } });
  }
  return r;
}

/** `maxBytes`: MAX_SNAPSHOT_RESPONSE_BYTES for a reply to a snapshot request (other pages are still held to MAX_PULL_RESPONSE_BYTES). */
export function decodePullResponse(bytes: Uint8Array, maxBytes: number = MAX_PULL_RESPONSE_BYTES): PullResponse {
  return pageSizeCheck(decodeMessage(PullResponseSchema, bytes, maxBytes), bytes);
}

export function decodePullReply(bytes: Uint8Array, maxBytes: number = MAX_PULL_RESPONSE_BYTES): Reply<PullResponse> {
  const r = decodeReply(PullResponseSchema, bytes, maxBytes);
  return r.ok ? { ok: true, value: pageSizeCheck(r.value, bytes) } : r;
}

/** The `Fleet-Next-Cursor` header of a pull reply (JSON of the cursor), or undefined when absent or not a cursor. */
export function decodeNextCursorHeader(value: string | undefined): PullCursor | undefined {
  if (value === undefined || value === '' || value.length > 8192) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return undefined;
  }
  const r = PullCursorSchema.safeParse(v);
  return r.success ? r.data : undefined;
}

// --- pull by keys: request/reply on `<ns>.pullkeys.<agentId>` (Merkle repair) ---

export const PullKeyRefSchema = z.strictObject({ scope: ScopeSchema, collection: CollectionSchema, key: KeySchema });

/** The server's whole current states of these records (what a Merkle exchange found missing or differing here). */
export const PullKeysRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  agentId: AgentIdSchema,
  records: z.array(PullKeyRefSchema, { error: 'expected an array' }).min(1, { error: 'at least one record' }).max(MAX_PULL_LIMIT, { error: `more than ${MAX_PULL_LIMIT} records` }),
  acceptEncodings: AcceptEncodingsSchema.exactOptional(),
});
export type PullKeysRequest = z.output<typeof PullKeysRequestSchema>;

export function decodePullKeysRequest(bytes: Uint8Array): PullKeysRequest {
  return decodeMessage(PullKeysRequestSchema, bytes, MAX_PULL_REQUEST_BYTES);
}

/**
 * `records`: the states of those of the first `answered` requested records that the server holds
 * (an absent one is simply not there). `answered < records.length` when the reply hit the size cap:
 * ask again for the rest.
 */
export const PullKeysResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  records: WireRecordsSchema,
  answered: NonNegativeIntSchema,
});
export type PullKeysResponse = z.output<typeof PullKeysResponseSchema>;

export function decodePullKeysResponse(bytes: Uint8Array): PullKeysResponse {
  return decodeMessage(PullKeysResponseSchema, bytes, MAX_PULL_RESPONSE_BYTES);
}

// --- origin high-water mark: request/reply on `<ns>.origin.<agentId>` ---

/**
 * A store that has never synced asks, before its first push or pull, for the highest origin sequence
 * the change log holds of its agent id (an earlier store of the same id, on a reinstalled host), so it
 * can number its own changes above it whatever its clock said when it was created.
 */
export const OriginRequestSchema = z.strictObject({ protocol: ProtocolSchema, agentId: AgentIdSchema });
export type OriginRequest = z.output<typeof OriginRequestSchema>;

export function decodeOriginRequest(bytes: Uint8Array): OriginRequest {
  return decodeMessage(OriginRequestSchema, bytes, MAX_PULL_REQUEST_BYTES);
}

/** `lastOriginSeq`: the highest logged, or null when the log holds no change of this agent id. */
export const OriginResponseSchema = z.strictObject({ protocol: ProtocolSchema, agentId: AgentIdSchema, lastOriginSeq: PositiveIntSchema.nullable() });
export type OriginResponse = z.output<typeof OriginResponseSchema>;

export function decodeOriginResponse(bytes: Uint8Array): OriginResponse {
  return decodeMessage(OriginResponseSchema, bytes, MAX_PULL_REQUEST_BYTES);
}

// --- Merkle anti-entropy: request/reply on `<ns>.merkle.<agentId>` ---

const Base64UrlSchema = z.string().max(MAX_PULL_REQUEST_BYTES).regex(/^[A-Za-z0-9_-]*$/, { error: 'expected base64url' });
const NodeIndexesSchema = z.array(NonNegativeIntSchema).max(65_536);

/** sync-core's `MerkleVerifyRequest` (merkle-verify.ts), decoded. */
export const MerkleVerifyRequestSchema = z.discriminatedUnion('t', [
  z.strictObject({
    t: z.literal('digests'),
    v: PositiveIntSchema,
    depth: PositiveIntSchema,
    root: z.string().regex(/^[0-9a-f]{64}$/).exactOptional(),
    level: PositiveIntSchema,
    parents: NodeIndexesSchema,
    digests: Base64UrlSchema,
    from: NonNegativeIntSchema.exactOptional(),
  }),
  z.strictObject({ t: z.literal('entries'), v: PositiveIntSchema, depth: PositiveIntSchema, buckets: NodeIndexesSchema, counts: NodeIndexesSchema, entries: Base64UrlSchema }),
]);

/** An agent's step of a Merkle exchange over one (scope, collection); the server answers statelessly. */
export const MerkleRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  agentId: AgentIdSchema,
  scope: ScopeSchema,
  collection: CollectionSchema,
  msg: MerkleVerifyRequestSchema,
});
export type MerkleRequest = z.output<typeof MerkleRequestSchema>;

export function decodeMerkleRequest(bytes: Uint8Array): MerkleRequest {
  return decodeMessage(MerkleRequestSchema, bytes, MAX_PULL_REQUEST_BYTES);
}

export const MerkleVerifyResponseSchema = z.discriminatedUnion('t', [
  z.strictObject({ t: z.literal('equal') }),
  z.strictObject({ t: z.literal('digests'), level: PositiveIntSchema, parents: NodeIndexesSchema, digests: Base64UrlSchema, more: z.literal(true).exactOptional() }),
  z.strictObject({
    t: z.literal('listing'),
    buckets: NodeIndexesSchema,
    counts: NodeIndexesSchema,
    keys: z.array(KeySchema).max(1_000_000),
    hashes: z.string().regex(/^[A-Za-z0-9_-]*$/),
    more: z.literal(true).exactOptional(),
  }),
  z.strictObject({ t: z.literal('result'), missingHere: z.array(KeySchema).max(1_000_000), missingThere: NodeIndexesSchema, differing: NodeIndexesSchema, compared: PositiveIntSchema.exactOptional() }),
]);

export const MerkleResponseSchema = z.strictObject({ protocol: ProtocolSchema, msg: MerkleVerifyResponseSchema });
export type MerkleResponse = z.output<typeof MerkleResponseSchema>;

export function decodeMerkleResponse(bytes: Uint8Array): MerkleResponse {
  return decodeMessage(MerkleResponseSchema, bytes, MAX_PULL_RESPONSE_BYTES);
}

// --- error reply (any request/reply) ---

export const ErrorBodySchema = z.strictObject({
  code: ErrorCodeSchema,
  message: ReasonSchema,
  /** Whether the same request may succeed later. Absent: not known (treat as not retryable). */
  retryable: z.boolean({ error: 'expected a boolean' }).exactOptional(),
  details: z.record(z.string(), z.unknown(), { error: 'expected an object' }).exactOptional(),
});
export const ErrorReplySchema = z.strictObject({ error: ErrorBodySchema });
export type ErrorReply = z.output<typeof ErrorReplySchema>;

/**
 * The reply for a failed request. A FleetError keeps its code and message; anything else is a
 * bug and is answered with FLEET_INTERNAL_001 and no detail (the service logs it).
 */
export function errorReply(err: unknown): ErrorReply {
  const e = isFleetError(err) ? err : new FleetError('FLEET_INTERNAL_001');
  const json = e.toJSON();
  const message = json.message.length > MAX_REASON_LENGTH ? `${json.message.slice(0, MAX_REASON_LENGTH - 1)}…` : json.message;
  return { error: { code: json.code, message, retryable: e.retryable, ...(json.details === undefined ? {} : { details: { ...json.details } }) } };
}

/** An operator or request handler's answer: what `fn` returns, or the `errorReply` of what it throws. */
export async function answerRequest(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    return await fn();
  } catch (e) {
    return errorReply(e);
  }
}

export function decodeErrorReply(bytes: Uint8Array): ErrorReply {
  return decodeWith(ErrorReplySchema, decodeJson(bytes, MAX_ERROR_REPLY_BYTES));
}

export type Reply<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ErrorReply['error'] };

/**
 * Decodes a reply that is either `schema`'s message or an error reply (an object whose only
 * key is `error`). Throws like any decoder if it is neither.
 */
export function decodeReply<S extends z.ZodType>(schema: S, bytes: Uint8Array, maxBytes: number): Reply<z.output<S>> {
  const value = decodeJson(bytes, maxBytes);
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 1 && 'error' in value) {
    return { ok: false, error: decodeWith(ErrorReplySchema, value).error };
  }
  checkProtocol(value);
  return { ok: true, value: decodeWith(schema, value) };
}

// --- dead letter: `<ns>.dlq.<source>` ---

/**
 * What the dead-letter stream carries for a rejected message or a rejected change of a batch.
 * The `Fleet-Reject-*` and `Fleet-Original-*` headers repeat code, reason and source so that
 * `nats stream view` shows them; the body keeps the rejected content itself, so nothing is
 * lost and an operator can replay it after a fix.
 */
export const DeadLetterSchema = z
  .strictObject({
    protocol: ProtocolSchema,
    code: ErrorCodeSchema,
    reason: ReasonSchema,
    /** Where the message was read from. */
    source: z.strictObject({
      subject: z.string({ error: 'expected a string' }).min(1, { error: 'empty subject' }).max(512, { error: 'subject longer than 512 characters' }),
      stream: z.string({ error: 'expected a string' }).max(256, { error: 'stream name longer than 256 characters' }).exactOptional(),
      streamSeq: PositiveIntSchema.exactOptional(),
      deliveryCount: PositiveIntSchema.exactOptional(),
    }),
    /** The publishing agent, when known from the subject. */
    agentId: AgentIdSchema.exactOptional(),
    /** For a change rejected out of a batch: the batch, its position in it, and its id if it had a valid one. */
    batchId: UuidSchema.exactOptional(),
    index: NonNegativeIntSchema.exactOptional(),
    changeId: ChangeIdSchema.exactOptional(),
    /** When it was rejected, epoch ms (the service's clock). */
    rejectedAt: NonNegativeIntSchema,
    /** The rejected content when it was JSON (a whole message, or one change of a batch). */
    payload: z.unknown().exactOptional(),
    /** The rejected bytes, base64, when they were not JSON (or not UTF-8). */
    rawBase64: z.string({ error: 'expected a string' }).regex(/^[A-Za-z0-9+/]*={0,2}$/, { error: 'expected base64' }).exactOptional(),
  })
  .superRefine((d, ctx) => {
    const hasPayload = Object.prototype.hasOwnProperty.call(d, 'payload');
    if (hasPayload === (d.rawBase64 !== undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'expected exactly one of payload and rawBase64' });
    }
  });
export type DeadLetter = z.output<typeof DeadLetterSchema>;

export function decodeDeadLetter(bytes: Uint8Array): DeadLetter {
  return decodeMessage(DeadLetterSchema, bytes, MAX_DEAD_LETTER_BYTES);
}

/** Builds a dead letter for a change refused out of a push batch. */
export function deadLetterForChange(
  batch: PushBatch,
  rejected: RejectedChange,
  source: DeadLetter['source'],
  rejectedAt: number,
): DeadLetter {
  const id: unknown = typeof rejected.value === 'object' && rejected.value !== null ? Reflect.get(rejected.value, 'changeId') : undefined;
  const changeId = ChangeIdSchema.safeParse(id);
  return {
    protocol: PROTOCOL_VERSION,
    code: rejected.error.code,
    reason: rejected.error.message.slice(0, MAX_REASON_LENGTH),
    source,
    agentId: batch.agentId,
    batchId: batch.batchId,
    index: rejected.index,
    ...(changeId.success ? { changeId: changeId.data } : {}),
    rejectedAt,
    payload: rejected.value,
  };
}
