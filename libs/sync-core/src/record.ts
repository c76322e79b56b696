/**
 * The record state: a state-based CRDT, so that every replica that has received the same set of
 * changes holds the same state, whatever the order, duplication or batching of delivery.
 *
 * Shape
 * - Every change is one write with a stamp: its dot `(origin, vv[origin])`, its `hlc`, its
 *   `changeId` and its whole vector `vv`.
 * - Each field is a multi-value register: the set of writes to that field (a value, or `removed` for
 *   an unset) that no other write dominates. A write dominated by another write's vector is dropped:
 *   a causal overwrite wins whatever the strategy, because its writer saw the older value and chose to
 *   replace it. More than one write survives only for writes that are concurrent.
 * - `existence` is the same register for the record itself: every put writes "alive", every delete
 *   writes "dead".
 * - A delete also removes every field write its vector dominates (what the deleter saw). Its vector is
 *   kept in `deletes` (only the maximal ones) even after a later put supersedes it in `existence`,
 *   because a write it dominated may still arrive late (out-of-order delivery) and must be dropped then.
 *   A field write concurrent with the delete survives it: the deleter never saw it.
 * - `vv` is the merge of every change applied.
 * - `view` is derived: the visible record, the strategy's reduction of each register (see
 *   `resolve.ts`). It is stored so that `visibleFields` and `recordHash` need no configuration, and so a
 *   projection can index it; `refreshView` recomputes it when the configuration changes.
 *
 * Why it converges: each register holds exactly the maximal elements (under strict vector order) of
 * all writes ever received for it, minus those a received delete dominates. Maximal elements of a set
 * do not depend on the order the set was built in; strict vector order is transitive, so a dropped
 * write is always dominated by something still held and re-delivery cannot resurrect it. The view is
 * a deterministic function of the registers (rules see their inputs sorted).
 *
 * Why LWW is per field, not per record. A change carries only the fields it changed. Whole-record
 * "the later change wins" would have to turn the losing side's fields back to the values the winner
 * saw, i.e. the winner's base version, which is history nobody keeps (the winner's base was itself
 * overwritten by the loser's write and dropped). So `lww` decides each field by its own writes' tags
 * `(hlc, origin)`: equal to record-level LWW when changes write whole records, and the only
 * deterministic reading when they write deltas. The same limit applies to a put that beats a
 * concurrent delete: the record lives on with what the put wrote (and any other write the delete did not
 * see), not with the whole record its writer saw.
 *
 * Delete vs concurrent edit, by strategy (the existence register's reduction, see `resolve.ts`):
 * `lww`: the later tag wins; `merge`: edit wins (observed-remove: the delete removes only what it saw);
 * `manual`: provisional winner by LWW, flagged for an operator; `custom`: `onDelete` in the
 * collection's configuration, default LWW. Losing writes stay in the registers (hidden) until a
 * resolution change dominates them: nothing disappears silently.
 *
 * Assumptions (not checkable locally): an origin never reuses a counter (agents number their writes
 * with origin sequences from a clock-based floor, see `makeLocalChange`; `applyChange` rejects a
 * reuse it can see, FLEET_CHANGE_002),
 * and resolution changes (origin `server`) are made by one writer per record at a time.
 * Tombstones (`removed` writes, `deletes`) are kept: dropping them needs causal stability (knowing every
 * replica has seen them), which the core has no way to know.
 */
import { FleetError } from '@fleet/errors';
import { assertJson, canonicalJson, contentHash } from './canonical';
import { isHlcString } from './hlc';
import type { Change, Fields, JsonValue, RecordRef, VersionVector } from './model';
import { vvCompare, vvGet, vvMerge, vvNormalize, vvValidate } from './vv';

/** Which write, when, seen from where. `(origin, counter)` is the write's dot. */
export interface WriteStamp {
  readonly origin: string;
  readonly counter: number;
  readonly hlc: string;
  readonly changeId: string;
  readonly vv: VersionVector;
}

/** A field's value, or `removed` (unset / not present). */
export type FieldValue = { readonly value: JsonValue } | { readonly removed: true };

export type FieldWrite = WriteStamp & FieldValue;

export type ExistenceWrite = WriteStamp & { readonly alive: boolean };

export type RecordStatus = 'absent' | 'live' | 'deleted';

/** What the record looks like under its strategy. Derived from the registers. */
export interface RecordView {
  /** `absent`: never written; `deleted`: a delete won. */
  readonly status: RecordStatus;
  /** The visible fields; `{}` unless live. */
  readonly fields: Fields;
  /** Fields whose register holds concurrent writes (sorted), whether a rule settled them or not. */
  readonly contested: readonly string[];
  /** A put and a delete are concurrent. */
  readonly contestedExistence: boolean;
  /** Something needs an operator (a `manual` register holds concurrent writes). */
  readonly conflicted: boolean;
}

export const RECORD_STATE_FORMAT = 1;

/** The stored state of one record: plain JSON (PostgreSQL jsonb, SQLite text). Arrays and keys are kept sorted so equal states have equal bytes. */
export interface RecordState {
  readonly format: typeof RECORD_STATE_FORMAT;
  readonly ref: RecordRef;
  readonly vv: VersionVector;
  readonly existence: readonly ExistenceWrite[];
  /** Maximal vectors of all deletes received (usually zero or one). */
  readonly deletes: readonly VersionVector[];
  readonly fields: { readonly [field: string]: readonly FieldWrite[] };
  readonly view: RecordView;
}

/**
 * When one origin made every write a state holds (its vector has that origin alone): the origin and the
 * lowest counter among the writes it keeps, its deletes included (a delete whose existence write a later
 * put overwrote still removed fields: a replica must have received it). An agent whose store holds every
 * change of its own from origin sequence `f` on already holds such a state when `minCounter >= f`, so a
 * snapshot may leave it out (docs/delta-calculator.md). That needs a counter never above the origin
 * sequence of its write: equal since counters are origin sequences (`makeLocalChange`: max(entry + 1,
 * originSeq), and the entry is below originSeq as long as no store of the origin numbered below an
 * earlier one, which settling the origin ensures, agent-store `settleOrigin`), lower for the per-record
 * counters of earlier versions. `undefined` otherwise.
 */
export function soleWriter(state: RecordState): { readonly origin: string; readonly minCounter: number } | undefined {
  let origin: string | undefined;
  for (const k in state.vv) {
    if (!Object.hasOwn(state.vv, k)) continue;
    if (origin !== undefined) return undefined;
    origin = k;
  }
  if (origin === undefined) return undefined;
  let min = Number.MAX_SAFE_INTEGER;
  for (const w of state.existence) if (w.counter < min) min = w.counter;
  for (const d of state.deletes) min = Math.min(min, vvGet(d, origin));
  for (const f in state.fields) {
    if (!Object.hasOwn(state.fields, f)) continue;
    for (const w of state.fields[f] as readonly FieldWrite[]) if (w.counter < min) min = w.counter;
  }
  return min === Number.MAX_SAFE_INTEGER ? undefined : { origin, minCounter: min };
}

export type ChangeOutcome = 'fast-forward' | 'stale' | 'duplicate' | 'concurrent';

const EMPTY_VIEW: RecordView = { status: 'absent', fields: {}, contested: [], contestedExistence: false, conflicted: false };

export function emptyRecord(ref: RecordRef): RecordState {
  return { format: RECORD_STATE_FORMAT, ref: { scope: ref.scope, collection: ref.collection, key: ref.key }, vv: {}, existence: [], deletes: [], fields: {}, view: EMPTY_VIEW };
}

/**
 * Where a change stands against a record's vector: `fast-forward` (it includes everything the record
 * has: apply, no conflict), `duplicate` (same version), `stale` (the record already includes it),
 * `concurrent` (neither includes the other: a conflict for the strategy).
 *
 * Stale and duplicate changes need no work when each origin's changes arrive in order (the usual case:
 * not after a redelivery, nor across two change-log replicas). Applying them anyway is always safe (the join is idempotent) and repairs a replica
 * that received an origin's changes out of order, whose vector then claims writes it has not seen.
 */
export function classify(stateVv: VersionVector, changeVv: VersionVector): ChangeOutcome {
  switch (vvCompare(changeVv, stateVv)) {
    case 'after':
      return 'fast-forward';
    case 'equal':
      return 'duplicate';
    case 'before':
      return 'stale';
    case 'concurrent':
      return 'concurrent';
  }
}

/** The visible fields, or `null` when the record is deleted or absent. */
export function visibleFields(state: RecordState): Fields | null {
  return state.view.status === 'live' ? state.view.fields : null;
}

/** The hash of a visible version: `{fields}` when live, one tombstone marker otherwise (absent and deleted look the same: nothing visible). */
export function visibleHash(visible: Fields | null): string {
  return contentHash(visible === null ? { deleted: true } : { fields: visible });
}

/** Content hash of the visible record (what `Change.hash` carries and Merkle buckets compare). */
export function recordHash(state: RecordState): string {
  return visibleHash(visibleFields(state));
}

// ---------------------------------------------------------------------------------------------
// The join

function invalidChange(why: string, change: Partial<Change>): never {
  throw new FleetError('FLEET_CHANGE_001', why, { details: { changeId: change.changeId, origin: change.origin } });
}

/** Checks everything the join relies on; throws `FLEET_CHANGE_001` (never a TypeError) on bad input. */
export function validateChange(change: Change, ref?: RecordRef): void {
  if (typeof change !== 'object' || change === null) invalidChange('not an object', {});
  if (ref !== undefined && (change.scope !== ref.scope || change.collection !== ref.collection || change.key !== ref.key)) {
    invalidChange('change is for another record', change);
  }
  if (typeof change.origin !== 'string' || change.origin.length === 0) invalidChange('origin must be a non-empty string', change);
  if (typeof change.changeId !== 'string' || change.changeId.length === 0) invalidChange('changeId must be a non-empty string', change);
  if (!Number.isSafeInteger(change.originSeq) || change.originSeq < 1) invalidChange('originSeq must be a positive integer', change);
  if (!isHlcString(change.hlc)) invalidChange('malformed hlc', change);
  try {
    vvValidate(change.vv);
  } catch (cause) {
    throw new FleetError('FLEET_CHANGE_001', 'invalid vv', { cause, details: { changeId: change.changeId } });
  }
  if (vvGet(change.vv, change.origin) < 1) invalidChange("vv lacks the origin's own entry", change);
  if (typeof change.fields !== 'object' || change.fields === null || Array.isArray(change.fields)) invalidChange('fields must be an object', change);
  const unset = change.unset ?? [];
  if (!Array.isArray(unset) || unset.some((f) => typeof f !== 'string')) invalidChange('unset must be an array of field names', change);
  if (change.op === 'delete') {
    if (Object.keys(change.fields).length > 0 || unset.length > 0) invalidChange('a delete carries no fields', change);
  } else if (change.op === 'put') {
    for (const f of unset) if (Object.prototype.hasOwnProperty.call(change.fields, f)) invalidChange(`field ${f} is both set and unset`, change);
    try {
      assertJson(change.fields);
    } catch (cause) {
      throw new FleetError('FLEET_CHANGE_001', 'fields are not JSON', { cause, details: { changeId: change.changeId } });
    }
  } else {
    invalidChange('op must be put or delete', change);
  }
}

/** Whether a vector is already in canonical form (actors ascending, no zero entries): the common case. */
function isNormalized(vv: VersionVector): boolean {
  let prev: string | undefined;
  for (const k in vv) {
    if (!Object.hasOwn(vv, k)) return false;
    if ((prev !== undefined && k <= prev) || !((vv[k] as number) > 0)) return false;
    prev = k;
  }
  return true;
}

export function stampOf(change: Change): WriteStamp {
  // Vectors are treated as immutable values everywhere, so a canonical one is shared, not copied.
  const vv = isNormalized(change.vv) ? change.vv : vvNormalize(change.vv);
  return { origin: change.origin, counter: vvGet(vv, change.origin), hlc: change.hlc, changeId: change.changeId, vv };
}

/** Strictly greater vector: `a` saw `b` and more. */
function dominates(a: VersionVector, b: VersionVector): boolean {
  return vvCompare(a, b) === 'after';
}

function byDot(a: WriteStamp, b: WriteStamp): number {
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1;
  return a.counter - b.counter;
}

/**
 * Adds `w` to an antichain of writes; returns the same array when nothing changed (a duplicate, or `w`
 * is dominated). Same dot with another changeId is a reused counter: refused (FLEET_CHANGE_002;
 * `applyChange` turns that into `rejected`, `joinStates` drops such writes of its second state first).
 */
function addWrite<T extends WriteStamp>(list: readonly T[], w: T): readonly T[] {
  if (list.length === 0) return [w];
  for (const x of list) {
    if (x.origin === w.origin && x.counter === w.counter) {
      if (x.changeId === w.changeId) return list;
      throw new FleetError('FLEET_CHANGE_002', `${w.origin}#${w.counter} is both ${x.changeId} and ${w.changeId}`, {
        details: { origin: w.origin, counter: w.counter, held: x.changeId, incoming: w.changeId },
      });
    }
    if (dominates(x.vv, w.vv)) return list;
  }
  return [...list.filter((x) => !dominates(w.vv, x.vv)), w].sort(byDot);
}

function sortedKeys<V>(entries: Iterable<[string, V]>): { [k: string]: V } {
  const list = [...entries];
  // Usually in order already (the held registers are, and a change's fields are): skip the sort then.
  for (let i = 1; i < list.length; i++) {
    if ((list[i - 1] as [string, V])[0] >= (list[i] as [string, V])[0]) {
      list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      break;
    }
  }
  return Object.fromEntries(list);
}

/** `fields` with its keys in order: itself when they already are (the common case), else a sorted copy. */
function sortedFields<V>(fields: { readonly [k: string]: V }): { readonly [k: string]: V } {
  let prev: string | undefined;
  for (const k of Object.keys(fields)) {
    if (prev !== undefined && k <= prev) return sortedKeys(Object.entries(fields));
    prev = k;
  }
  return fields;
}

/**
 * Joins one change into the registers (the view is left as it was: `resolve.ts` recomputes it).
 * `changed` is false when the change added nothing (duplicate, or entirely dominated).
 */
export function joinChange(state: RecordState, change: Change): { state: RecordState; changed: boolean } {
  validateChange(change, state.ref);
  const stamp = stampOf(change);
  const { origin, counter, hlc, changeId, vv: svv } = stamp;
  let changed = false;
  let deletes = state.deletes;
  // Copied only when a register changes (most joins touch few registers of a record).
  let fields: Map<string, readonly FieldWrite[]> | undefined;

  const existence = addWrite<ExistenceWrite>(state.existence, { origin, counter, hlc, changeId, vv: svv, alive: change.op === 'put' });
  if (existence !== state.existence) changed = true;

  if (change.op === 'delete') {
    if (!deletes.some((d) => vvCompare(d, svv) === 'after' || vvCompare(d, svv) === 'equal')) {
      deletes = [...deletes.filter((d) => !dominates(svv, d)), svv].sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : 1));
      changed = true;
      for (const [f, writes] of Object.entries(state.fields)) {
        const kept = writes.filter((w) => !dominates(svv, w.vv));
        if (kept.length === writes.length) continue;
        fields ??= new Map(Object.entries(state.fields));
        if (kept.length === 0) fields.delete(f);
        else fields.set(f, kept);
      }
    }
  } else {
    // A put dominated by a delete we hold is entirely superseded: the delete removed what it saw.
    const deletedAway = deletes.length > 0 && deletes.some((d) => dominates(d, svv));
    if (!deletedAway) {
      const held = state.fields;
      const add = (f: string, w: FieldWrite): void => {
        const before = fields !== undefined ? (fields.get(f) ?? []) : Object.hasOwn(held, f) ? (held[f] as readonly FieldWrite[]) : [];
        const after = addWrite<FieldWrite>(before, w);
        if (after !== before) {
          fields ??= new Map(Object.entries(held));
          fields.set(f, after);
          changed = true;
        }
      };
      for (const f of Object.keys(change.fields)) add(f, { origin, counter, hlc, changeId, vv: svv, value: change.fields[f] as JsonValue });
      if (change.unset !== undefined) for (const f of change.unset) add(f, { origin, counter, hlc, changeId, vv: svv, removed: true });
    }
  }
  const vv = vvMerge(state.vv, svv);
  if (!changed && vvCompare(vv, state.vv) === 'equal') return { state, changed: false };
  return { state: { ...state, vv, existence, deletes, fields: fields === undefined ? sortedFields(state.fields) : sortedKeys(fields) }, changed: true };
}

/**
 * `joinChange`, except that a change reusing a dot the state holds under another change id is rejected
 * rather than thrown: the state comes back unchanged with the FLEET_CHANGE_002 error as `rejection`.
 * The one rule every fold of changes follows (`applyChange`, a pull page's fold), so replicas folding
 * in one order reject the same change.
 */
export function joinOrReject(state: RecordState, change: Change): { state: RecordState; changed: boolean; rejection?: FleetError } {
  try {
    return joinChange(state, change);
  } catch (e) {
    if (e instanceof FleetError && e.code === 'FLEET_CHANGE_002') return { state, changed: false, rejection: e };
    throw e;
  }
}

/**
 * `b` without the writes of the changes whose dot `a` holds under another change id (every register,
 * and a delete's vector): a reused dot's change is dropped whole, never half-joined. `b` itself when
 * there are none (the rule: any reuse `a` can see; one whose write `a` already overwrote is not visible).
 */
function withoutReusedDots(a: RecordState, b: RecordState): RecordState {
  if (a.existence.length === 0 || b.existence.length === 0) return b;
  const held = new Map<string, string>();
  const note = (w: WriteStamp) => held.set(`${w.origin}#${w.counter}`, w.changeId);
  for (const w of a.existence) note(w);
  for (const f in a.fields) if (Object.hasOwn(a.fields, f)) for (const w of a.fields[f] as readonly FieldWrite[]) note(w);
  const reused = (w: WriteStamp): boolean => {
    const id = held.get(`${w.origin}#${w.counter}`);
    return id !== undefined && id !== w.changeId;
  };
  const dropped = b.existence.filter(reused);
  let fieldsReused = false;
  for (const f in b.fields) if (Object.hasOwn(b.fields, f) && (b.fields[f] as readonly FieldWrite[]).some(reused)) fieldsReused = true;
  if (dropped.length === 0 && !fieldsReused) return b;
  const fields = new Map<string, readonly FieldWrite[]>();
  for (const f in b.fields) {
    if (!Object.hasOwn(b.fields, f)) continue;
    const kept = (b.fields[f] as readonly FieldWrite[]).filter((w) => !reused(w));
    if (kept.length > 0) fields.set(f, kept);
  }
  const droppedDeletes = dropped.filter((e) => !e.alive).map((e) => e.vv);
  return {
    ...b,
    existence: b.existence.filter((w) => !reused(w)),
    deletes: b.deletes.filter((d) => !droppedDeletes.some((v) => vvCompare(v, d) === 'equal')),
    fields: sortedKeys(fields),
  };
}

/**
 * The join of two states of the same record (registers only; the view is left to `resolve.ts`): what
 * a replica holds after receiving everything either had received. Commutative, associative and
 * idempotent, and equal to applying the union of both change sets: anti-entropy can ship states.
 * Except for a reused dot (two writes with one dot and two change ids, FLEET_CHANGE_002), which no
 * correct origin makes: there `a`'s write is kept and `b`'s dropped (callers pass the state they hold
 * as `a`, what they receive as `b`), so a forged write never makes a merge fail, and a replica that
 * held the first of the two (as the server's projections keep the first in log order) keeps it.
 */
export function joinStates(a: RecordState, b: RecordState): RecordState {
  if (a.ref.scope !== b.ref.scope || a.ref.collection !== b.ref.collection || a.ref.key !== b.ref.key) {
    throw new FleetError('FLEET_STATE_001', 'states are for different records');
  }
  b = withoutReusedDots(a, b);
  let deletes = a.deletes;
  for (const d of b.deletes) {
    if (!deletes.some((x) => vvCompare(x, d) === 'after' || vvCompare(x, d) === 'equal')) {
      deletes = [...deletes.filter((x) => !dominates(d, x)), d].sort((x, y) => (canonicalJson(x) < canonicalJson(y) ? -1 : 1));
    }
  }
  let existence = a.existence;
  for (const e of b.existence) existence = addWrite(existence, e);
  const fields = new Map<string, readonly FieldWrite[]>();
  const names = new Set([...Object.keys(a.fields), ...Object.keys(b.fields)]);
  // Own registers only: a field named `toString` or `constructor` must not read Object.prototype's.
  const held = (s: RecordState, f: string): readonly FieldWrite[] => (Object.hasOwn(s.fields, f) ? (s.fields[f] as readonly FieldWrite[]) : []);
  for (const f of names) {
    let ws: readonly FieldWrite[] = [];
    for (const w of [...held(a, f), ...held(b, f)]) ws = addWrite(ws, w);
    // Each side already dropped what its own deletes dominate; the other side's deletes may dominate more.
    ws = ws.filter((w) => !deletes.some((d) => dominates(d, w.vv)));
    if (ws.length > 0) fields.set(f, ws);
  }
  return { ...a, vv: vvMerge(a.vv, b.vv), existence, deletes, fields: sortedKeys(fields) };
}

// ---------------------------------------------------------------------------------------------
// Storage

/** The canonical JSON text of a state (for SQLite text columns; jsonb can take the object as is). */
export function encodeRecordState(state: RecordState): string {
  return canonicalJson(state);
}

function badState(why: string): never {
  throw new FleetError('FLEET_STATE_001', why);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkStamp(w: unknown, where: string): asserts w is WriteStamp {
  if (!isObj(w)) badState(`${where}: not an object`);
  if (typeof w['origin'] !== 'string' || typeof w['changeId'] !== 'string' || !isHlcString(w['hlc'])) badState(`${where}: bad stamp`);
  if (!Number.isSafeInteger(w['counter']) || (w['counter'] as number) < 1) badState(`${where}: bad counter`);
  try {
    vvValidate(w['vv']);
  } catch {
    badState(`${where}: bad vv`);
  }
}

/**
 * Decodes a stored state (text or an already parsed jsonb object), checking its shape so a corrupted
 * row fails here with `FLEET_STATE_001` instead of deep inside a merge.
 */
export function decodeRecordState(stored: string | unknown): RecordState {
  let v: unknown = stored;
  if (typeof stored === 'string') {
    try {
      v = JSON.parse(stored);
    } catch {
      badState('not JSON');
    }
  }
  if (!isObj(v)) badState('not an object');
  if (v['format'] !== RECORD_STATE_FORMAT) badState(`unknown format ${String(v['format'])}`);
  const ref = v['ref'];
  if (!isObj(ref) || typeof ref['scope'] !== 'string' || typeof ref['collection'] !== 'string' || typeof ref['key'] !== 'string') badState('bad ref');
  try {
    vvValidate(v['vv']);
  } catch {
    badState('bad vv');
  }
  const existence = v['existence'];
  if (!Array.isArray(existence)) badState('bad existence');
  existence.forEach((w: unknown, i) => {
    checkStamp(w, `existence[${i}]`);
    if (typeof (w as unknown as Record<string, unknown>)['alive'] !== 'boolean') badState(`existence[${i}]: bad alive`);
  });
  const deletes = v['deletes'];
  if (!Array.isArray(deletes)) badState('bad deletes');
  deletes.forEach((d: unknown) => {
    try {
      vvValidate(d);
    } catch {
      badState('bad deletes');
    }
  });
  const fields = v['fields'];
  if (!isObj(fields)) badState('bad fields');
  for (const [f, writes] of Object.entries(fields)) {
    if (!Array.isArray(writes) || writes.length === 0) badState(`fields.${f}: bad register`);
    writes.forEach((w: unknown, i) => {
      checkStamp(w, `fields.${f}[${i}]`);
      const r = w as unknown as Record<string, unknown>;
      if (r['removed'] !== true && !('value' in r)) badState(`fields.${f}[${i}]: neither value nor removed`);
    });
  }
  const view = v['view'];
  if (!isObj(view) || !['absent', 'live', 'deleted'].includes(view['status'] as string) || !isObj(view['fields'])) badState('bad view');
  if (!Array.isArray(view['contested']) || typeof view['contestedExistence'] !== 'boolean' || typeof view['conflicted'] !== 'boolean') badState('bad view');
  try {
    assertJson(v);
  } catch {
    badState('not JSON');
  }
  return v as unknown as RecordState;
}
