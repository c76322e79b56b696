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
 */
import { emptyRecord, joinChange } from '@fleet/sync-core';
import type { LoggedChange, RecordState } from '@fleet/sync-core';
import { toWireRecord } from '@fleet/contracts';
import type { WireRecord } from '@fleet/contracts';

export function recordId(scope: string, collection: string, key: string): string {
  return `${scope}\u0000${collection}\u0000${key}`;
}

/** Delta states of the records touched by `changes` (seq order), in order of first appearance. */
export function foldDeltas(changes: readonly LoggedChange[]): RecordState[] {
  const states = new Map<string, RecordState>();
  for (const c of changes) {
    const id = recordId(c.scope, c.collection, c.key);
    const s = states.get(id) ?? emptyRecord(c);
    states.set(id, joinChange(s, c).state);
  }
  return [...states.values()];
}

export function foldWire(changes: readonly LoggedChange[]): WireRecord[] {
  return foldDeltas(changes).map(toWireRecord);
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
