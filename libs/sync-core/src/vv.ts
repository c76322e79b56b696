/**
 * Version vectors (the spec's VectorClock): for each actor, how many of its writes to a record are
 * included. A missing entry means 0, so `{}` and `{a: 0}` are the same vector; the canonical form
 * drops zeros and sorts actors, so equal vectors have equal bytes and equal hashes.
 *
 * Vectors are values: every function returns a new vector and never mutates its input.
 */
import { FleetError } from '@fleet/errors';
import type { VersionVector } from './model';

export type VvOrder = 'before' | 'after' | 'equal' | 'concurrent';

/** One write's identity: the `counter`-th write of `actor` to the record. */
export interface Dot {
  readonly actor: string;
  readonly counter: number;
}

function invalid(why: string, details: Record<string, unknown>): never {
  throw new FleetError('FLEET_VV_001', why, { details });
}

/** Throws `FLEET_VV_001` unless every actor is non-empty and every entry a non-negative safe integer. */
export function vvValidate(vv: unknown): asserts vv is VersionVector {
  if (typeof vv !== 'object' || vv === null || Array.isArray(vv)) invalid('not an object', {});
  for (const [actor, n] of Object.entries(vv)) {
    if (actor.length === 0) invalid('empty actor', {});
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) invalid('entry must be a non-negative integer', { actor, value: n });
  }
}

export function vvGet(vv: VersionVector, actor: string): number {
  // Own properties only: an actor named `constructor` must not read Object.prototype.constructor.
  return Object.hasOwn(vv, actor) ? (vv[actor] as number) : 0;
}

/** Canonical form: actors sorted, zero entries dropped. Built with `fromEntries` so an actor named `__proto__` is just a key. */
export function vvNormalize(vv: VersionVector): VersionVector {
  return Object.fromEntries(
    Object.entries(vv)
      .filter(([, n]) => n > 0)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}

/** The vector after one more write by `actor`. */
export function vvIncrement(vv: VersionVector, actor: string): VersionVector {
  if (actor.length === 0) invalid('empty actor', {});
  return vvNormalize({ ...vv, [actor]: vvGet(vv, actor) + 1 });
}

/**
 * The vector after a write by `actor` numbered `atLeast`: its entry becomes `max(entry + 1, atLeast)`.
 * Agents number their writes with their origin sequence (see `makeLocalChange`), so a counter is never
 * below the sequence that made it, whatever the record saw before.
 */
export function vvAdvance(vv: VersionVector, actor: string, atLeast: number): VersionVector {
  if (actor.length === 0) invalid('empty actor', {});
  return vvNormalize({ ...vv, [actor]: Math.max(vvGet(vv, actor) + 1, atLeast) });
}

/** Element-wise max: the least vector that includes both (canonical form). */
export function vvMerge(a: VersionVector, b: VersionVector): VersionVector {
  const keys: string[] = [];
  for (const k in a) if (Object.hasOwn(a, k)) keys.push(k);
  for (const k in b) if (Object.hasOwn(b, k) && !Object.hasOwn(a, k)) keys.push(k);
  keys.sort();
  const out: Record<string, number> = {};
  for (const k of keys) {
    const n = Math.max(vvGet(a, k), vvGet(b, k));
    if (n <= 0) continue;
    // Plain assignment of `__proto__` would set the prototype instead of adding an actor.
    if (k === '__proto__') Object.defineProperty(out, k, { value: n, enumerable: true, writable: true, configurable: true });
    else out[k] = n;
  }
  return out;
}

/** Where `a` stands relative to `b`: `before` means every write in `a` is in `b` and `b` has more. */
export function vvCompare(a: VersionVector, b: VersionVector): VvOrder {
  let aLess = false;
  let aMore = false;
  for (const k in a) {
    if (!Object.hasOwn(a, k)) continue;
    const n = a[k] as number;
    const m = vvGet(b, k);
    if (n < m) aLess = true;
    else if (n > m) aMore = true;
  }
  for (const k in b) {
    if (Object.hasOwn(b, k) && !Object.hasOwn(a, k) && (b[k] as number) > 0) aLess = true;
  }
  if (aLess && aMore) return 'concurrent';
  if (aLess) return 'before';
  if (aMore) return 'after';
  return 'equal';
}

/** `a` includes every write `b` includes (`after` or `equal`). */
export function vvDominates(a: VersionVector, b: VersionVector): boolean {
  const o = vvCompare(a, b);
  return o === 'after' || o === 'equal';
}

/** `vv` includes the write `dot`. */
export function vvCovers(vv: VersionVector, dot: Dot): boolean {
  return vvGet(vv, dot.actor) >= dot.counter;
}

/** Canonical text: compact JSON of the normalized vector (stable across replicas, usable as a key). */
export function vvEncode(vv: VersionVector): string {
  return JSON.stringify(vvNormalize(vv));
}

/** Parses `vvEncode` output (or any JSON object of counters); throws `FLEET_VV_001` on anything else. */
export function vvDecode(text: string): VersionVector {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new FleetError('FLEET_VV_001', 'not JSON', { cause });
  }
  vvValidate(parsed);
  return vvNormalize(parsed);
}
