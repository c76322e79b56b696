/**
 * The operator APIs behind `fleetctl status`, `agents`, `verify` and `replay` (request/reply, one
 * schema per message; each service answers for the data it owns, see docs/operations.md):
 *
 * - `<ns>.admin.status.<service>`: every server service, its readiness and its own figures
 *   (change-log: log head, agents, dead letters; version-vector and delta-calculator: their
 *   projection's cursor against the head; conflict-resolver: the manual queue).
 * - `<ns>.admin.agents.list|show` (change-log: origin progress), `<ns>.admin.agents.groups`
 *   (delta-calculator: group memberships) and `<ns>.admin.agents.sync` (delta-calculator: pulls,
 *   verifications, the sync-health score); `<ns>.admin.health` (delta-calculator: the fleet's score).
 * - `<ns>.admin.deadletters.list|show|replay|discard` (change-log): the dead-letter stream; replay
 *   and discard carry `Authorization: Bearer <operator token>` like `critical begin`.
 * - `<ns>.admin.verify.<service>` (change-log, version-vector, delta-calculator): a read-only check of
 *   the service's projection against the change log.
 */
import { z } from 'zod';
import { AgentIdSchema, NonNegativeIntSchema, PositiveIntSchema, ProtocolSchema } from './change';
import { decodeMessage } from './codec';
import { RecordRefSchema } from './events';
import { MAX_REASON_LENGTH } from './limits';
import { HEALTH_REPORT_PROTOCOL_VERSION } from './protocol';
import { decodeReply, ErrorBodySchema, ErrorCodeSchema } from './messages';
import type { Reply } from './messages';
import { isSubjectToken, SERVER_SERVICES } from './subjects';

export const MAX_OPERATOR_REQUEST_BYTES = 64 * 1024;
/** A reply: a page of agents or dead-letter summaries, a verify report with its first differences, or one dead letter with its payload (at most 2 MiB, base64 or JSON). */
export const MAX_OPERATOR_REPLY_BYTES = 4 * 1024 * 1024;
/** Agents in one page of `agents list`, and agent ids in one groups request. */
export const MAX_AGENTS_PAGE = 1000;
/** Dead letters in one page of `deadletters list`, and in one replay or discard. */
export const MAX_DEAD_LETTERS_PAGE = 100;
/** Differences a verify report lists (it counts them all). */
export const MAX_VERIFY_DIFFS = 1000;

const TextSchema = (max: number) => z.string({ error: 'expected a string' }).max(max, { error: `longer than ${max} characters` });
const ReasonSchema = TextSchema(MAX_REASON_LENGTH);
const IsoTimeSchema = z.iso.datetime({ offset: true, error: 'expected an ISO 8601 date-time' });
const GroupNameSchema = z.string({ error: 'expected a string' }).refine(isSubjectToken, { error: 'expected a group name token' });

// --- status ---

export const ServerServiceSchema = z.enum(SERVER_SERVICES, { error: `expected one of ${SERVER_SERVICES.join(', ')}` });

export const StatusRequestSchema = z.strictObject({ protocol: ProtocolSchema });
export type StatusRequest = z.output<typeof StatusRequestSchema>;

export const ReadinessSchema = z.strictObject({
  status: z.enum(['ready', 'not_ready']),
  /** The replica is shutting down (readiness is false from then on). */
  draining: z.boolean(),
  checks: z
    .array(z.strictObject({ name: TextSchema(64), status: z.enum(['up', 'down']), durationMs: NonNegativeIntSchema, error: ReasonSchema.exactOptional() }))
    .max(32),
});

/** A projection's progress against the change log. */
export const ProjectionProgressSchema = z.strictObject({
  /** `records` (version-vector) or `record_states` (delta-calculator). */
  name: TextSchema(64),
  /** Every change with seq <= cursor is applied. */
  cursor: NonNegativeIntSchema,
  /** The log's highest seq, read in the same snapshot. */
  headSeq: NonNegativeIntSchema,
  /** Changes logged after the cursor: `headSeq - cursor`. */
  lag: NonNegativeIntSchema,
  /** How long the first change after the cursor has been in the log (PostgreSQL's clock); null when the lag is 0. */
  oldestPendingSeconds: z.number().nonnegative().nullable(),
});
export type ProjectionProgress = z.output<typeof ProjectionProgressSchema>;

export const DeadLetterSummarySchema = z.strictObject({
  messages: NonNegativeIntSchema,
  bytes: NonNegativeIntSchema,
  /** When the oldest one was stored, ISO; null when there is none. */
  oldestAt: IsoTimeSchema.nullable(),
  /** Messages per dead-letter subject (`<ns>.dlq.<source stream>`). */
  bySubject: z.record(TextSchema(512), NonNegativeIntSchema),
});
export type DeadLetterSummary = z.output<typeof DeadLetterSummarySchema>;

/** What a service knows of its own part; each field is present only on the service that owns it. */
export const StatusFactsSchema = z.strictObject({
  /** change-log: the log's highest seq. */
  headSeq: NonNegativeIntSchema.exactOptional(),
  /** change-log: agents with changes in the log (the server's own origin not counted). */
  agents: NonNegativeIntSchema.exactOptional(),
  /** change-log: critical operations not finished yet (preparing, committing, aborting). */
  openCriticalOperations: NonNegativeIntSchema.exactOptional(),
  /** change-log: the dead-letter stream. */
  deadLetters: DeadLetterSummarySchema.exactOptional(),
  /** version-vector, delta-calculator. */
  projection: ProjectionProgressSchema.exactOptional(),
  /** delta-calculator: changes at or below this seq were deleted from the log (retention); 0 when none. */
  logHorizon: NonNegativeIntSchema.exactOptional(),
  /** conflict-resolver: conflicts waiting for an operator. */
  pendingConflicts: NonNegativeIntSchema.exactOptional(),
});
export type StatusFacts = z.output<typeof StatusFactsSchema>;

export const StatusResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  service: ServerServiceSchema,
  /** The replica that answered (host name and pid). */
  instance: TextSchema(256),
  uptimeSeconds: NonNegativeIntSchema,
  ready: ReadinessSchema,
  facts: StatusFactsSchema,
  /** The service answered, but reading its figures failed (its database is down, say). */
  factsError: ErrorBodySchema.exactOptional(),
});
export type StatusResponse = z.output<typeof StatusResponseSchema>;

// --- agents ---

export const AgentsListRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  /** Agents whose id sorts after this one (the previous page's `nextCursor`). */
  after: AgentIdSchema.exactOptional(),
  limit: z.int().min(1).max(MAX_AGENTS_PAGE).exactOptional(),
});
export type AgentsListRequest = z.output<typeof AgentsListRequestSchema>;

/** An agent as the change log knows it (`origin_progress`). */
export const AgentProgressSchema = z.strictObject({
  agentId: AgentIdSchema,
  /** The highest origin sequence logged for it. */
  lastOriginSeq: PositiveIntSchema,
  /** Its changes in the log. */
  changes: NonNegativeIntSchema,
  /** The highest log seq among them. */
  lastSeq: PositiveIntSchema,
  /** When its latest change was appended (the last push that brought something new), ISO with microseconds. */
  lastAppendedAt: TextSchema(64),
  /** The hlc of its change with the highest origin sequence. */
  lastHlc: TextSchema(256),
});
export type AgentProgress = z.output<typeof AgentProgressSchema>;

export const AgentsListResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  agents: z.array(AgentProgressSchema).max(MAX_AGENTS_PAGE),
  hasMore: z.boolean(),
  /** The last agent id of the page: `after` for the next one. */
  nextCursor: AgentIdSchema.nullable(),
});
export type AgentsListResponse = z.output<typeof AgentsListResponseSchema>;

export const AgentShowRequestSchema = z.strictObject({ protocol: ProtocolSchema, agentId: AgentIdSchema });
export type AgentShowRequest = z.output<typeof AgentShowRequestSchema>;

/** `agent` is null when the log holds none of its changes (it may still have group memberships). */
export const AgentShowResponseSchema = z.strictObject({ protocol: ProtocolSchema, agent: AgentProgressSchema.nullable() });
export type AgentShowResponse = z.output<typeof AgentShowResponseSchema>;

export const AgentGroupsRequestSchema = z.strictObject({ protocol: ProtocolSchema, agentIds: z.array(AgentIdSchema).min(1).max(MAX_AGENTS_PAGE) });
export type AgentGroupsRequest = z.output<typeof AgentGroupsRequestSchema>;

/** Every agent asked about, with its groups (empty when it has none). */
export const AgentGroupsResponseSchema = z.strictObject({ protocol: ProtocolSchema, groups: z.record(AgentIdSchema, z.array(GroupNameSchema).max(64)) });
export type AgentGroupsResponse = z.output<typeof AgentGroupsResponseSchema>;

// --- sync health (delta-calculator) ---

/** The most agents a fleet health answer lists as its worst. */
export const MAX_WORST_AGENTS = 100;

export const SyncHealthSchema = z.strictObject({
  score: z.int().min(0).max(100),
  status: z.enum(['healthy', 'degraded', 'unhealthy']),
  /** Each signal that cost points or capped the status, worst first. */
  reasons: z.array(ReasonSchema).max(16),
});
export type SyncHealthView = z.output<typeof SyncHealthSchema>;

/** What the server knows of an agent's sync (delta-calculator's `agent_pulls`, change-log's last push) and the score made of it. */
export const AgentSyncSchema = z.strictObject({
  agentId: AgentIdSchema,
  /** Its first and latest pull page answered (null: never pulled since pulls are recorded). */
  firstPullAt: IsoTimeSchema.nullable(),
  lastPullAt: IsoTimeSchema.nullable(),
  /** The latest pull's cursor asked for and answered (as text, cut to 160 characters). */
  pullFrom: TextSchema(160).nullable(),
  pullTo: TextSchema(160).nullable(),
  /** The log's head seq when the latest pull was read. */
  headSeqAtPull: NonNegativeIntSchema.nullable(),
  /** Changes logged after the position the latest pull left it at (0: it reached the end of its scopes). */
  behind: NonNegativeIntSchema.nullable(),
  /** The latest pull that reached the end of its scopes. */
  caughtUpAt: IsoTimeSchema.nullable(),
  /** Pull pages answered (every replica's, since pulls are recorded). */
  pulls: NonNegativeIntSchema,
  /** The end of its latest Merkle exchange, and the buckets found differing there (0: equal). */
  lastVerifiedAt: IsoTimeSchema.nullable(),
  verifyDifferences: NonNegativeIntSchema.nullable(),
  /** When the change log last appended one of its changes (change-log's `origin_progress`); null when it never pushed. */
  lastPushAt: IsoTimeSchema.nullable(),
  /** The server-side sync-health score (docs/observability.md). */
  health: SyncHealthSchema,
  /**
   * Protocol 2 (answered only to a request of protocol 2): the agent's latest push-side report, carried
   * by its pulls (`PullRequest.health`), with when the server received it; null when it never sent one
   * (an agent of protocol 1). `stale`: its pulls since carried none, so the score leaves it out.
   */
  push: z
    .strictObject({
      reportedAt: IsoTimeSchema,
      outbox: NonNegativeIntSchema,
      oldestUnsentAgeMs: NonNegativeIntSchema,
      retryQueue: NonNegativeIntSchema,
      failedPushes: NonNegativeIntSchema,
      stale: z.boolean(),
    })
    .nullable()
    .exactOptional(),
});
export type AgentSync = z.output<typeof AgentSyncSchema>;

/** An agent's `push` is protocol 2: a reply written at 1 (to a request of 1) has none. `agents`: each view with its path. */
function pushNeedsProtocol2(protocol: number, agents: readonly (readonly [PropertyKey, AgentSync])[], field: string, ctx: z.core.$RefinementCtx): void {
  if (protocol >= HEALTH_REPORT_PROTOCOL_VERSION) return;
  for (const [at, a] of agents) {
    if (a.push !== undefined) ctx.addIssue({ code: 'custom', path: [field, at, 'push'], message: `needs protocol ${HEALTH_REPORT_PROTOCOL_VERSION}` });
  }
}

export const AgentSyncRequestSchema = z.strictObject({ protocol: ProtocolSchema, agentIds: z.array(AgentIdSchema).min(1).max(MAX_AGENTS_PAGE) });
export type AgentSyncRequest = z.output<typeof AgentSyncRequestSchema>;

/** The agents asked about that pulled or pushed (an agent that did neither is absent); `at`: the replica's clock the scores were taken at. */
export const AgentSyncResponseSchema = z
  .strictObject({ protocol: ProtocolSchema, at: IsoTimeSchema, agents: z.record(AgentIdSchema, AgentSyncSchema) })
  .superRefine((r, ctx) => pushNeedsProtocol2(r.protocol, Object.entries(r.agents), 'agents', ctx));
export type AgentSyncResponse = z.output<typeof AgentSyncResponseSchema>;

export const FleetHealthRequestSchema = z.strictObject({ protocol: ProtocolSchema, worst: z.int().min(0).max(MAX_WORST_AGENTS).exactOptional() });
export type FleetHealthRequest = z.output<typeof FleetHealthRequestSchema>;

/** The fleet's score (libs/observability `fleetHealth` over every agent that pulled or pushed) and its worst agents. */
export const FleetHealthResponseSchema = z
  .strictObject({
    protocol: ProtocolSchema,
    at: IsoTimeSchema,
    score: z.int().min(0).max(100),
    status: z.enum(['healthy', 'degraded', 'unhealthy']),
    reasons: z.array(ReasonSchema).max(16),
    agents: NonNegativeIntSchema,
    byStatus: z.strictObject({ healthy: NonNegativeIntSchema, degraded: NonNegativeIntSchema, unhealthy: NonNegativeIntSchema }),
    /** Lowest score first. */
    worst: z.array(AgentSyncSchema).max(MAX_WORST_AGENTS),
  })
  .superRefine((r, ctx) => pushNeedsProtocol2(r.protocol, r.worst.map((a, i) => [i, a] as const), 'worst', ctx));
export type FleetHealthResponse = z.output<typeof FleetHealthResponseSchema>;

// --- dead letters ---

export const DeadLettersListRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  /** Dead letters with a stream sequence above this (the previous page's `nextCursor`). */
  after: NonNegativeIntSchema.exactOptional(),
  limit: z.int().min(1).max(MAX_DEAD_LETTERS_PAGE).exactOptional(),
});
export type DeadLettersListRequest = z.output<typeof DeadLettersListRequestSchema>;

/** One dead letter as its headers describe it (libs/messaging `deadLetterHeaders`). */
export const DeadLetterItemSchema = z.strictObject({
  /** Its sequence in the dead-letter stream: what replay and discard name. */
  seq: PositiveIntSchema,
  /** `<ns>.dlq.<source stream>`. */
  subject: TextSchema(512),
  storedAt: IsoTimeSchema,
  /** From the `Fleet-Reject-*` and `Fleet-Original-*` headers; null when a header is missing. */
  code: ErrorCodeSchema.nullable(),
  reason: ReasonSchema.nullable(),
  originalSubject: TextSchema(512).nullable(),
  originalStream: TextSchema(256).nullable(),
  originalSequence: PositiveIntSchema.nullable(),
  deliveryCount: PositiveIntSchema.nullable(),
  /** For one change refused out of a pushed batch: its position among the batch's dead letters; null for a whole message. */
  part: NonNegativeIntSchema.nullable(),
  /** Every header it carries, the original message's ones included (`traceparent`...). */
  headers: z.record(TextSchema(256), z.array(ReasonSchema).max(16)),
  bytes: NonNegativeIntSchema,
  /** Why replay would refuse it; absent when it can be replayed. */
  notReplayable: ReasonSchema.exactOptional(),
});
export type DeadLetterItem = z.output<typeof DeadLetterItemSchema>;

export const DeadLettersListResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  items: z.array(DeadLetterItemSchema).max(MAX_DEAD_LETTERS_PAGE),
  /** The last sequence looked at: `after` for the next page. */
  nextCursor: NonNegativeIntSchema,
  hasMore: z.boolean(),
  /** Messages in the dead-letter stream now. */
  total: NonNegativeIntSchema,
});
export type DeadLettersListResponse = z.output<typeof DeadLettersListResponseSchema>;

export const DeadLetterShowRequestSchema = z.strictObject({ protocol: ProtocolSchema, seq: PositiveIntSchema });
export type DeadLetterShowRequest = z.output<typeof DeadLetterShowRequestSchema>;

/**
 * One dead letter with its body: `payload` when it is JSON, else `rawBase64`. A body too big to show
 * whole under NATS's `max_payload` (JSON or base64 make it bigger) is cut: `truncated` says so, and its
 * first bytes are in `payloadText` (JSON, as text: a prefix is not JSON) or `rawBase64`.
 */
export const DeadLetterShowResponseSchema = z.strictObject({
  protocol: ProtocolSchema,
  item: DeadLetterItemSchema,
  payload: z.unknown().exactOptional(),
  payloadText: z.string().exactOptional(),
  rawBase64: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, { error: 'expected base64' }).exactOptional(),
  /** Set when the body was cut: its whole size and the bytes shown (a prefix). */
  truncated: z.strictObject({ bytes: NonNegativeIntSchema, shownBytes: NonNegativeIntSchema }).exactOptional(),
});
export type DeadLetterShowResponse = z.output<typeof DeadLetterShowResponseSchema>;

/** Replay or discard: dead letters by their sequence, each handled on its own (one failing does not stop the others). */
export const DeadLettersActionRequestSchema = z.strictObject({
  protocol: ProtocolSchema,
  seqs: z
    .array(PositiveIntSchema)
    .min(1, { error: 'name at least one dead letter' })
    .max(MAX_DEAD_LETTERS_PAGE)
    .refine((a) => new Set(a).size === a.length, { error: 'a sequence is named twice' }),
});
export type DeadLettersActionRequest = z.output<typeof DeadLettersActionRequestSchema>;

export const DeadLetterActionResultSchema = z.discriminatedUnion('outcome', [
  /** Re-published to `subject` and acknowledged by `stream` at `streamSeq`, then removed from the dead-letter stream. */
  z.strictObject({
    seq: PositiveIntSchema,
    outcome: z.literal('replayed'),
    subject: TextSchema(512),
    stream: TextSchema(256),
    streamSeq: PositiveIntSchema,
    /** JetStream found the same replay within its dedupe window (a replay retried): stored once. */
    duplicate: z.boolean(),
  }),
  z.strictObject({ seq: PositiveIntSchema, outcome: z.literal('discarded') }),
  /** Nothing done to this one: it stays in the dead-letter stream (unless it was not there). */
  z.strictObject({ seq: PositiveIntSchema, outcome: z.literal('failed'), error: ErrorBodySchema }),
]);
export type DeadLetterActionResult = z.output<typeof DeadLetterActionResultSchema>;

export const DeadLettersActionResponseSchema = z.strictObject({ protocol: ProtocolSchema, results: z.array(DeadLetterActionResultSchema).max(MAX_DEAD_LETTERS_PAGE) });
export type DeadLettersActionResponse = z.output<typeof DeadLettersActionResponseSchema>;

// --- verify ---

export const VerifyRequestSchema = z.strictObject({ protocol: ProtocolSchema, maxDiffs: z.int().min(1).max(MAX_VERIFY_DIFFS).exactOptional() });
export type VerifyRequest = z.output<typeof VerifyRequestSchema>;

export const VerifyDiffSchema = z.strictObject({
  /** The record that differs (records, record_states), or the origin (origins). */
  ref: RecordRefSchema.exactOptional(),
  origin: TextSchema(128).exactOptional(),
  why: ReasonSchema,
});
export type VerifyDiff = z.output<typeof VerifyDiffSchema>;

export const VerifyCheckSchema = z.strictObject({
  /** The projection checked: `origins`, `records` or `record_states`. */
  name: TextSchema(64),
  /** The log's highest seq in the snapshot the check read. */
  headSeq: NonNegativeIntSchema,
  /** The projection's cursor in that snapshot (what it promises to have applied). */
  cursor: NonNegativeIntSchema,
  /** Rows (records, origins) compared. */
  checked: NonNegativeIntSchema,
  /** Logged changes read and folded. */
  changesRead: NonNegativeIntSchema,
  /** All differences found; `diffs` lists the first ones. */
  differences: NonNegativeIntSchema,
  diffs: z.array(VerifyDiffSchema).max(MAX_VERIFY_DIFFS),
  /** Set when the check could not run, and why (the log was compacted, say); nothing was compared. */
  skipped: ReasonSchema.exactOptional(),
});
export type VerifyCheck = z.output<typeof VerifyCheckSchema>;

export const VerifyResponseSchema = z.strictObject({ protocol: ProtocolSchema, service: ServerServiceSchema, durationMs: NonNegativeIntSchema, checks: z.array(VerifyCheckSchema).max(8) });
export type VerifyResponse = z.output<typeof VerifyResponseSchema>;

// --- decoders ---

const req = <S extends z.ZodType>(schema: S) => (b: Uint8Array): z.output<S> => decodeMessage(schema, b, MAX_OPERATOR_REQUEST_BYTES);
const rep = <S extends z.ZodType>(schema: S) => (b: Uint8Array): Reply<z.output<S>> => decodeReply(schema, b, MAX_OPERATOR_REPLY_BYTES);

export const decodeStatusRequest = req(StatusRequestSchema);
export const decodeStatusReply = rep(StatusResponseSchema);
export const decodeAgentsListRequest = req(AgentsListRequestSchema);
export const decodeAgentsListReply = rep(AgentsListResponseSchema);
export const decodeAgentShowRequest = req(AgentShowRequestSchema);
export const decodeAgentShowReply = rep(AgentShowResponseSchema);
export const decodeAgentGroupsRequest = req(AgentGroupsRequestSchema);
export const decodeAgentGroupsReply = rep(AgentGroupsResponseSchema);
export const decodeAgentSyncRequest = req(AgentSyncRequestSchema);
export const decodeAgentSyncReply = rep(AgentSyncResponseSchema);
export const decodeFleetHealthRequest = req(FleetHealthRequestSchema);
export const decodeFleetHealthReply = rep(FleetHealthResponseSchema);
export const decodeDeadLettersListRequest = req(DeadLettersListRequestSchema);
export const decodeDeadLettersListReply = rep(DeadLettersListResponseSchema);
export const decodeDeadLetterShowRequest = req(DeadLetterShowRequestSchema);
export const decodeDeadLetterShowReply = rep(DeadLetterShowResponseSchema);
export const decodeDeadLettersActionRequest = req(DeadLettersActionRequestSchema);
export const decodeDeadLettersActionReply = rep(DeadLettersActionResponseSchema);
export const decodeVerifyRequest = req(VerifyRequestSchema);
export const decodeVerifyReply = rep(VerifyResponseSchema);
