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
import { z } from 'zod';
import { RECORD_STATE_FORMAT, vvMerge } from '@fleet/sync-core';
import type { ExistenceWrite, FieldWrite, JsonValue, RecordState, VersionVector, WriteStamp } from '@fleet/sync-core';
import { CollectionSchema, HlcSchema, KeySchema, OriginSchema, PositiveIntSchema, ScopeSchema, VersionVectorSchema } from './change';
import { JsonValueSchema } from './json-value';

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

const IndexSchema = z.int({ error: 'expected a stamp index' }).nonnegative({ error: 'expected a stamp index' });
const WireStampSchema = z.tuple([OriginSchema, PositiveIntSchema, HlcSchema, z.string().min(1).max(64), VersionVectorSchema], { error: 'expected [origin, counter, hlc, changeId, vv]' });

export const WireRecordSchema: z.ZodType<WireRecord> = z
  .strictObject({
    s: ScopeSchema,
    c: CollectionSchema,
    k: KeySchema,
    w: z.array(WireStampSchema).min(1, { error: 'a record state holds at least one write' }).max(1024),
    x: z.array(z.tuple([IndexSchema, z.union([z.literal(0), z.literal(1)])])).min(1).max(1024),
    d: z.array(VersionVectorSchema).max(64).exactOptional(),
    f: z.record(z.string().min(1).max(256), z.array(z.union([z.tuple([IndexSchema]), z.tuple([IndexSchema, JsonValueSchema])])).min(1).max(1024)).exactOptional(),
  })
  .superRefine((r, ctx) => {
    const n = r.w.length;
    const bad = (i: number) => i >= n;
    if (r.x.some(([i]) => bad(i))) ctx.addIssue({ code: 'custom', path: ['x'], message: 'stamp index out of range' });
    for (const [f, ws] of Object.entries(r.f ?? {})) if (ws.some((w) => bad(w[0]))) ctx.addIssue({ code: 'custom', path: ['f', f], message: 'stamp index out of range' });
  });

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
  let f: Record<string, WireFieldWrite[]> | undefined;
  for (const [name, writes] of Object.entries(state.fields)) {
    f ??= {};
    f[name] = writes.map((w): WireFieldWrite => ('removed' in w ? [idx(w)] : [idx(w), w.value]));
  }
  const out: { -readonly [K in keyof WireRecord]: WireRecord[K] } = { s: state.ref.scope, c: state.ref.collection, k: state.ref.key, w: stamps, x };
  if (state.deletes.length > 0) out.d = state.deletes;
  if (f !== undefined) out.f = f;
  return out;
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
  const fields: Record<string, FieldWrite[]> = {};
  for (const [name, ws] of Object.entries(r.f ?? {})) {
    fields[name] = ws.map((w) => (w.length === 1 ? { ...stamp(w[0]), removed: true as const } : { ...stamp(w[0]), value: w[1] }));
  }
  let vv: VersionVector = {};
  for (const e of existence) vv = vvMerge(vv, e.vv);
  return { format: RECORD_STATE_FORMAT, ref: { scope: r.s, collection: r.c, key: r.k }, vv, existence, deletes: r.d ?? [], fields, view: EMPTY_VIEW };
}
