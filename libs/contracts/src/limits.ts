/**
 * Size caps on everything that crosses the wire. Every decoder enforces them, and a message
 * over a cap is rejected with FLEET_DECODE_004 (dead-lettered with the reason), never
 * truncated. The numbers are chosen from the limits below them:
 *
 * - NATS rejects a message over the server's `max_payload` (1 MiB by default), and headers
 *   count towards it. A push batch, a pull response and a dead letter (which carries the
 *   rejected payload plus a reason) must each fit, with room for headers.
 * - PostgreSQL btree index entries are limited to about 2.7 kB, and (scope, collection, key)
 *   is a unique index; identifiers are measured in UTF-8 bytes for that reason.
 * - A change is hashed, merged and kept in memory whole; one agent must not be able to make a
 *   service allocate much more than its share.
 *
 * Raising a cap is a protocol change for the side that receives it: old receivers would
 * reject what new senders send. Lowering one can strand changes already in outboxes.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** NATS's default `max_payload`; the caps below leave room under it for headers. */
export const NATS_MAX_PAYLOAD_BYTES = 1 * MiB;

// --- whole messages (checked on the raw bytes, before parsing) ---

/** A push batch (agent -> server). 960 KiB: under NATS's 1 MiB with room for headers (trace context, msg id). */
export const MAX_PUSH_BATCH_BYTES = 960 * KiB;
/** An appended event (change-log -> other services). Same bound as a push batch: it re-emits what was pushed. */
export const MAX_APPENDED_EVENT_BYTES = 960 * KiB;
/** A pull request is small: scopes, a cursor, optionally known versions. 256 KiB bounds known versions. */
export const MAX_PULL_REQUEST_BYTES = 256 * KiB;
/** A pull response (after decompression). The delta calculator fills pages up to this. */
export const MAX_PULL_RESPONSE_BYTES = 960 * KiB;
/**
 * A record's whole state as it travels (its wire record's JSON in UTF-8, without scope, collection and
 * key): a snapshot, resync or pull-keys page carries a record whole, uncompressed for an agent that does
 * not take gzip, so a state must fit under MAX_PULL_RESPONSE_BYTES with room for its scope, collection,
 * key and the page around it. Writers refuse a write that would make a record larger: the agent's local
 * and captured writes, the server's writes. (Each change is capped on its own; this bounds what many
 * changes add up to: without it, a record grown past max_payload could not be pulled at all.)
 */
export const MAX_RECORD_STATE_BYTES = 896 * KiB;
/** An error reply: a code and a message. */
export const MAX_ERROR_REPLY_BYTES = 16 * KiB;
/**
 * A dead-letter record: the rejected payload (at most a push batch) plus the reason. It is
 * larger than a push batch on purpose, so a rejected batch always fits; a NATS server used
 * with this project must allow it (set `max_payload` to at least 2 MiB).
 */
export const MAX_DEAD_LETTER_BYTES = 2 * MiB - 64 * KiB;

// --- counts ---

/** Changes in one push batch: bounds the per-batch work and the blast radius of a redelivery. */
export const MAX_CHANGES_PER_PUSH = 500;
/** Changes in one appended event: one push batch's worth. */
export const MAX_CHANGES_PER_APPENDED_EVENT = MAX_CHANGES_PER_PUSH;
/**
 * Records in one pull response page, and the largest `limit` a pull may ask for. 5,000: a compacted
 * record of a few fields is ~150-250 bytes on the wire, so a 960 KiB page holds a few thousand; a
 * smaller cap would make a 1,000,000-record pull pay for more round trips than it needs.
 */
export const MAX_PULL_LIMIT = 5000;
/** Scopes in one pull: an agent reads its host scope, `fleet` and its groups; 64 is generous. */
export const MAX_PULL_SCOPES = 64;
/** Known versions an agent may send with a pull. */
export const MAX_KNOWN_VERSIONS = 1000;
/** Fields written (plus fields unset) by one change: records are settings and inventory items, not tables. */
export const MAX_FIELDS_PER_CHANGE = 256;
/** Actors in one version vector: actors are the writers of a record (an agent and the server, rarely more). */
export const MAX_VV_ACTORS = 64;

// --- values ---

/** A record key, in UTF-8 bytes: part of a unique btree index (limit ~2.7 kB with scope and collection). */
export const MAX_KEY_BYTES = 512;
/** A collection name, in characters (ASCII only): it is an identifier, used in config, metrics and logs. */
export const MAX_COLLECTION_LENGTH = 128;
/** A scope: `host.` or `group.` plus a subject token of at most 128 characters. */
export const MAX_SCOPE_LENGTH = 6 + 128;
/** A field name, in UTF-8 bytes. */
export const MAX_FIELD_NAME_BYTES = 256;
/** One field's value, as JSON in UTF-8 bytes: a certificate chain or a package list fits; a file does not. */
export const MAX_FIELD_VALUE_BYTES = 64 * KiB;
/** All the fields of one change together, as JSON: several changes must fit in a batch. */
export const MAX_CHANGE_FIELDS_BYTES = 256 * KiB;
/** Nesting depth inside a field value: canonical hashing and merging recurse over it. */
export const MAX_JSON_DEPTH = 32;
/** An encoded HLC timestamp: time and counter, plus the node id (an origin, at most 128 characters). */
export const MAX_HLC_LENGTH = 192;
/** A human reason or message (error replies, dead letters); also sent in a NATS header, so kept short. */
export const MAX_REASON_LENGTH = 4096;

// --- the agent's push-side health report (a pull request's `health`) ---

/** A count an agent reports (outbox, retry queue, failed pushes in a row): fits PostgreSQL's integer. */
export const MAX_REPORTED_COUNT = 2_147_483_647;
/** An age an agent reports, in ms: ten years (an older change is a broken clock, not a backlog). */
export const MAX_REPORTED_AGE_MS = 10 * 365 * 24 * 3_600_000;
