/**
 * What the sync manager needs of the agent's local store. A structural subset of
 * `@fleet/agent-store`'s `LocalStore`, declared here so that this lib depends on the contract it
 * uses and nothing more (and can be tested with a store in memory): pass a `SqliteLocalStore` as is.
 */
import type { PreparedWireRows, WireRecord } from '@fleet/contracts';
import type { Change, MerkleEntry, RecordRef, RecordState } from '@fleet/sync-core';
import type { OutboxFigures } from './protocol/wire';

/** The server's cursor as the store keeps it: `null` on a fresh or restored store (pull from 0). */
export type StoredCursor = string | number | null;

export interface SyncStore {
  readonly agentId: string;
  /** The full CRDT state, or null: the snapshot `mergePulledRecords` counts conflicts against. */
  getState(ref: RecordRef): RecordState | null;
  /** The first `limit` queued changes in originSeq order (frozen from then on: never coalesced again). */
  peekOutbox(limit: number): Change[];
  /** Only after the PubAck of the batch that carried them. */
  markSent(changeIds: readonly string[]): number;
  recordFailure(changeIds: readonly string[], error: string): void;
  /** Unsent changes queued (asked after every batch: must not scan the outbox). */
  outboxSize(): number;
  /**
   * The outbox's figures for the push-side report a pull carries (`PullRequest.health`, protocol 2); may
   * scan the outbox (asked at most every few seconds). Optional: without it, pulls report nothing.
   */
  outboxStats?(): OutboxFigures;
  /** Joins the states and sets the cursor in ONE transaction: the cursor is never ahead of what is applied. */
  applyRemote(items: readonly { readonly ref: RecordRef; readonly state: RecordState }[], cursorAfter: StoredCursor): { readonly changed: number };
  /**
   * `applyRemote` for wire records the pull decoder has checked (no second check, a bulk insert of
   * records the store does not hold). Optional: without it, pulls go through `applyRemote`.
   */
  applyRemoteWire?(records: readonly WireRecord[], cursorAfter: StoredCursor): { readonly changed: number; readonly conflicts: number };
  /**
   * `applyRemoteWire` of a snapshot page's records prepared by the pull decoder (contracts'
   * `prepareWireRows`, on its worker thread). Optional: without it, snapshot pages are decoded on the
   * sync manager's thread and go through `applyRemoteWire`.
   */
  applyRemoteRows?(prepared: PreparedWireRows, cursorAfter: StoredCursor): { readonly changed: number; readonly conflicts: number };
  /** `ownFrom`: see the agent store's SyncState (absent: pulls echo the agent's own changes). */
  /** `scopes`: the scopes the cursor covers (undefined: not recorded, a store from before the field). */
  syncState(): { readonly cursor: StoredCursor; readonly needsVerification: boolean; readonly ownFrom?: number; readonly originSettled?: boolean; readonly scopes?: readonly string[] };
  /**
   * Once, before the first push or pull of a store whose `originSettled` is false: the change log's
   * highest origin sequence of this agent id (null: none); the store renumbers its queued changes above
   * it when they are not well above already (agent-store `settleOrigin`). Optional: a store without it
   * is taken as settled.
   */
  settleOrigin?(lastLogged: number | null): { readonly shift: number; readonly renumbered: number; readonly ownFrom: number };
  setSyncState(patch: { lastSyncAt?: number | null; lastPullAt?: number | null; needsVerification?: boolean; cursor?: null; scopes?: readonly string[] }): void;
  /** (key, visible hash) of every record of the collection, live or deleted. */
  merkleEntries(scope: string, collection: string): Iterable<MerkleEntry>;
  /** Calls back after each committed change; `local` / `captured` ones went to the outbox (`renumbered`: a queued one moved by `settleOrigin`). */
  watch(listener: (event: { readonly source: 'local' | 'captured' | 'remote' | 'renumbered' }) => void): () => void;
  /**
   * Queues the current local state of these records for push again, as new local changes restating it
   * (a verification found the server lacks writes made here, or holds older ones, e.g. its log was
   * restored from an older backup); returns how many records were queued. Only records of the agent's
   * own scope; one with a conflict an operator must settle is not (the sync manager reports it as
   * unrepaired). Not held after a restore: it is the verification's own repair. See `LocalStore`.
   */
  requeueForPush(refs: readonly RecordRef[]): number;
  /**
   * A verification's repair in a server-owned scope (fleet, group.<name>: the server is authoritative):
   * the server's states REPLACE the local records (no join: a corruption that kept a write's stamp is
   * undone, derived columns included) and the `drop` refs (keys the server does not hold) are removed,
   * in one transaction, the outbox and the cursor untouched. Refuses refs of any other scope
   * (FLEET_AUTH_003), the agent's own above all. Returns how many records were rewritten and removed.
   * See `LocalStore`.
   */
  replaceFromServer(items: readonly { readonly ref: RecordRef; readonly state: RecordState }[], drop: readonly RecordRef[]): { readonly replaced: number; readonly dropped: number };
}
