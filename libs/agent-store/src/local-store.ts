/**
 * The agent's local store: the port. `SqliteLocalStore` (sqlite-local-store.ts) implements it.
 *
 * Why a port at all, when there is one adapter: the sync manager (push, pull, merge, reconnection)
 * is written against this interface, so it can be tested with a store opened on a temp file and
 * nothing else, and the contract each method promises is written down once, here, and checked once
 * by `describeLocalStoreConformance` for every implementation.
 *
 * Why synchronous: better-sqlite3 is synchronous, and a transaction must never span an `await`
 * (another caller's writes would interleave into it and roll back with it). Every call here is
 * a few microseconds of SQLite work on the agent's own disk; there is nothing to wait for.
 *
 * The invariants every implementation keeps:
 * - A local write and its outbox row commit together or not at all (one SQLite transaction).
 * - The outbox is ordered by `originSeq`; a row leaves it only through `markSent` (after a PubAck).
 * - Nothing recorded is dropped: an over-full outbox refuses the write (FLEET_AGENT_003), a direct
 *   SQL write that cannot be turned into a change yet stays in the capture table.
 * - `applyRemote` applies a batch and moves the cursor in the same transaction: the cursor is never
 *   ahead of what is applied, so a crash re-pulls at most one batch (the CRDT join is idempotent).
 */
import type { Change, Fields, HlcString, MerkleEntry, RecordRef, RecordState, RecordStatus, VersionVector } from '@fleet/sync-core';

/** A record as a local reader sees it. */
export interface StoredRecord {
  readonly ref: RecordRef;
  /**
   * `live` or `deleted` (a row exists once anything was written or received); `absent` only in the
   * event of a record `replaceFromServer` removed.
   */
  readonly status: RecordStatus;
  /** The visible fields; `null` unless live. */
  readonly fields: Fields | null;
  /** Some register holds concurrent writes a `manual` strategy leaves to an operator. */
  readonly conflicted: boolean;
  /** `recordHash` of the visible record (what Merkle buckets compare). */
  readonly hash: string;
  readonly vv: VersionVector;
}

export interface QueryOptions {
  /** Only keys starting with this prefix (exact code point prefix, no wildcards). */
  readonly prefix?: string;
  /** At most this many records (default 1000). */
  readonly limit?: number;
  /** Keys strictly after this one: pass the last key of a page to get the next page. */
  readonly after?: string;
}

/** What `watch` listeners receive, after the transaction that made it committed. */
export interface StoreEvent {
  /**
   * `local`: the store API; `captured`: a direct SQL write turned into a change; `remote`: pulled from
   * the server; `renumbered`: `settleOrigin` moved a queued change above the log's numbers (no new
   * write: the fields are unchanged, the record's vector and the change's numbers are not).
   */
  readonly source: 'local' | 'captured' | 'remote' | 'renumbered';
  readonly ref: RecordRef;
  /**
   * The change made (local, captured), applied (remote, when given as a change), or renumbered (same
   * `changeId`, new `originSeq`, vector and hash); absent for merged states.
   */
  readonly change?: Change;
  readonly record: StoredRecord;
}

export type StoreListener = (event: StoreEvent) => void;

/** A pulled item: a change, or a (delta) record state encoded with `encodeRecordState`. */
export type RemoteItem = Change | { readonly ref: RecordRef; readonly state: string | RecordState };

/** An opaque pull cursor (the server's `seq`, or whatever the delta calculator hands out). `null`: unknown. */
export type SyncCursor = string | number | null;

export interface SyncState {
  /** Epoch ms of the last complete sync (push and pull), or null. */
  readonly lastSyncAt: number | null;
  /** Epoch ms of the last pull applied, or null. */
  readonly lastPullAt: number | null;
  /** Where the next pull starts; `null` after a restore or on a fresh store: start by verifying (Merkle). */
  readonly cursor: SyncCursor;
  /**
   * Set by a restore: the local state may lack writes the server has (made after the backup), so
   * the cursor cannot be trusted and local writes are held (FLEET_AGENT_004) until the sync manager
   * has verified with the server and clears the flag.
   */
  readonly needsVerification: boolean;
  /**
   * The first origin sequence this store assigned itself: it holds every change of its own origin from
   * there on, so pulls need not echo them (`ownFrom` of the pull request). A new store: its floor + 1,
   * the floor read off its clock when it was created (`originSeqFloor`), above any sequence an earlier
   * store of the same agent id used, whose changes it must receive; after a restore, the jumped
   * sequence + 1 (the writes made after the backup are not held); after `settleOrigin` renumbered, moved
   * up by the same shift; a store from before this field counts from its next change.
   */
  readonly ownFrom: number;
  /**
   * Whether the store knows its numbers are above every change the log holds of its agent id: false on a
   * new store until `settleOrigin` (the sync manager asks the server before the first push or pull);
   * true on a store from before this field, which has synced under its numbers already.
   */
  readonly originSettled: boolean;
  /** The scopes `cursor` was pulled for (set by the sync manager; absent on a store from before the field). */
  readonly scopes?: readonly string[];
}

/** What `settleOrigin` did: how far the store's numbers moved, how many queued changes it renumbered, and its `ownFrom` now. */
export interface OriginSettlement {
  readonly shift: number;
  readonly renumbered: number;
  readonly ownFrom: number;
}

export interface OutboxStats {
  /** Unsent changes queued. */
  readonly size: number;
  /** The configured bound (FLEET_AGENT_OUTBOX_MAX). */
  readonly max: number;
  /** Epoch ms the oldest queued change was first made (a coalesced row keeps the oldest time), or null. */
  readonly oldestAt: number | null;
  /** `now - oldestAt`, or null when empty. */
  readonly oldestAgeMs: number | null;
  /** Queued changes with at least one failed push attempt. */
  readonly failures: number;
  /** `recordFailure` calls since the last `markSent`: the attempt number for `backoffDelay`. */
  readonly consecutiveFailures: number;
  /** The last push error recorded, or null. */
  readonly lastError: string | null;
  readonly lastErrorAt: number | null;
  /** Rows already handed to the sync manager by `peekOutbox` (frozen: never coalesced again). */
  readonly inFlight: number;
  /** Direct SQL writes captured but not yet turned into changes. */
  readonly capturedPending: number;
  /** Direct SQL writes that could not be turned into changes (kept in `capture_rejected` with the reason). */
  readonly capturedRejected: number;
}

export interface ProcessCapturedResult {
  /** Captured rows turned into changes (or found to change nothing). */
  readonly processed: number;
  /** Rows moved to `capture_rejected` (invalid content), with their reason. */
  readonly rejected: number;
  /** Rows left for later (outbox full, writes held after a restore). */
  readonly remaining: number;
}

export interface BackupInfo {
  readonly id: string;
  readonly kind: 'full' | 'incremental';
  /** The full backup this one chains to (itself for a full backup). */
  readonly fullId: string;
  /** The backup this one follows (null for a full backup). */
  readonly parentId: string | null;
  /** The chain's directory: what `restore` takes. */
  readonly dir: string;
  /** The file written. */
  readonly file: string;
  /** The store's modification counter the backup is complete up to. */
  readonly marker: number;
  readonly createdAt: number;
  readonly records: number;
  readonly outbox: number;
}

export interface LocalStore {
  /** The origin id of every change this store makes. */
  readonly agentId: string;

  // --- reading ---
  /** The record, or null if nothing was ever written or received for it (a deleted one is returned with `status: 'deleted'`). */
  get(ref: RecordRef): StoredRecord | null;
  /** The full CRDT state (for the sync manager's merge and delta work), or null. */
  getState(ref: RecordRef): RecordState | null;
  /** Live records of one collection, by key (code point order), paged with `after`. */
  query(scope: string, collection: string, options?: QueryOptions): StoredRecord[];
  /** Records whose register holds a conflict an operator must settle. */
  conflictCount(): number;

  // --- local writes (each: HLC tick, makeLocalChange, outbox row, one transaction) ---
  /**
   * Replaces the record's visible fields with `fields`: fields that differ are written, fields no
   * longer present are unset. Returns the change queued, or null when nothing visible changes.
   */
  put(ref: RecordRef, fields: Fields): Change | null;
  /** Writes the given fields and unsets `unset`; others are left alone. Null when nothing changes. */
  patch(ref: RecordRef, fields: Fields, unset?: readonly string[]): Change | null;
  /** Deletes the record (a tombstone change). Null if it is not live. */
  delete(ref: RecordRef): Change | null;
  /**
   * Runs `fn` in one SQLite transaction: every write inside commits together or not at all (a throw
   * rolls back records, outbox rows, counters). Nested calls join the outer one (as a savepoint).
   * `fn` must be synchronous: a promise returned from it is refused.
   */
  transaction<T>(fn: () => T): T;
  /** Calls `listener` after each committed local, captured or remote change; returns the unsubscribe. */
  watch(listener: StoreListener): () => void;

  // --- direct SQL writes ---
  /** Turns captured direct SQL writes into changes (in capture order). The agent loop calls it; `open` does too. */
  processCaptured(limit?: number): ProcessCapturedResult;

  // --- offline queue, for the sync manager ---
  /**
   * The first `limit` queued changes in `originSeq` order. Rows returned are frozen: never coalesced
   * again, because a publish whose PubAck was lost may have reached the server, and a rewritten row
   * under the same changeId would then be an identity conflict there (FLEET_LOG_001).
   */
  peekOutbox(limit: number): Change[];
  /** Removes rows by changeId. Call only after the PubAck of the batch that carried them. Returns rows removed. */
  markSent(changeIds: readonly string[]): number;
  /** Counts a failed push of these rows and keeps the error for `outboxStats`. */
  recordFailure(changeIds: readonly string[], error: string): void;
  outboxStats(): OutboxStats;
  /** Unsent changes queued: `outboxStats().size` from a counter the store keeps (no scan; the sync manager asks after every batch). */
  outboxSize(): number;
  /** Coalesces every unfrozen record run in the outbox now (normally automatic past the soft limit). Returns rows saved. */
  coalesceOutbox(): number;

  // --- remote changes, for the sync manager ---
  /**
   * Applies pulled changes or delta states (CRDT join against the local state: pending local changes
   * stay queued and win or lose by the same rules as on the server), moves the HLC past them
   * (`hlcReceive`), and sets the cursor to `cursorAfter`, all in one transaction.
   */
  applyRemote(items: readonly RemoteItem[], cursorAfter: SyncCursor): { applied: number; changed: number; conflicts: number; drifted: number };
  syncState(): SyncState;
  setSyncState(patch: Partial<SyncState>): void;
  /**
   * Once, before the store's first push or pull: `lastLogged` is the change log's highest origin
   * sequence of this agent id (null: none). When it is not well below the store's own numbers (an
   * earlier store of the same id, on a host reinstalled with its clock behind), every queued change is
   * renumbered above it (origin sequence and own vector entry shifted alike, records folded again) and
   * the counter and `ownFrom` follow; then `originSettled` is true and later calls do nothing.
   * Watchers get one `renumbered` event per renumbered change, after the commit.
   */
  settleOrigin(lastLogged: number | null): OriginSettlement;

  // --- anti-entropy ---
  /** Every record of the collection (live or deleted) as (key, visible hash), by key: the input of sync-core's Merkle tree. */
  merkleEntries(scope: string, collection: string): Iterable<MerkleEntry>;
  /**
   * Every (scope, collection) the store holds a record of (live or deleted), each once, by scope then
   * collection: what `agent run` verifies. Cheap (one index seek per pair held, not a read of every record).
   */
  collections(): { scope: string; collection: string }[];
  /**
   * Queues, for each of these records in this agent's own scope, a new local change restating its
   * current state: a put of every visible field (and an unset of every field it holds hidden) when live,
   * a delete when deleted; split into several changes when one change cannot carry it all. The same path
   * as a local write (HLC tick, version vector, outbox row), in one transaction, and not held after a
   * restore (it is the verification's repair: the server lacks writes made here, or holds older ones).
   * Skips refs of other scopes, records the store does not hold and records with a conflict an operator
   * must settle; returns how many records were queued. FLEET_AGENT_003 (outbox full) queues nothing.
   */
  requeueForPush(refs: readonly RecordRef[]): number;
  /**
   * A verification's repair in server-owned scopes (`fleet`, `group.<name>`), where the server is
   * authoritative and the agent never writes: each state in `items` (the server's whole state of the
   * record, as pull-by-keys returns it) REPLACES the stored record: no join, so a local corruption that
   * kept a write's stamp (which a join would keep) is undone; the state and everything derived from it
   * (fields, hash, status, conflict flag, vector) are rewritten when any of them differs from what the
   * state gives. Each `drop` ref (a record the server does not hold) is removed: `get` and `getState`
   * return null for it and `merkleEntries` no longer lists it; a state with no write at all is dropped
   * likewise. All in one transaction; the outbox and the cursor are not touched (a repair is not a
   * position in the log), the HLC moves past the states received. Watchers get a `remote` event per
   * record replaced or dropped (a dropped one with `status: 'absent'`). Refs of any other scope refuse
   * the whole call with FLEET_AUTH_003 (the agent's own scope above all: there the server's state is
   * joined by `applyRemote`, and what the server lacks re-pushed by `requeueForPush`). Returns how many
   * records were rewritten and how many removed (refs already equal, or not held, count for nothing).
   */
  replaceFromServer(items: readonly { readonly ref: RecordRef; readonly state: string | RecordState }[], drop?: readonly RecordRef[]): { replaced: number; dropped: number };

  // --- backups ---
  /** A consistent online backup: `full` starts a new chain; `incremental` (default) chains to the last one (a full one if none). */
  backup(options?: { full?: boolean; dir?: string }): BackupInfo;

  /** The last HLC issued or received (for status and tests). */
  clock(): HlcString;
  close(): void;
}
