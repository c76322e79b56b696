/**
 * Pure: turning a page of log entries into the delta states a pull sends. No I/O.
 *
 * Each record's delta is the fold of the page's changes of that record from an EMPTY state with
 * sync-core's join (`joinChange`; the view is not computed, the wire form does not carry it). The
 * agent joins it into the state it holds at the request's cursor. Because a record state is a
 * state-based CRDT whose join equals applying the union of both change sets (record.ts), the result
 * is the fold of every change up to the page's last seq, whatever the agent held of the record, and a
 * re-delivered or overlapping page changes nothing. The delta holds only the fields the page's changes
 * wrote: an agent with version n of a record receives only the fields changed after n.
 *
 * A change reusing a dot an earlier change of the page holds (FLEET_CHANGE_002) is left out, as every
 * projection rejects it (sync-core `applyChange`); one whose original came in an earlier page is sent,
 * and the agent's join drops it (sync-core `joinStates` keeps the write it holds).
 */
import { emptyRecord, joinOrReject, validateChange, vvGet, vvNormalize } from '@fleet/sync-core';
import type { Change, JsonValue, LoggedChange, RecordState } from '@fleet/sync-core';
import { toWireRecord } from '@fleet/contracts';
import type { WireFieldWrite, WireRecord, WireStamp } from '@fleet/contracts';

export function recordId(scope: string, collection: string, key: string): string {
  return `${scope}\u0000${collection}\u0000${key}`;
}

/** Delta states of the records touched by `changes` (seq order), in order of first appearance. */
export function foldDeltas(changes: readonly LoggedChange[]): RecordState[] {
  const states = new Map<string, RecordState>();
  for (const c of changes) {
    const id = recordId(c.scope, c.collection, c.key);
    states.set(id, joinOrReject(states.get(id) ?? emptyRecord(c), c).state);
  }
  return [...states.values()];
}

/**
 * The wire form of the join of ONE change into an empty state, built directly: one stamp, the existence
 * write, and (a put) one single-write register per field set or unset, sorted by name; (a delete) its
 * vector as the one delete. Exactly `toWireRecord(joinChange(emptyRecord(c), c).state)` (property test
 * in fold.spec.ts), without the generic join's allocations: most records of a page were touched by one
 * change. `validateChange` still refuses a malformed change (FLEET_CHANGE_001), as the join does.
 */
export function singleChangeWire(c: Change): WireRecord {
  validateChange(c);
  const vv = vvNormalize(c.vv);
  const stamp: WireStamp = [c.origin, vvGet(vv, c.origin), c.hlc, c.changeId, vv];
  if (c.op === 'delete') return { s: c.scope, c: c.collection, k: c.key, w: [stamp], x: [[0, 0]], d: [vv] };
  const names = Object.keys(c.fields);
  const unset = c.unset ?? [];
  if (names.length === 0 && unset.length === 0) return { s: c.scope, c: c.collection, k: c.key, w: [stamp], x: [[0, 1]] };
  const entries: [string, WireFieldWrite[]][] = [];
  for (const f of names) entries.push([f, [[0, c.fields[f] as JsonValue]]]);
  for (const f of unset) entries.push([f, [[0]]]);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { s: c.scope, c: c.collection, k: c.key, w: [stamp], x: [[0, 1]], f: Object.fromEntries(entries) };
}

/** Wire delta states of the records touched by `changes` (seq order), in order of first appearance. */
export function foldWire(changes: readonly LoggedChange[]): WireRecord[] {
  // Group by record first: a record touched once takes the direct path, several times the join.
  const groups = new Map<string, LoggedChange[]>();
  for (const c of changes) {
    const id = recordId(c.scope, c.collection, c.key);
    const g = groups.get(id);
    if (g === undefined) groups.set(id, [c]);
    else g.push(c);
  }
  const out: WireRecord[] = [];
  for (const g of groups.values()) {
    if (g.length === 1) {
      out.push(singleChangeWire(g[0] as LoggedChange));
      continue;
    }
    let s = emptyRecord(g[0] as LoggedChange);
    for (const c of g) s = joinOrReject(s, c).state;
    out.push(toWireRecord(s));
  }
  return out;
}

/**
 * An upper bound of what a change adds to its record's encoded delta: its stamp (with vector),
 * its fields and unset names, and the record's reference. Used to cut a page at a seq boundary
 * before encoding it; the encoded page is checked again afterwards.
 */
export function changeCostBound(c: LoggedChange): number {
  // JSON.stringify length counts UTF-16 units; multiply by 3 only for non-ASCII, cheaply bounded by x3 of the
  // few strings that can hold it (key, field values).
  const fields = JSON.stringify(c.fields).length * 3;
  const unset = c.unset === undefined ? 0 : JSON.stringify(c.unset).length * 2;
  const vv = JSON.stringify(c.vv).length;
  const names = Object.keys(c.fields).length * 12;
  return 96 + (c.scope.length + c.collection.length) + c.key.length * 3 + c.origin.length + c.hlc.length + c.changeId.length + vv + fields + unset + names;
}
