/**
 * Field-level deltas between two visible versions of a record (what a pull sends instead of whole
 * records). A version is `Fields`, or `null` for "not visible" (deleted or absent): the delta to `null`
 * is a tombstone, so a puller learns about deletions and does not keep a ghost.
 */
import { FleetError } from '@fleet/errors';
import { assertJson, jsonEquals } from './canonical';
import type { Fields, JsonValue } from './model';

export interface FieldDelta {
  /** Fields whose value is new or different. */
  readonly set: Fields;
  /** Fields present before and gone after (sorted). */
  readonly unset: readonly string[];
  /** The record is not visible after: `set` and `unset` are empty. */
  readonly deleted?: true;
}

function sortedEntries(f: Fields): [string, JsonValue][] {
  return Object.entries(f).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The delta that turns `a` into `b`. Minimal: unchanged fields are not sent. */
export function diffFields(a: Fields | null, b: Fields | null): FieldDelta {
  if (b === null) return { set: {}, unset: [], deleted: true };
  const base = a ?? {};
  const own = (o: Fields, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);
  const set = sortedEntries(b).filter(([k, v]) => !own(base, k) || !jsonEquals(base[k] as JsonValue, v));
  const unset = Object.keys(base)
    .filter((k) => !own(b, k))
    .sort();
  return { set: Object.fromEntries(set), unset };
}

/**
 * Applies a delta. From `null` (nothing visible) a non-deleting delta creates the record from `set`
 * alone: `diffFields(null, b)` sets every field of `b`. Throws `FLEET_DELTA_001` on a malformed delta.
 */
export function applyDelta(a: Fields | null, delta: FieldDelta): Fields | null {
  if (typeof delta !== 'object' || delta === null || typeof delta.set !== 'object' || delta.set === null || !Array.isArray(delta.unset)) {
    throw new FleetError('FLEET_DELTA_001', 'expected {set, unset, deleted?}');
  }
  if (delta.deleted === true) {
    if (Object.keys(delta.set).length > 0 || delta.unset.length > 0) throw new FleetError('FLEET_DELTA_001', 'a deleting delta carries no fields');
    return null;
  }
  try {
    assertJson(delta.set);
  } catch (cause) {
    throw new FleetError('FLEET_DELTA_001', 'set is not JSON', { cause });
  }
  const out = new Map<string, JsonValue>(Object.entries(a ?? {}));
  for (const f of delta.unset) {
    if (Object.prototype.hasOwnProperty.call(delta.set, f)) throw new FleetError('FLEET_DELTA_001', `field ${f} is both set and unset`);
    out.delete(f);
  }
  for (const [f, v] of Object.entries(delta.set)) out.set(f, v);
  return Object.fromEntries([...out].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
}
