/**
 * The data model shared by the server and the agents. Pure types: no I/O.
 *
 * A record is addressed by (scope, collection, key) and holds a JSON object of fields.
 * A change is the immutable event that moves a record from one version to the next; the
 * change log is the source of truth and every projection is derived from it.
 */

/** Any JSON value. Records and fields hold only JSON, so canonical hashing is well defined. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [k: string]: JsonValue };

/** A record's fields: a JSON object. */
export type Fields = { readonly [field: string]: JsonValue };

/**
 * Who holds a record:
 * - `host.<agentId>`: host-owned (inventory, local settings), written by that agent.
 * - `fleet`, `group.<name>`: server-owned desired state, fanned out to subscribed agents.
 */
export type Scope = string;

/** The identity of a record. */
export interface RecordRef {
  readonly scope: Scope;
  readonly collection: string;
  readonly key: string;
}

/** `put` writes fields; `delete` leaves a tombstone (with its clock) so a concurrent edit is seen as a conflict. */
export type ChangeOp = 'put' | 'delete';

/** The origin id of changes written by the server (resolutions, admin writes). */
export const SERVER_ORIGIN = 'server';

/**
 * An encoded hybrid logical clock timestamp. The encoding sorts lexicographically in
 * time order (see `hlc.ts`), so it can be compared as a string and indexed by a database.
 */
export type HlcString = string;

/**
 * A version vector: for each actor that wrote the record, how many of its writes are included.
 * Actors are origins (agent ids or `server`), so a vector stays as small as the set of writers.
 */
export type VersionVector = { readonly [actor: string]: number };

/**
 * The immutable event. `changeId` is the idempotency key (UUIDv7); `(origin, originSeq)` is a
 * second one that survives an agent regenerating ids, since JetStream's dedupe window is minutes
 * and an agent may replay after days.
 */
export interface Change extends RecordRef {
  readonly changeId: string;
  /** Agent id, or `server`. */
  readonly origin: string;
  /** Monotonic per origin, starting at 1: the order the origin made its changes in. */
  readonly originSeq: number;
  readonly op: ChangeOp;
  /** For `put`: only the fields that changed, with their new values. Empty for `delete`. */
  readonly fields: Fields;
  /** For `put`: the fields this change removed. Absent when none. */
  readonly unset?: readonly string[];
  /** When the change was made, as a hybrid logical clock; every field it writes carries this clock. */
  readonly hlc: HlcString;
  /** The record's version vector after this change. */
  readonly vv: VersionVector;
  /** Content hash of the whole record after the change (canonical JSON, see `hash.ts`). */
  readonly hash: string;
  /** Wire protocol version the change was written with. */
  readonly protocol: number;
}

/** A change as the change log holds it: with the server sequence assigned on append. Every cursor is a `seq`. */
export interface LoggedChange extends Change {
  readonly seq: number;
}
