/**
 * Field rules: how a register holding concurrent writes (two or more, none dominating the others) is
 * reduced to one visible value.
 *
 * A rule receives the writes sorted by tag `(hlc, origin, counter)` ascending, so arrival order cannot
 * leak into the result, and returns a `FieldValue`. Contract for every rule, built-in or registered:
 * - pure and deterministic: a function of its inputs only (no clock, no randomness, no I/O): every
 *   replica runs it and must get the same answer;
 * - total: any JSON input gives an answer (fall back to LWW for values it does not understand);
 * - commutative, associative and idempotent over values: `f(x, x) = x` and `f(f(a, b), c) = f(a, b, c)`.
 *   Order independence is already guaranteed by sorting; associativity and idempotence are what make
 *   the server's resolution transparent: it writes `f(a, b)` as a new change, and a third write `c`
 *   concurrent with that resolution is then reduced as `f(f(a, b), c)`, which must be what `f(a, b, c)`
 *   would have been. Value rules (max, min, set-union, counter-sum) satisfy this exactly. Tag rules
 *   (lww, prefer-*) cannot: the resolution is a newer write with the server's stamp, so it competes
 *   with `c` as of the resolution's time; that is the meaning of "the server resolved it".
 *
 * Concurrent `removed` writes lose to values in the value rules (max, min, set-union, counter-sum):
 * an unset wins only over what its writer saw (causally), never over a concurrent value.
 */
import { FleetError } from '@fleet/errors';
import { canonicalJson } from './canonical';
import type { JsonValue } from './model';
import { SERVER_ORIGIN } from './model';
import type { FieldValue } from './record';

/** One concurrent write as a rule sees it. */
export type RuleInput = FieldValue & { readonly origin: string; readonly counter: number; readonly hlc: string; readonly changeId: string };

/** Reduces two or more concurrent writes (sorted by tag, ascending) to the visible value. */
export type FieldRule = (writes: readonly RuleInput[]) => FieldValue;

export const BUILTIN_RULES = ['lww', 'max', 'min', 'counter-sum', 'set-union', 'prefer-server', 'prefer-origin'] as const;
export type BuiltinRule = (typeof BUILTIN_RULES)[number];

/** Tag order: the LWW order of concurrent writes. The HLC string already ends with the node id; origin and counter make it total even for forged clocks. */
export function compareTags(a: { hlc: string; origin: string; counter: number }, b: { hlc: string; origin: string; counter: number }): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1;
  return a.counter - b.counter;
}

function strip(w: RuleInput): FieldValue {
  return 'removed' in w ? { removed: true } : { value: w.value };
}

const lww: FieldRule = (ws) => {
  const last = ws[ws.length - 1];
  return last === undefined ? { removed: true } : strip(last);
};

function values(ws: readonly RuleInput[]): JsonValue[] {
  const out: JsonValue[] = [];
  for (const w of ws) if (!('removed' in w)) out.push(w.value);
  return out;
}

const TYPE_RANK: Record<string, number> = { null: 0, boolean: 1, number: 2, string: 3, array: 4, object: 5 };
function typeOf(v: JsonValue): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/** A total order on JSON values: numbers numerically, strings by code unit, other types by type then canonical text. */
export function compareJson(a: JsonValue, b: JsonValue): number {
  const ta = typeOf(a);
  const tb = typeOf(b);
  if (ta !== tb) return (TYPE_RANK[ta] ?? 0) - (TYPE_RANK[tb] ?? 0);
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const ca = typeof a === 'string' ? a : canonicalJson(a);
  const cb = typeof b === 'string' ? b : canonicalJson(b);
  return ca < cb ? -1 : ca > cb ? 1 : 0;
}

function extreme(sign: 1 | -1): FieldRule {
  return (ws) => {
    const vs = values(ws);
    if (vs.length === 0) return { removed: true };
    let best = vs[0] as JsonValue;
    for (const v of vs) if (sign * compareJson(v, best) > 0) best = v;
    return { value: best };
  };
}

const setUnion: FieldRule = (ws) => {
  const vs = values(ws);
  if (vs.length === 0) return { removed: true };
  if (!vs.every(Array.isArray)) return lww(ws);
  const byText = new Map<string, JsonValue>();
  for (const arr of vs as JsonValue[][]) for (const el of arr) byText.set(canonicalJson(el), el);
  return { value: [...byText.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, el]) => el) };
};

// --- counter-sum ---------------------------------------------------------------------------------

/**
 * A counter field holds a PN-counter, not a number: `{ "inc": {origin: total}, "dec": {origin: total} }`,
 * each origin's running totals of its own increments and decrements (non-negative integers). An origin
 * only ever raises its own totals, so the join of concurrent versions is the per-origin max and loses
 * no increment; the number is `counterValue(v)` = Σinc − Σdec. The stored form, not the number, is
 * what changes carry and what `visibleFields` shows, so a resolution change can write the join.
 * Write it with `counterAdd`, never by hand.
 */
export type CounterValue = { readonly inc: { readonly [origin: string]: number }; readonly dec: { readonly [origin: string]: number } };

function isTotals(v: unknown): v is { [origin: string]: number } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
}

export function isCounter(v: unknown): v is CounterValue {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const keys = Object.keys(v);
  const o = v as Record<string, unknown>;
  return keys.length === 2 && isTotals(o['inc']) && isTotals(o['dec']);
}

function joinTotals(a: { readonly [o: string]: number }, b: { readonly [o: string]: number }): { [o: string]: number } {
  const out = new Map<string, number>(Object.entries(a));
  for (const [k, n] of Object.entries(b)) out.set(k, Math.max(out.get(k) ?? 0, n));
  return Object.fromEntries([...out].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
}

/** The counter's number. A missing or non-counter value counts as 0. */
export function counterValue(v: JsonValue | undefined): number {
  if (!isCounter(v)) return 0;
  const sum = (t: { readonly [o: string]: number }): number => Object.values(t).reduce((s, n) => s + n, 0);
  return sum(v.inc) - sum(v.dec);
}

/** The counter after `origin` adds `by` (negative to subtract): the value to put in the change's fields. */
export function counterAdd(current: JsonValue | undefined, origin: string, by: number): CounterValue {
  // A field that holds something else is not made a counter from 0: that would drop its value.
  if (current !== undefined && current !== null && !isCounter(current)) throw new FleetError('FLEET_CHANGE_001', 'the field holds a value that is not a counter', { details: { current } });
  const base: CounterValue = isCounter(current) ? current : { inc: {}, dec: {} };
  if (!Number.isSafeInteger(by)) throw new FleetError('FLEET_CHANGE_001', 'counter step must be an integer', { details: { by } });
  const side = by >= 0 ? 'inc' : 'dec';
  // Own entries only: an origin named `toString` or `constructor` must not read Object.prototype's.
  const held = Object.hasOwn(base[side], origin) ? (base[side][origin] as number) : 0;
  // Past 2^53 the totals stop being a counter (`isCounter`), and the field would read 0 again.
  if (!Number.isSafeInteger(held + Math.abs(by))) throw new FleetError('FLEET_CHANGE_001', `the counter's ${side === 'inc' ? 'increments' : 'decrements'} by ${origin} would pass ${Number.MAX_SAFE_INTEGER}`, { details: { held, by } });
  const totals = { ...base[side], [origin]: held + Math.abs(by) };
  return side === 'inc' ? { inc: joinTotals(totals, {}), dec: base.dec } : { inc: base.inc, dec: joinTotals(totals, {}) };
}

const counterSum: FieldRule = (ws) => {
  const vs = values(ws);
  if (vs.length === 0) return { removed: true };
  // A plain number in a counter field is a producer bug; LWW keeps the result deterministic instead of failing the record.
  if (!vs.every(isCounter)) return lww(ws);
  let inc: { [o: string]: number } = {};
  let dec: { [o: string]: number } = {};
  for (const c of vs as CounterValue[]) {
    inc = joinTotals(inc, c.inc);
    dec = joinTotals(dec, c.dec);
  }
  return { value: { inc, dec } };
};

// --- origin preferences --------------------------------------------------------------------------

function prefer(pick: (origin: string) => boolean): FieldRule {
  return (ws) => {
    const preferred = ws.filter((w) => pick(w.origin));
    return lww(preferred.length > 0 ? preferred : ws);
  };
}

const builtins: Readonly<Record<BuiltinRule, FieldRule>> = {
  lww,
  max: extreme(1),
  min: extreme(-1),
  'counter-sum': counterSum,
  'set-union': setUnion,
  /** Desired state set centrally beats what a host wrote; among several server writes, LWW. */
  'prefer-server': prefer((o) => o === SERVER_ORIGIN),
  /** What the host observed beats the server's copy; among several hosts, LWW. */
  'prefer-origin': prefer((o) => o !== SERVER_ORIGIN),
};

/** Looks a rule up: user rules first would let a typo shadow a built-in silently, so built-ins win and registration rejects their names. */
export function lookupRule(name: string, user: { readonly [name: string]: FieldRule } | undefined): FieldRule | undefined {
  if (Object.prototype.hasOwnProperty.call(builtins, name)) return builtins[name as BuiltinRule];
  if (user !== undefined && Object.prototype.hasOwnProperty.call(user, name)) return user[name];
  return undefined;
}

export function isBuiltinRule(name: string): name is BuiltinRule {
  return Object.prototype.hasOwnProperty.call(builtins, name);
}

/**
 * Lifts a binary value join (commutative, associative, idempotent) to a rule: removed inputs are
 * ignored, the values are folded in tag order. The easy way to register a correct custom rule.
 */
export function joinRule(join: (a: JsonValue, b: JsonValue) => JsonValue): FieldRule {
  return (ws) => {
    const vs = values(ws);
    const first = vs[0];
    if (first === undefined) return { removed: true };
    return { value: vs.slice(1).reduce<JsonValue>((acc, v) => join(acc, v), first) };
  };
}
