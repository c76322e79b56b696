/**
 * The compact wire form of a record state (`RecordState`, sync-core's state-based CRDT) as a pull
 * carries it. A pull page sends, per record, the fold of that page's changes from an empty state: a
 * DELTA STATE holding only the writes those changes made. The agent joins it into its own state
 * (`mergeRecordStates`), which is correct for any overlap or re-delivery (a CRDT join).
 *
 * Why not `encodeRecordState` as is: every write of a register repeats its whole stamp (origin,
 * counter, hlc, changeId, vector), and a change that sets 5 fields produces 6 writes (5 fields plus
 * existence) with the same stamp; and `view` is derived (the receiver recomputes it when it joins).
 * Here each distinct stamp travels once (`w`), registers refer to it by index, and there is no view.
 * Keys are one letter because a 1,000,000-record pull sends them 1,000,000 times (gzip removes most
 * of that too, but not the cost of producing and parsing it).
 *
 * The record's vector is not sent: every change writes the existence register, which keeps the
 * maximal writes, so the merge of the existence stamps' vectors IS the state's vector (a dropped
 * write is dominated by a kept one). `fromWireRecord` recomputes it.
 */
import { hash as oneShotHash } from 'node:crypto';
import { z } from 'zod';
import { isHlcString, RECORD_STATE_FORMAT, visibleHash, vvMerge } from '@fleet/sync-core';
import type { ExistenceWrite, Fields, FieldWrite, JsonValue, RecordState, VersionVector, WriteStamp } from '@fleet/sync-core';
import { decodeWith, OVERSIZED, utf8ByteLength } from './codec';
import { jsonValueIssues, stringProblem } from './json-value';
import type { Issue } from './json-value';
import { MAX_COLLECTION_LENGTH, MAX_HLC_LENGTH, MAX_KEY_BYTES, MAX_PULL_LIMIT, MAX_RECORD_STATE_BYTES, MAX_SCOPE_LENGTH, MAX_VV_ACTORS } from './limits';
import { isOrigin, isScope } from './scope';

/** `[origin, counter, hlc, changeId, vv]`. */
export type WireStamp = readonly [string, number, string, string, VersionVector];
/** `[stampIndex, value]` for a value, `[stampIndex]` for a removed field. */
export type WireFieldWrite = readonly [number] | readonly [number, JsonValue];

export interface WireRecord {
  /** scope, collection, key */
  readonly s: string;
  readonly c: string;
  readonly k: string;
  /** distinct stamps */
  readonly w: readonly WireStamp[];
  /** existence register: `[stampIndex, 1 alive | 0 dead]` */
  readonly x: readonly (readonly [number, 0 | 1])[];
  /** maximal delete vectors; absent when none */
  readonly d?: readonly VersionVector[];
  /** field registers; absent when none */
  readonly f?: { readonly [field: string]: readonly WireFieldWrite[] };
}

/**
 * The checks of a wire record, by hand rather than composed zod schemas: a 1,000,000-record pull decodes
 * 1,000,000 of them, and zod's per-tuple, per-stamp schemas cost ~150 µs per record (most of the agent's
 * decode time). Exactly as strict as the composed schema was (strict object, every stamp, vector, index
 * and value checked, same limits); the pull response schema wraps it, so bad input is still
 * FLEET_DECODE_002 (FLEET_DECODE_004 for a size cap) with the paths of the problems.
 */
const MAX_WRITES = 1024;
const MAX_DELETES = 64;
const MAX_WIRE_FIELD_NAME = 256;
const COLLECTION_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const WIRE_KEYS = new Set(['s', 'c', 'k', 'w', 'x', 'd', 'f']);

function isIndex(i: unknown, n: number): i is number {
  return typeof i === 'number' && Number.isSafeInteger(i) && i >= 0 && i < n;
}

function vvIssues(vv: unknown, path: PropertyKey[], issues: Issue[]): void {
  if (typeof vv !== 'object' || vv === null || Array.isArray(vv) || Object.getPrototypeOf(vv) !== Object.prototype) {
    issues.push({ path, message: 'expected an object of origin -> positive count' });
    return;
  }
  const actors = Object.keys(vv);
  if (actors.length > MAX_VV_ACTORS) {
    issues.push({ path, message: `has ${actors.length} actors, the limit is ${MAX_VV_ACTORS}`, oversized: true });
    return;
  }
  for (const actor of actors) {
    const n: unknown = (vv as Record<string, unknown>)[actor];
    if (!isOrigin(actor)) issues.push({ path: [...path, actor], message: 'expected an origin as actor: 1-128 of [A-Za-z0-9_-]' });
    else if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) issues.push({ path: [...path, actor], message: 'expected a positive integer' });
  }
}

function arrayIssues(v: unknown, path: PropertyKey[], min: number, max: number, issues: Issue[]): v is unknown[] {
  if (!Array.isArray(v)) {
    issues.push({ path, message: 'expected an array' });
    return false;
  }
  if (v.length < min) issues.push({ path, message: min === 1 ? 'a record state holds at least one write' : `expected at least ${min} items` });
  if (v.length > max) issues.push({ path, message: `more than ${max} items`, oversized: true });
  return v.length >= min && v.length <= max;
}

function stampIssues(st: unknown, path: PropertyKey[], issues: Issue[]): void {
  if (!Array.isArray(st) || st.length !== 5) {
    issues.push({ path, message: 'expected [origin, counter, hlc, changeId, vv]' });
    return;
  }
  const [origin, counter, hlc, changeId, vv] = st as unknown[];
  if (typeof origin !== 'string' || !isOrigin(origin)) issues.push({ path: [...path, 0], message: 'expected an origin: an agent id (1-128 of [A-Za-z0-9_-]) or "server"' });
  if (typeof counter !== 'number' || !Number.isSafeInteger(counter) || counter < 1) issues.push({ path: [...path, 1], message: 'expected a positive integer' });
  if (typeof hlc !== 'string' || hlc.length > MAX_HLC_LENGTH || !isHlcString(hlc)) issues.push({ path: [...path, 2], message: 'expected an HLC timestamp: 15-digit ms, 6-digit counter, node (WWWWWWWWWWWWWWW-CCCCCC-node)' });
  if (typeof changeId !== 'string' || changeId.length < 1 || changeId.length > 64) issues.push({ path: [...path, 3], message: 'expected a change id of 1-64 characters' });
  vvIssues(vv, [...path, 4], issues);
}

/** Every problem of a wire record (empty when it is valid). */
export function wireRecordIssues(r: unknown): Issue[] {
  const issues: Issue[] = [];
  if (typeof r !== 'object' || r === null || Array.isArray(r)) {
    issues.push({ path: [], message: 'expected an object' });
    return issues;
  }
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!WIRE_KEYS.has(k)) issues.push({ path: [k], message: 'unrecognized key' });
  const { s, c, k, w, x } = o;
  if (typeof s !== 'string') issues.push({ path: ['s'], message: 'required (expected a string)' });
  else if (s.length > MAX_SCOPE_LENGTH) issues.push({ path: ['s'], message: `scope is longer than ${MAX_SCOPE_LENGTH} characters`, oversized: true });
  else if (!isScope(s)) issues.push({ path: ['s'], message: 'expected a scope: "fleet", "group.<name>" or "host.<agentId>"' });
  if (typeof c !== 'string') issues.push({ path: ['c'], message: 'required (expected a string)' });
  else if (c.length > MAX_COLLECTION_LENGTH) issues.push({ path: ['c'], message: `collection is longer than ${MAX_COLLECTION_LENGTH} characters`, oversized: true });
  else if (!COLLECTION_RE.test(c)) issues.push({ path: ['c'], message: 'expected a collection name: [A-Za-z0-9] then [A-Za-z0-9_.:-]' });
  if (typeof k !== 'string') issues.push({ path: ['k'], message: 'required (expected a string)' });
  else if (k.length === 0) issues.push({ path: ['k'], message: 'key is empty' });
  else {
    const bytes = utf8ByteLength(k);
    if (bytes > MAX_KEY_BYTES) issues.push({ path: ['k'], message: `key is ${bytes} bytes, the limit is ${MAX_KEY_BYTES}`, oversized: true });
    const p = stringProblem(k);
    if (p !== undefined) issues.push({ path: ['k'], message: `key ${p}` });
  }
  let n = 0;
  if (arrayIssues(w, ['w'], 1, MAX_WRITES, issues)) {
    n = w.length;
    for (let i = 0; i < w.length; i++) stampIssues(w[i], ['w', i], issues);
  }
  if (arrayIssues(x, ['x'], 1, MAX_WRITES, issues)) {
    for (let i = 0; i < x.length; i++) {
      const e = x[i];
      if (!Array.isArray(e) || e.length !== 2 || (e[1] !== 0 && e[1] !== 1) || typeof e[0] !== 'number' || !Number.isSafeInteger(e[0]) || e[0] < 0) {
        issues.push({ path: ['x', i], message: 'expected [stampIndex, 0 | 1]' });
      } else if (e[0] >= n) issues.push({ path: ['x'], message: 'stamp index out of range' });
    }
  }
  if ('d' in o) {
    const d = o['d'];
    if (arrayIssues(d, ['d'], 0, MAX_DELETES, issues)) for (let i = 0; i < d.length; i++) vvIssues(d[i], ['d', i], issues);
  }
  if ('f' in o) {
    const f = o['f'];
    if (typeof f !== 'object' || f === null || Array.isArray(f) || Object.getPrototypeOf(f) !== Object.prototype) issues.push({ path: ['f'], message: 'expected an object of field -> register' });
    else {
      for (const name of Object.keys(f)) {
        const ws = (f as Record<string, unknown>)[name];
        if (name.length === 0 || name.length > MAX_WIRE_FIELD_NAME || name === '__proto__') {
          issues.push({ path: ['f', name], message: 'expected a field name of 1-256 characters' });
          continue;
        }
        if (!arrayIssues(ws, ['f', name], 1, MAX_WRITES, issues)) continue;
        for (let i = 0; i < ws.length; i++) {
          const e: unknown = ws[i];
          if (!Array.isArray(e) || (e.length !== 1 && e.length !== 2) || typeof e[0] !== 'number' || !Number.isSafeInteger(e[0]) || e[0] < 0) {
            issues.push({ path: ['f', name, i], message: 'expected [stampIndex] or [stampIndex, value]' });
            continue;
          }
          if (!isIndex(e[0], n)) issues.push({ path: ['f', name], message: 'stamp index out of range' });
          if (e.length === 2) jsonValueIssues(e[1], ['f', name, i, 1], issues);
        }
      }
    }
  }
  return issues;
}

export const WireRecordSchema: z.ZodType<WireRecord> = z.custom<WireRecord>().superRefine((r, ctx) => {
  for (const i of wireRecordIssues(r)) {
    ctx.addIssue(i.oversized === true ? { code: 'custom', path: i.path, message: i.message, params: OVERSIZED } : { code: 'custom', path: i.path, message: i.message });
  }
});

/**
 * The `records` of a pull (or pull-by-keys) response: an array of at most `max` wire records, checked
 * by ONE refinement over the array (not a zod schema per element: zod's per-element parse of a custom
 * schema costs more than the hand-written checks themselves on a page of thousands). Same strictness and
 * the same issue paths (`[index, ...]`) as `z.array(WireRecordSchema).max(max)`; the array is returned as
 * parsed (no copy).
 */
export function wireRecordsSchema(max: number): z.ZodType<WireRecord[]> {
  return z.custom<WireRecord[]>().superRefine((rs, ctx) => {
    if (!Array.isArray(rs)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'expected an array' });
      return;
    }
    if (rs.length > max) {
      ctx.addIssue({ code: 'custom', path: [], message: `more than ${max} records`, params: OVERSIZED });
      return;
    }
    for (let n = 0; n < rs.length; n++) {
      const issues = wireRecordIssues(rs[n]);
      for (const i of issues) {
        const path = [n, ...i.path];
        ctx.addIssue(i.oversized === true ? { code: 'custom', path, message: i.message, params: OVERSIZED } : { code: 'custom', path, message: i.message });
      }
    }
  });
}

/** At most MAX_PULL_LIMIT records. */
export const WireRecordsSchema = wireRecordsSchema(MAX_PULL_LIMIT);

/** A wire record checked by hand, or FLEET_DECODE_002 / 004 naming its problems (as the pull decoders report them). */
export function decodeWireRecord(r: unknown): WireRecord {
  return decodeWith(WireRecordSchema, r);
}

function stampKey(s: WriteStamp): string {
  return `${s.origin}\u0000${s.counter}`;
}

/** The wire form of a state (its view is not sent). */
export function toWireRecord(state: RecordState): WireRecord {
  const stamps: WireStamp[] = [];
  const index = new Map<string, number>();
  const idx = (s: WriteStamp): number => {
    const k = stampKey(s);
    let i = index.get(k);
    if (i === undefined) {
      i = stamps.length;
      index.set(k, i);
      stamps.push([s.origin, s.counter, s.hlc, s.changeId, s.vv]);
    }
    return i;
  };
  const x = state.existence.map((e): readonly [number, 0 | 1] => [idx(e), e.alive ? 1 : 0]);
  const regs: [string, WireFieldWrite[]][] = [];
  for (const [name, writes] of Object.entries(state.fields)) regs.push([name, writes.map((w): WireFieldWrite => ('removed' in w ? [idx(w)] : [idx(w), w.value]))]);
  // fromEntries, not `f[name] = ...`: a field named `__proto__` stays a field instead of becoming f's prototype.
  const f: Record<string, WireFieldWrite[]> | undefined = regs.length === 0 ? undefined : Object.fromEntries(regs);
  const out: { -readonly [K in keyof WireRecord]: WireRecord[K] } = { s: state.ref.scope, c: state.ref.collection, k: state.ref.key, w: stamps, x };
  if (state.deletes.length > 0) out.d = state.deletes;
  if (f !== undefined) out.f = f;
  return out;
}

/**
 * The wire form of a state without its reference, as JSON text: `{"w":..,"x":..,"d"?:..,"f"?:..}`. What
 * the delta calculator keeps beside each projected state (`record_states.wire`) so that snapshot pages
 * are concatenated rather than encoded, and byte for byte the agent store's stored form of the state.
 */
export function wireStateText(state: RecordState): string {
  const { w, x, d, f } = toWireRecord(state);
  return JSON.stringify(d === undefined ? (f === undefined ? { w, x } : { w, x, f }) : f === undefined ? { w, x, d } : { w, x, d, f });
}

/**
 * Whether a write that turns a record's state text `before` into `next` (`wireStateText`, byte for byte
 * the agent store's stored text) grows it past MAX_RECORD_STATE_BYTES: undefined when it may be written,
 * else why, for the writer's error. A record past the cap could not be pulled by any replica; one already
 * past it (written before the cap, or by an agent and an operator at once) may still shrink or keep its
 * size. `before` is read only when `next` is over the cap, and bytes are counted only when the text could be.
 */
export function stateGrowthPastCap(
  ref: { readonly scope: string; readonly collection: string; readonly key: string },
  next: string,
  before: () => string | undefined,
): { readonly message: string; readonly details: Record<string, unknown> } | undefined {
  if (next.length * 3 <= MAX_RECORD_STATE_BYTES) return undefined;
  const bytes = Buffer.byteLength(next, 'utf8');
  if (bytes <= MAX_RECORD_STATE_BYTES) return undefined;
  const was = Buffer.byteLength(before() ?? '', 'utf8');
  if (bytes <= was) return undefined;
  return {
    message: `the write would make ${ref.scope}/${ref.collection}/${ref.key} ${bytes} bytes as a whole (at most ${MAX_RECORD_STATE_BYTES}: a record must fit in one pull page); write less, or unset fields, or split it into several records`,
    details: { bytes, was, max: MAX_RECORD_STATE_BYTES, scope: ref.scope, collection: ref.collection, key: ref.key },
  };
}

/** What `singleWriteState` derives: the parts of a store row. */
export interface SingleWriteState {
  readonly status: 'live' | 'deleted';
  /** The visible fields (`{}` unless live), keys in order. */
  readonly fields: Fields;
  /** `JSON.stringify(fields)` when live (the store's `fields` column), else null. */
  readonly fieldsText: string | null;
  /** The state's vector (canonical, `vvMerge`). */
  readonly vv: VersionVector;
  /** `recordHash` of the state. */
  readonly hash: string;
  /** The greatest HLC of its writes. */
  readonly hlc: string;
  /** `wireStateText` of the state. */
  readonly text: string;
}

const DELETED_HASH = visibleHash(null);

/**
 * `visibleHash(fields)` for visible fields whose keys are in order: when every value is a string, a
 * number, a boolean or null, the canonical text (canonical.ts: sorted keys, no whitespace, JSON.stringify's
 * numbers and strings, -0 as 0 as JSON.stringify writes it) IS `{"fields":` + `JSON.stringify(fields)` + `}`,
 * so the caller's text of the fields column is hashed as is; otherwise (nested values, whose keys may need
 * sorting) the generic `visibleHash`. Property-tested equal to `visibleHash` in wire-record.spec.ts.
 */
function orderedFieldsHash(fields: Fields, text: string): string {
  for (const k in fields) {
    const v = fields[k];
    if (typeof v === 'object' && v !== null) return visibleHash(fields);
  }
  // One-shot `hash` (Node >= 20.12): the same digest as createHash().update().digest(), without the Hash object.
  return oneShotHash('sha256', `{"fields":${text}}`, 'hex');
}

/**
 * For a (checked) wire record that is ONE write: one stamp, one existence write, no delete vectors,
 * every field register a single write, field names in order, what the join of it into an EMPTY state
 * (`mergeRecordStates(emptyRecord(ref), fromWireRecord(r), config)`) holds, computed directly: such a
 * state is its own join (nothing to dominate, nothing to sort) and its view is the same under every
 * strategy configuration (no register holds concurrent writes). `undefined` for any other record (the
 * caller joins it the general way). Property test: wire-record.spec.ts. This is what almost every record of
 * a snapshot (a record written once) and of a log page (a record changed once) looks like.
 */
export function singleWriteState(r: WireRecord): SingleWriteState | undefined {
  if (r.w.length !== 1 || r.x.length !== 1 || r.d !== undefined) return undefined;
  const stamp = r.w[0] as WireStamp;
  const alive = (r.x[0] as readonly [number, 0 | 1])[1] === 1;
  const fields: Record<string, JsonValue> = {};
  let prev: string | undefined;
  if (r.f !== undefined) {
    for (const name in r.f) {
      // `fields[name] = ...` below would set the prototype for `__proto__` (refused by the checks anyway): the general path.
      if ((prev !== undefined && !(name > prev)) || name === '__proto__') return undefined;
      prev = name;
      const ws = r.f[name] as readonly WireFieldWrite[];
      if (ws.length !== 1) return undefined;
      const only = ws[0] as WireFieldWrite;
      if (alive && only.length === 2) fields[name] = only[1];
    }
  }
  const text = r.f === undefined ? JSON.stringify({ w: r.w, x: r.x }) : JSON.stringify({ w: r.w, x: r.x, f: r.f });
  const fieldsText = alive ? JSON.stringify(fields) : null;
  const hash = fieldsText === null ? DELETED_HASH : orderedFieldsHash(fields, fieldsText);
  return { status: alive ? 'live' : 'deleted', fields, fieldsText, vv: vvMerge({}, stamp[4]), hash, hlc: stamp[2], text };
}

const EMPTY_VIEW = { status: 'absent', fields: {}, contested: [], contestedExistence: false, conflicted: false } as const;

/**
 * Back to a `RecordState` with an EMPTY view: join it (`mergeRecordStates`, which recomputes the view
 * under the receiver's strategy configuration) rather than store it as is. Arrays keep the sender's
 * order, which is sync-core's canonical order when the sender built them with sync-core.
 */
export function fromWireRecord(r: WireRecord): RecordState {
  const stamp = (i: number): WriteStamp => {
    const s = r.w[i];
    if (s === undefined) throw new RangeError(`stamp ${i} out of range`);
    return { origin: s[0], counter: s[1], hlc: s[2], changeId: s[3], vv: s[4] };
  };
  const existence: ExistenceWrite[] = r.x.map(([i, alive]) => ({ ...stamp(i), alive: alive === 1 }));
  const fields: Record<string, FieldWrite[]> = Object.fromEntries(
    Object.entries(r.f ?? {}).map(([name, ws]) => [name, ws.map((w): FieldWrite => (w.length === 1 ? { ...stamp(w[0]), removed: true as const } : { ...stamp(w[0]), value: w[1] }))]),
  );
  let vv: VersionVector = {};
  for (const e of existence) vv = vvMerge(vv, e.vv);
  return { format: RECORD_STATE_FORMAT, ref: { scope: r.s, collection: r.c, key: r.k }, vv, existence, deletes: r.d ?? [], fields, view: EMPTY_VIEW };
}

/**
 * A pull page's records as the agent store's bulk apply takes them (`applyRemoteRows`), built where the
 * page was decoded and checked (the agent's decoder worker): plain strings, cheap to pass between
 * threads. Every single-write record (`singleWriteState`) is its store row, 8 values in `rows`: scope,
 * collection, key, stored state text, visible-fields text (null unless live), hash, status, vector text;
 * and its greatest HLC in `hlcs`. Every other record is in `others` with `at`, the number of single-write
 * records before it in the page (the store applies them in page order).
 */
export interface PreparedWireRows {
  readonly rows: (string | null)[];
  readonly hlcs: string[];
  readonly others: { readonly at: number; readonly record: WireRecord }[];
}

/** Values per single-write record in `PreparedWireRows.rows`. */
export const PREPARED_ROW_WIDTH = 8;

/** `PreparedWireRows` of (checked) wire records, in page order. */
export function prepareWireRows(records: readonly WireRecord[]): PreparedWireRows {
  const rows: (string | null)[] = [];
  const hlcs: string[] = [];
  const others: { at: number; record: WireRecord }[] = [];
  for (const r of records) {
    const single = singleWriteState(r);
    if (single === undefined) {
      others.push({ at: hlcs.length, record: r });
      continue;
    }
    rows.push(r.s, r.c, r.k, single.text, single.fieldsText, single.hash, single.status, JSON.stringify(single.vv));
    hlcs.push(single.hlc);
  }
  return { rows, hlcs, others };
}
