/**
 * The pure halves of the agent's push, pull and verification steps (the adapter in
 * `@fleet/agent-sync` moves the bytes):
 * - `planPushBatch`: which outbox rows go in the next batch, and `batchIdOf` its dedupe id.
 * - `mergePulledRecords`: what a pulled page does to the local replica, counted as the seed's
 *   reconnection protocol counts conflicts, using the same join and strategies as the server.
 * - `planVerifyRepairs`: from a Merkle diff and the fetched server states, what to re-push.
 */
import { hash } from 'node:crypto';
import type { Change, RecordRef, VersionVector } from './model';
import type { RecordState } from './record';
import { emptyRecord, recordHash } from './record';
import type { StrategyConfig } from './resolve';
import { conflictOf, mergeRecordStates, refreshView } from './resolve';
import { vvCompare } from './vv';

// --- push ------------------------------------------------------------------------------------------

export interface PushBatchLimits {
  /** Changes per batch (contracts: MAX_CHANGES_PER_PUSH). */
  readonly maxChanges: number;
  /** Bytes the changes may take in the batch (contracts: MAX_PUSH_BATCH_BYTES minus the envelope). */
  readonly maxBytes: number;
  /** Encoded size of one change in the batch (the adapter measures its JSON). */
  readonly sizeOf: (change: Change) => number;
}

export interface PushBatchPlan {
  /** In originSeq order; empty when the outbox is. */
  readonly changes: readonly Change[];
  /** A change that alone exceeds `maxBytes` (contracts' field caps make this a bug, not a state): it must not block the rest forever, so the caller reports it. */
  readonly oversized?: Change;
}

/**
 * The next batch: the longest prefix of the outbox, in originSeq order, within both caps. Order
 * matters: the change log checks `(origin, originSeq)` and the server's vectors expect an origin's
 * changes in order, so a batch never skips a row to fit a later, smaller one.
 */
export function planPushBatch(outbox: readonly Change[], limits: PushBatchLimits): PushBatchPlan {
  const sorted = [...outbox].sort((a, b) => a.originSeq - b.originSeq);
  const out: Change[] = [];
  let bytes = 0;
  for (const c of sorted) {
    if (out.length >= limits.maxChanges) break;
    const size = limits.sizeOf(c) + 1;
    if (bytes + size > limits.maxBytes) {
      if (out.length === 0) return { changes: [], oversized: c };
      break;
    }
    out.push(c);
    bytes += size;
  }
  return { changes: out };
}

/**
 * The batch's `Nats-Msg-Id` and `batchId`: a UUID (version 8, RFC 9562's custom layout) from
 * sha256 of its change ids in order. A retry of the same rows (after a lost PubAck, or a crash
 * between the publish and `markSent`) gets the same id, so JetStream drops the copy within its
 * dedupe window; beyond it the change log dedupes by `changeId` and `(origin, originSeq)`.
 */
export function batchIdOf(changeIds: readonly string[]): string {
  const h = hash('sha256', changeIds.join('\n'), 'hex');
  const variant = ((parseInt(h.slice(16, 17), 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// --- pull ------------------------------------------------------------------------------------------

/** One record of a pull page: the server's (compacted) state of it. */
export interface RemoteRecord extends RecordRef {
  readonly state: RecordState;
}

export const refKey = (r: RecordRef): string => JSON.stringify([r.scope, r.collection, r.key]);

export interface PulledMerge {
  /** The joined states, in page order (what the store will hold once it applies the page). */
  readonly merged: readonly RemoteRecord[];
  /** Records the page changed here (its state added something the replica did not have). */
  readonly changed: number;
  /**
   * Records where the server's state met local changes not yet pushed, or the join left concurrent
   * writes that were not there before: the seed's step 4.
   */
  readonly conflictsDetected: number;
  /** Of those, settled by the collection's strategy (the view is deterministic and not flagged for an operator). */
  readonly conflictsResolved: number;
  /** The conflicts, for the log (every conflict is recorded with all sides). */
  readonly conflicts: readonly RecordRef[];
}

/** Whether `a` holds a write `b` has not seen. */
export function vvHasNews(a: VersionVector, b: VersionVector): boolean {
  const o = vvCompare(a, b);
  return o === 'after' || o === 'concurrent';
}

/**
 * Joins a pulled page into the local states (steps 4-6 of the seed's reconnection protocol: detect,
 * resolve with the collection's strategy, the result to apply). Pure: `local` and `pending` are
 * snapshots the adapter read; the store joins again inside its transaction, so a local write made
 * since the snapshot is never overwritten (the join is idempotent), only possibly missed in the counts.
 */
export function mergePulledRecords(
  page: readonly RemoteRecord[],
  local: (ref: RecordRef) => RecordState | undefined,
  pending: (ref: RecordRef) => boolean,
  config: StrategyConfig,
): PulledMerge {
  const merged: RemoteRecord[] = [];
  const conflicts: RecordRef[] = [];
  let changed = 0;
  let detected = 0;
  let resolved = 0;
  for (const r of page) {
    const ref: RecordRef = { scope: r.scope, collection: r.collection, key: r.key };
    const before = local(ref) ?? emptyRecord(ref);
    const after = mergeRecordStates(before, r.state, config);
    merged.push({ ...ref, state: after });
    const news = vvHasNews(r.state.vv, before.vv);
    if (news) changed++;
    const newConflict = conflictOf(after, config);
    const oldConflict = conflictOf(before, config);
    const raised = newConflict !== undefined && newConflict.id !== oldConflict?.id;
    if ((news && pending(ref)) || raised) {
      detected++;
      conflicts.push(ref);
      if (!after.view.conflicted) resolved++;
    }
  }
  return { merged, changed, conflictsDetected: detected, conflictsResolved: resolved, conflicts };
}

// --- verification ----------------------------------------------------------------------------------

export interface VerifyRepairPlan {
  /** Keys to fetch from the server (full states): joined here, or (`replace`) replacing the local records. */
  readonly fetch: readonly string[];
  /** Keys only here, in a scope this agent may not write and the server does not own: reported, not repaired. */
  readonly unrepairable: readonly string[];
  /**
   * A server-owned scope (fleet, group): the server is authoritative. The fetched states REPLACE the
   * local ones (a join could not undo a local corruption that kept a write's stamp), and every fetched
   * key the server does not return is dropped here.
   */
  readonly replace: boolean;
}

/**
 * First round: from the diff, which keys to fetch. Both trees hold live records only, so a key "only
 * here" may be one the server holds deleted, and a key "only there" one this side holds deleted: every
 * differing key is fetched in the agent's own scope (`writable`; then `settleAfterFetch` decides what
 * to re-push) and in a server-owned one (`serverOwned`: then replaced, see `VerifyRepairPlan.replace`).
 * In any other scope the keys only here are reported.
 */
export function planVerifyFetch(
  diff: { readonly missingHere: readonly string[]; readonly missingThere: readonly string[]; readonly differing: readonly string[] },
  writable: boolean,
  serverOwned = false,
): VerifyRepairPlan {
  const all = [...diff.missingHere, ...diff.differing, ...diff.missingThere].sort();
  if (writable) return { fetch: all, unrepairable: [], replace: false };
  if (serverOwned) return { fetch: all, unrepairable: [], replace: true };
  return { fetch: [...diff.missingHere, ...diff.differing].sort(), unrepairable: [...diff.missingThere], replace: false };
}

/**
 * After the fetch has been joined, in the agent's own scope, per key that differed:
 * - re-push it when the local state holds writes the server's state has not seen, or the server has
 *   no state for it (a server tombstone that has seen every local write is not re-pushed: the join
 *   applied it, and a restatement would undo the server's newer delete);
 * - but not a record with a conflict an operator must settle (a restatement would settle it): reported;
 * - and report a key that is neither re-pushed nor now equal to the server's state (a join keeps a
 *   value corrupted under its own stamp: re-pushing it would spread the corruption). States from the
 *   wire carry no view: the server's is computed here with `config`, the local one is the store's.
 */
export function settleAfterFetch(
  keys: readonly string[],
  local: (key: string) => RecordState | undefined,
  server: (key: string) => RecordState | undefined,
  config: StrategyConfig,
): { repush: string[]; unrepaired: string[] } {
  const repush: string[] = [];
  const unrepaired: string[] = [];
  for (const key of keys) {
    const l = local(key);
    const s = server(key);
    if (l === undefined) continue;
    if (s === undefined || vvHasNews(l.vv, s.vv)) (l.view.conflicted ? unrepaired : repush).push(key);
    else if (recordHash(l) !== recordHash(refreshView(s, config))) unrepaired.push(key);
  }
  return { repush, unrepaired };
}
