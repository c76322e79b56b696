/**
 * Events of the causality and conflict services, and the operator API of the manual queue.
 *
 * version-vector -> `<ns>.vv.applied|stale|conflict` (stream `streams.vv`);
 * conflict-resolver -> `<ns>.conflict.resolved` (stream `streams.conflicts`);
 * operator request/reply on `<ns>.admin.conflicts.list|show|resolve` (queue group `queueGroups.admin`).
 * See docs/conflicts.md.
 */
import { z } from 'zod';
import { decodeMessage } from './codec';
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
import { FieldsSchema, JsonValueSchema } from './json-value';
import { MAX_FIELDS_PER_CHANGE } from './limits';

/** An event or an operator reply: one record's conflict with every side fits easily; a list page is bounded by `MAX_CONFLICTS_PAGE`. */
export const MAX_CONFLICT_EVENT_BYTES = 960 * 1024;
export const MAX_ADMIN_REQUEST_BYTES = 300 * 1024;
export const MAX_ADMIN_REPLY_BYTES = 960 * 1024;
/** Items in one page of `conflicts list`. */
export const MAX_CONFLICTS_PAGE = 200;

export const RecordRefSchema = z.strictObject({ scope: ScopeSchema, collection: CollectionSchema, key: KeySchema });
export const RecordStatusSchema = z.enum(['absent', 'live', 'deleted'], { error: 'expected absent, live or deleted' });
export const StrategyNameSchema = z.enum(['lww', 'merge', 'manual', 'custom'], { error: 'expected lww, merge, manual or custom' });

// --- version-vector -> `<ns>.vv.applied` ---

/**
 * A record of the projection changed: its new hash, status and vector after the changes up to
 * `seq` (the last change applied), and its projection cursor `rev` (see docs/conflicts.md).
 * One event per record per projection transaction, not per change.
 */
export const RecordAppliedEventSchema = z.strictObject({
  protocol: ProtocolSchema,
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
export type RecordAppliedEvent = z.output<typeof RecordAppliedEventSchema>;

// --- version-vector -> `<ns>.vv.stale` ---

/** A change the record already included (`stale`: its vector is below the record's; `duplicate`: equal). Nothing was changed. */
export const ChangeIgnoredEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  seq: PositiveIntSchema,
  changeId: ChangeIdSchema,
  origin: OriginSchema,
  scope: ScopeSchema,
  collection: CollectionSchema,
  key: KeySchema,
  outcome: z.enum(['stale', 'duplicate'], { error: 'expected stale or duplicate' }),
  changeVv: VersionVectorSchema,
  recordVv: VersionVectorSchema,
});
export type ChangeIgnoredEvent = z.output<typeof ChangeIgnoredEventSchema>;

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
 * already recorded (row `conflictId` of the conflict log, status `open`) in the same transaction as
 * the projection: this event only wakes the resolver (which also sweeps open rows).
 */
export const ConflictDetectedEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  conflictId: PositiveIntSchema,
  seq: PositiveIntSchema,
  ref: RecordRefSchema,
  strategy: StrategyNameSchema,
  conflict: ConflictRecordSchema,
});
export type ConflictDetectedEvent = z.output<typeof ConflictDetectedEventSchema>;

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

/** conflict-resolver -> `<ns>.conflict.resolved`: what became of some conflict rows of one record. */
export const ConflictResolvedEventSchema = z.strictObject({
  protocol: ProtocolSchema,
  conflictIds: z.array(PositiveIntSchema).min(1).max(10_000),
  ref: RecordRefSchema,
  strategy: StrategyNameSchema,
  status: z.enum(['pending', 'auto-resolved', 'resolved', 'superseded']),
  resolutionChangeId: ChangeIdSchema.exactOptional(),
  resolutionSeq: PositiveIntSchema.exactOptional(),
});
export type ConflictResolvedEvent = z.output<typeof ConflictResolvedEventSchema>;

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
    z.strictObject({ fields: FieldsSchema, unset: z.array(z.string()).max(MAX_FIELDS_PER_CHANGE).exactOptional() }),
    z.strictObject({ deleted: z.literal(true) }),
  ],
  { error: 'expected {take: origin}, {fields, unset?} or {deleted: true}' },
);
export type WireManualChoice = z.output<typeof ManualChoiceSchema>;

export const ConflictResolveRequestSchema = z.strictObject({ protocol: ProtocolSchema, id: PositiveIntSchema, choice: ManualChoiceSchema });
export type ConflictResolveRequest = z.output<typeof ConflictResolveRequestSchema>;

export const ConflictResolveResponseSchema = z.strictObject({ protocol: ProtocolSchema, item: ConflictItemSchema, change: LoggedChangeSchema });
export type ConflictResolveResponse = z.output<typeof ConflictResolveResponseSchema>;

// --- decoders ---

export const decodeRecordAppliedEvent = (b: Uint8Array): RecordAppliedEvent => decodeMessage(RecordAppliedEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeChangeIgnoredEvent = (b: Uint8Array): ChangeIgnoredEvent => decodeMessage(ChangeIgnoredEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeConflictDetectedEvent = (b: Uint8Array): ConflictDetectedEvent => decodeMessage(ConflictDetectedEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeConflictResolvedEvent = (b: Uint8Array): ConflictResolvedEvent => decodeMessage(ConflictResolvedEventSchema, b, MAX_CONFLICT_EVENT_BYTES);
export const decodeConflictsListRequest = (b: Uint8Array): ConflictsListRequest => decodeMessage(ConflictsListRequestSchema, b, MAX_ADMIN_REQUEST_BYTES);
export const decodeConflictShowRequest = (b: Uint8Array): ConflictShowRequest => decodeMessage(ConflictShowRequestSchema, b, MAX_ADMIN_REQUEST_BYTES);
export const decodeConflictResolveRequest = (b: Uint8Array): ConflictResolveRequest => decodeMessage(ConflictResolveRequestSchema, b, MAX_ADMIN_REQUEST_BYTES);
export const decodeConflictsListReply = (b: Uint8Array): ReplyOf<ConflictsListResponse> => decodeReply(ConflictsListResponseSchema, b, MAX_ADMIN_REPLY_BYTES);
export const decodeConflictShowReply = (b: Uint8Array): ReplyOf<ConflictShowResponse> => decodeReply(ConflictShowResponseSchema, b, MAX_ADMIN_REPLY_BYTES);
export const decodeConflictResolveReply = (b: Uint8Array): ReplyOf<ConflictResolveResponse> => decodeReply(ConflictResolveResponseSchema, b, MAX_ADMIN_REPLY_BYTES);
