/**
 * Events of the causality and conflict services, and the operator API of the manual queue.
 *
 * version-vector -> `<ns>.vv.applied|stale|conflict` (stream `streams.vv`);
 * conflict-resolver -> `<ns>.conflict.resolved` (stream `streams.conflicts`);
 * each event is a batch: one per projection (or resolver) transaction and subject, cut into chunks
 * of at most `MAX_ITEMS_PER_VV_EVENT` items and `MAX_CONFLICT_EVENT_BYTES` bytes;
 * operator request/reply on `<ns>.admin.conflicts.list|show|resolve` (queue group `queueGroups.admin`).
 * See docs/conflicts.md.
 */
import { z } from 'zod';
import { decodeMessage, encodeJson } from './codec';
import { decodeReply, type Reply as ReplyOf } from './messages';
import {
  ChangeIdSchema,
  CollectionSchema,
  HashSchema,
  HlcSchema,
  KeySchema,
  LoggedChangeSchema,
  NonNegativeIntSchema,
  OriginSchema,
  PositiveIntSchema,
  ProtocolSchema,
  ScopeSchema,
  VersionVectorSchema,
} from './change';
import { FieldNameSchema, FieldsSchema, JsonValueSchema } from './json-value';
import { MAX_APPENDED_EVENT_BYTES, MAX_CHANGES_PER_APPENDED_EVENT, MAX_FIELDS_PER_CHANGE } from './limits';

/** An event or an operator reply: one record's conflict with every side fits easily; a list page is bounded by `MAX_CONFLICTS_PAGE`. */
export const MAX_CONFLICT_EVENT_BYTES = 960 * 1024;
export const MAX_ADMIN_REQUEST_BYTES = 300 * 1024;
export const MAX_ADMIN_REPLY_BYTES = 960 * 1024;
/** Items in one page of `conflicts list`. */
export const MAX_CONFLICTS_PAGE = 200;

export const RecordRefSchema = z.strictObject({ scope: ScopeSchema, collection: CollectionSchema, key: KeySchema });
export const RecordStatusSchema = z.enum(['absent', 'live', 'deleted'], { error: 'expected absent, live or deleted' });
export const StrategyNameSchema = z.enum(['lww', 'merge', 'manual', 'custom'], { error: 'expected lww, merge, manual or custom' });

// --- `<ns>.log.appended`, as version-vector reads it ---

/**
 * The part of an `AppendedEvent` (messages.ts) version-vector uses: which records (and seqs) were
 * appended. It reads the changes themselves from the log (every change of those records after the
 * row's `last_seq`, in seq order), never from the event, so it checks only these fields (other
 * fields are not looked at; the change log validated the changes before appending them).
 */
export const AppendedRefsSchema = z.object({
  protocol: ProtocolSchema,
  changes: z
    .array(z.object({ seq: PositiveIntSchema, scope: ScopeSchema, collection: CollectionSchema, key: KeySchema }), { error: 'expected an array' })
    .min(1, { error: 'an event carries at least one change' })
    .max(MAX_CHANGES_PER_APPENDED_EVENT, { error: `more than ${MAX_CHANGES_PER_APPENDED_EVENT} changes` }),
});
export type AppendedRefs = z.output<typeof AppendedRefsSchema>;

// --- version-vector -> `<ns>.vv.applied` ---

/** Items in one batched event (applied records, ignored changes, detected conflicts, resolver decisions). */
export const MAX_ITEMS_PER_VV_EVENT = 2000;

/**
 * A record of the projection changed: its new hash, status and vector after the changes up to
 * `seq` (the last change applied), and its projection cursor `rev` (see docs/conflicts.md).
 * One item per record per projection transaction, not per change.
 */
export const RecordAppliedSchema = z.strictObject({
  seq: PositiveIntSchema,
  rev: PositiveIntSchema,
  scope: ScopeSchema,
  collection: CollectionSchema,
  key: KeySchema,
  hash: HashSchema,
  status: RecordStatusSchema,
  /** A `manual` register holds concurrent writes: shown with a provisional winner until an operator decides. */
  conflicted: z.boolean({ error: 'expected a boolean' }),
  vv: VersionVectorSchema,
});
export type RecordApplied = z.output<typeof RecordAppliedSchema>;

/** The records one projection transaction changed (a chunk of them), in rev order. */
export const RecordsAppliedEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  records: z.array(RecordAppliedSchema).min(1).max(MAX_ITEMS_PER_VV_EVENT),
});
export type RecordsAppliedEvent = z.output<typeof RecordsAppliedEventSchema>;

// --- version-vector -> `<ns>.vv.stale` ---

/**
 * A change that changed nothing: the record already included it (`stale`: its vector is below the
 * record's; `duplicate`: equal), or it was `rejected` (it reuses a dot the record holds for another
 * change: FLEET_CHANGE_002, `reason` says which; it is also dead-lettered). It stays in the change log.
 */
export const ChangeIgnoredSchema = z.strictObject({
  seq: PositiveIntSchema,
  changeId: ChangeIdSchema,
  origin: OriginSchema,
  scope: ScopeSchema,
  collection: CollectionSchema,
  key: KeySchema,
  outcome: z.enum(['stale', 'duplicate', 'rejected'], { error: 'expected stale, duplicate or rejected' }),
  changeVv: VersionVectorSchema,
  recordVv: VersionVectorSchema,
  reason: z.string({ error: 'expected a string' }).max(1024).optional(),
});
export type ChangeIgnored = z.output<typeof ChangeIgnoredSchema>;

/** The changes one projection transaction ignored (a chunk of them), in seq order. */
export const ChangesIgnoredEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  changes: z.array(ChangeIgnoredSchema).min(1).max(MAX_ITEMS_PER_VV_EVENT),
});
export type ChangesIgnoredEvent = z.output<typeof ChangesIgnoredEventSchema>;

// --- the ConflictRecord of sync-core, on the wire ---

const stamp = { origin: OriginSchema, counter: PositiveIntSchema, hlc: HlcSchema, changeId: z.string({ error: 'expected a string' }).min(1).max(128) };
export const FieldValueSchema = z.union([z.strictObject({ value: JsonValueSchema }), z.strictObject({ removed: z.literal(true) })], {
  error: 'expected {value} or {removed: true}',
});
export const ConflictSideSchema = z.union([z.strictObject({ ...stamp, value: JsonValueSchema }), z.strictObject({ ...stamp, removed: z.literal(true) })], {
  error: 'expected a side: origin, counter, hlc, changeId and {value} or {removed: true}',
});
export const ConflictFieldSchema = z.strictObject({
  field: z.string({ error: 'expected a string' }).min(1),
  resolver: z.string({ error: 'expected a string' }).min(1).max(128),
  sides: z.array(ConflictSideSchema).min(2, { error: 'a contested field has at least two sides' }).max(64),
  resolved: FieldValueSchema,
});
export const ConflictExistenceSchema = z.strictObject({
  rule: z.enum(['lww', 'edit-wins', 'delete-wins', 'manual']),
  sides: z.array(z.strictObject({ ...stamp, alive: z.boolean() })).min(2).max(64),
  resolved: z.enum(['live', 'deleted']),
});
/** Every concurrent write of a record: each contested field's sides and the (provisional) value, and put vs delete. */
export const ConflictRecordSchema = z.strictObject({
  id: HashSchema,
  ref: RecordRefSchema,
  needsOperator: z.boolean(),
  vv: VersionVectorSchema,
  fields: z.array(ConflictFieldSchema).max(MAX_FIELDS_PER_CHANGE * 4),
  existence: ConflictExistenceSchema.exactOptional(),
});
export type WireConflictRecord = z.output<typeof ConflictRecordSchema>;

// --- version-vector -> `<ns>.vv.conflict` ---

/**
 * A change was concurrent with the record and left it with concurrent writes. The conflict is
 * already recorded, with every side (row `conflictId` of the conflict log, status `open`), in the
 * same transaction as the projection: the event only wakes the resolver (which also sweeps open
 * rows), so it names the row and the record, not the sides (the operator API shows them).
 */
export const ConflictDetectedSchema = z.strictObject({
  conflictId: PositiveIntSchema,
  /** sync-core's conflict id (`conflicts.conflict_key`). */
  conflictKey: HashSchema,
  seq: PositiveIntSchema,
  ref: RecordRefSchema,
  strategy: StrategyNameSchema,
});
export type ConflictDetected = z.output<typeof ConflictDetectedSchema>;

/** The conflicts one projection transaction recorded (a chunk of them). */
export const ConflictsDetectedEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  conflicts: z.array(ConflictDetectedSchema).min(1).max(MAX_ITEMS_PER_VV_EVENT),
});
export type ConflictsDetectedEvent = z.output<typeof ConflictsDetectedEventSchema>;

// --- conflict log items and the resolver's event ---

export const ConflictStatusSchema = z.enum(['open', 'pending', 'auto-resolved', 'resolved', 'superseded'], {
  error: 'expected open, pending, auto-resolved, resolved or superseded',
});
export type ConflictStatus = z.output<typeof ConflictStatusSchema>;

/** What was decided: the resolution written, or why there was nothing left to write. */
export const ConflictOutcomeSchema = z.union([
  z.strictObject({ kind: z.literal('resolution'), deleted: z.literal(true) }),
  z.strictObject({ kind: z.literal('resolution'), fields: FieldsSchema, unset: z.array(z.string()).max(MAX_FIELDS_PER_CHANGE * 4) }),
  z.strictObject({ kind: z.literal('queued'), provisional: z.union([z.strictObject({ deleted: z.literal(true) }), z.strictObject({ fields: FieldsSchema })]) }),
  z.strictObject({ kind: z.literal('superseded'), reason: z.string().max(1024) }),
]);
export type ConflictOutcome = z.output<typeof ConflictOutcomeSchema>;

const IsoTimeSchema = z.string({ error: 'expected an ISO 8601 time' }).max(40).regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, { error: 'expected an ISO 8601 UTC time' });

/** One row of the conflict log, as the operator API shows it. */
export const ConflictItemSchema = z.strictObject({
  id: PositiveIntSchema,
  ref: RecordRefSchema,
  seq: PositiveIntSchema,
  strategy: StrategyNameSchema,
  status: ConflictStatusSchema,
  conflict: ConflictRecordSchema,
  outcome: ConflictOutcomeSchema.nullable(),
  resolvedBy: z.enum(['auto', 'operator']).nullable(),
  resolutionChangeId: ChangeIdSchema.nullable(),
  detectedAt: IsoTimeSchema,
  resolvedAt: IsoTimeSchema.nullable(),
});
export type ConflictItem = z.output<typeof ConflictItemSchema>;

/** What became of some conflict rows of one record. */
export const ConflictResolvedSchema = z.strictObject({
  conflictIds: z.array(PositiveIntSchema).min(1).max(10_000),
  ref: RecordRefSchema,
  strategy: StrategyNameSchema,
  status: z.enum(['pending', 'auto-resolved', 'resolved', 'superseded']),
  resolutionChangeId: ChangeIdSchema.exactOptional(),
  resolutionSeq: PositiveIntSchema.exactOptional(),
});
export type ConflictResolved = z.output<typeof ConflictResolvedSchema>;

/** conflict-resolver -> `<ns>.conflict.resolved`: the decisions of one resolver transaction (a chunk of them). */
export const ConflictsResolvedEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  decisions: z.array(ConflictResolvedSchema).min(1).max(MAX_ITEMS_PER_VV_EVENT),
});
export type ConflictsResolvedEvent = z.output<typeof ConflictsResolvedEventSchema>;

// --- operator API: request/reply on `<ns>.admin.conflicts.<verb>` ---

export const ConflictsListRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  status: ConflictStatusSchema.exactOptional(),
  /** Items with id above this (the previous page's `nextCursor`). */
  after: NonNegativeIntSchema.exactOptional(),
  limit: z.int().min(1).max(MAX_CONFLICTS_PAGE).exactOptional(),
});
export type ConflictsListRequest = z.output<typeof ConflictsListRequestSchema>;

export const ConflictsListResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  items: z.array(ConflictItemSchema).max(MAX_CONFLICTS_PAGE),
  nextCursor: NonNegativeIntSchema,
  hasMore: z.boolean(),
});
export type ConflictsListResponse = z.output<typeof ConflictsListResponseSchema>;

export const ConflictShowRequestSchema = z.strictObject({ protocol: ProtocolSchema, id: PositiveIntSchema });
export type ConflictShowRequest = z.output<typeof ConflictShowRequestSchema>;

export const ConflictShowResponseSchema = z.strictObject({ protocol: ProtocolSchema, item: ConflictItemSchema });
export type ConflictShowResponse = z.output<typeof ConflictShowResponseSchema>;

/** An operator's decision: one origin's side everywhere, explicit values, or delete. Same as sync-core's `ManualChoice`. */
export const ManualChoiceSchema = z.union(
  [
    z.strictObject({ take: OriginSchema }),
    z.strictObject({ fields: FieldsSchema, unset: z.array(FieldNameSchema).max(MAX_FIELDS_PER_CHANGE).exactOptional() }),
    z.strictObject({ deleted: z.literal(true) }),
  ],
  { error: 'expected {take: origin}, {fields, unset?} or {deleted: true}' },
);
export type WireManualChoice = z.output<typeof ManualChoiceSchema>;

export const ConflictResolveRequestSchema = z.strictObject({ protocol: ProtocolSchema, id: PositiveIntSchema, choice: ManualChoiceSchema });
export type ConflictResolveRequest = z.output<typeof ConflictResolveRequestSchema>;

/** `announced: false`: committed, its announcement failed after retries (the log sweep projects it); absent from older servers. */
export const ConflictResolveResponseSchema = z.strictObject({ protocol: ProtocolSchema, item: ConflictItemSchema, change: LoggedChangeSchema, announced: z.boolean().exactOptional() });
export type ConflictResolveResponse = z.output<typeof ConflictResolveResponseSchema>;

// --- decoders ---

export const decodeAppendedRefs = (b: Uint8Array): AppendedRefs => decodeMessage(AppendedRefsSchema, b, MAX_APPENDED_EVENT_BYTES);
export const decodeRecordsAppliedEvent = (b: Uint8Array): RecordsAppliedEvent => decodeMessage(RecordsAppliedEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeChangesIgnoredEvent = (b: Uint8Array): ChangesIgnoredEvent => decodeMessage(ChangesIgnoredEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeConflictsDetectedEvent = (b: Uint8Array): ConflictsDetectedEvent => decodeMessage(ConflictsDetectedEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeConflictsResolvedEvent = (b: Uint8Array): ConflictsResolvedEvent => decodeMessage(ConflictsResolvedEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeConflictsListRequest = (b: Uint8Array): ConflictsListRequest => decodeMessage(ConflictsListRequestSchema, b, MAX_ADMIN_REQUEST_BYTES);
export const decodeConflictShowRequest = (b: Uint8Array): ConflictShowRequest => decodeMessage(ConflictShowRequestSchema, b, MAX_ADMIN_REQUEST_BYTES);
export const decodeConflictResolveRequest = (b: Uint8Array): ConflictResolveRequest => decodeMessage(ConflictResolveRequestSchema, b, MAX_ADMIN_REQUEST_BYTES);
export const decodeConflictsListReply = (b: Uint8Array): ReplyOf<ConflictsListResponse> => decodeReply(ConflictsListResponseSchema, b, MAX_ADMIN_REPLY_BYTES);
export const decodeConflictShowReply = (b: Uint8Array): ReplyOf<ConflictShowResponse> => decodeReply(ConflictShowResponseSchema, b, MAX_ADMIN_REPLY_BYTES);
export const decodeConflictResolveReply = (b: Uint8Array): ReplyOf<ConflictResolveResponse> => decodeReply(ConflictResolveResponseSchema, b, MAX_ADMIN_REPLY_BYTES);

/**
 * Cuts the items of one batched event into payloads of at most `maxItems` items and `maxBytes`
 * bytes (`make` builds the event from a chunk). An item too large for an event alone gets one.
 */
export function chunkEvents<T>(items: readonly T[], make: (chunk: T[]) => unknown, maxItems = MAX_ITEMS_PER_VV_EVENT, maxBytes = MAX_CONFLICT_EVENT_BYTES): { payload: Uint8Array; items: T[] }[] {
  const out: { payload: Uint8Array; items: T[] }[] = [];
  const emit = (chunk: T[]): void => {
    if (chunk.length === 0) return;
    const payload = encodeJson(make(chunk));
    if (payload.byteLength > maxBytes && chunk.length > 1) {
      const half = Math.ceil(chunk.length / 2);
      emit(chunk.slice(0, half));
      emit(chunk.slice(half));
    } else out.push({ payload, items: chunk });
  };
  for (let i = 0; i < items.length; i += maxItems) emit(items.slice(i, i + maxItems));
  return out;
}
