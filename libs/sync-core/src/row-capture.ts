/**
 * Server-side SQL writes as changes (docs/server-writes.md).
 *
 * A row of the server's writable table `server_records` (scope, collection, key, fields) is a record
 * written by the server. Each committed insert, update or delete of such a row reaches the capture as
 * a row event with the row's image before and after (`null`: no row). A transaction's events are
 * folded per record into its net effect (`foldRowEvents`), and the net effect becomes at most one
 * server edit per record (`rowEdit`):
 * - no row before, a row after (insert): put every field of the row;
 * - a row before and after (update): put the fields whose value changed or that are new, unset the
 *   fields the row no longer has; nothing when the fields are equal;
 * - a row before, none after (delete): delete the record (a tombstone);
 * - none before and none after (inserted and deleted in one transaction): nothing.
 * Fields of the record that the row never held (an agent's own fields) are left as they are, except by
 * a delete.
 */
import { jsonEquals } from './canonical';
import type { Fields, JsonValue } from './model';
import type { LocalEdit } from './resolve';

/** One committed row event: the row's image before and after it (`null`: no row). */
export interface RowEvent<R> {
  readonly ref: R;
  readonly before: Fields | null;
  readonly after: Fields | null;
}

/**
 * The net effect of a transaction's row events per record, in the order each record first appears:
 * the image before its first event and after its last. `keyOf` identifies a record.
 */
export function foldRowEvents<R>(events: readonly RowEvent<R>[], keyOf: (ref: R) => string): RowEvent<R>[] {
  const byKey = new Map<string, { ref: R; before: Fields | null; after: Fields | null }>();
  for (const e of events) {
    const k = keyOf(e.ref);
    const seen = byKey.get(k);
    if (seen === undefined) byKey.set(k, { ref: e.ref, before: e.before, after: e.after });
    else seen.after = e.after;
  }
  return [...byKey.values()];
}

/** The server edit that takes a record from the row image `before` to `after`, or `null` for none. */
export function rowEdit(before: Fields | null, after: Fields | null): LocalEdit | null {
  if (after === null) return before === null ? null : { op: 'delete' };
  const fields: Record<string, JsonValue> = {};
  let changed = 0;
  for (const k of Object.keys(after).sort()) {
    const v = after[k] as JsonValue;
    if (before !== null && Object.hasOwn(before, k) && jsonEquals(before[k] as JsonValue, v)) continue;
    fields[k] = v;
    changed++;
  }
  const unset = before === null ? [] : Object.keys(before).filter((k) => !Object.hasOwn(after, k)).sort();
  // An inserted row always writes (an empty row creates the record); an unchanged update writes nothing.
  if (before !== null && changed === 0 && unset.length === 0) return null;
  return unset.length === 0 ? { op: 'put', fields } : { op: 'put', fields, unset };
}
