/**
 * How the `records.state` column holds a record's CRDT state: the compact wire form of
 * `libs/contracts` (`toWireRecord`) without the reference, e.g.
 * `{"w":[["a1",3,"<hlc>","<changeId>",{"a1":3}]],"x":[[0,1]],"f":{"n":[[0,1]],"size":[[0,9]]}}`.
 *
 * Why not `encodeRecordState`'s JSON (format 1 of schema version 1): it repeats the whole write stamp
 * (origin, counter, hlc, changeId, vector) in every register, so a change of 4 fields stored 5 copies of
 * it, and it carried the derived view (the visible fields a second time) and the record's vector (a third
 * copy of the stamp's). ~2.6 KB per 4-field record became ~300 bytes; the SQLite work of a write is
 * mostly proportional to the bytes it writes. Here each stamp is stored once, the vector is recomputed
 * (the merge of the existence stamps' vectors, see wire-record.ts), and the view is recomputed on load
 * under the store's strategies (`refreshView`), which is what sync-core does after every join anyway.
 * The reference is the row's own columns.
 *
 * Decoding is strict: the text goes through the same hand-written checks as a pulled record
 * (`wireRecordIssues`); a corrupted row fails with FLEET_STATE_001 naming the problem, never deep in a merge.
 */
import { fromWireRecord, toWireRecord, wireRecordIssues } from '@fleet/contracts';
import type { WireRecord } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { jsonString, refreshView } from '@fleet/sync-core';
import type { FieldWrite, RecordRef, RecordState, StrategyConfig, WriteStamp } from '@fleet/sync-core';
import { objectText, valueText } from './json-text';

/** `encodeStoredState` through `toWireRecord`: any state. */
export function encodeStoredStateGeneric(state: RecordState): string {
  const { w, x, d, f } = toWireRecord(state);
  return JSON.stringify(d === undefined ? (f === undefined ? { w, x } : { w, x, f }) : f === undefined ? { w, x, d } : { w, x, d, f });
}

/** Above this many distinct stamps the linear stamp lookup of `encodeStoredState` hands over to the generic path. */
const FAST_STAMPS = 8;

/**
 * The `state` column text of a record state (registers only; the view and vector are derived). Byte for
 * byte `encodeStoredStateGeneric` (`toWireRecord` without the reference, then `JSON.stringify`), built
 * directly as text (json-text.ts): a record usually holds one to a few distinct write stamps, so a
 * linear search over them replaces the generic path's map of string keys, and no intermediate arrays are
 * built (this runs on every local write). Falls back to the generic path past FAST_STAMPS stamps or for
 * anything unusual (a `__proto__` field, a value `JSON.stringify` treats specially).
 */
export function encodeStoredState(state: RecordState): string {
  const stamps: WriteStamp[] = [];
  let w = '';
  let ok = true;
  const idx = (s: WriteStamp): number => {
    for (let i = 0; i < stamps.length; i++) {
      const t = stamps[i] as WriteStamp;
      if (t.origin === s.origin && t.counter === s.counter) return i;
    }
    if (stamps.length >= FAST_STAMPS || typeof s.origin !== 'string' || typeof s.hlc !== 'string' || typeof s.changeId !== 'string' || !Number.isFinite(s.counter)) ok = false;
    else w += `${stamps.length === 0 ? '' : ','}[${jsonString(s.origin)},${String(s.counter)},${jsonString(s.hlc)},${jsonString(s.changeId)},${objectText(s.vv)}]`;
    stamps.push(s);
    return stamps.length - 1;
  };
  let x = '';
  for (const e of state.existence) x += `${x === '' ? '' : ','}[${idx(e)},${e.alive ? 1 : 0}]`;
  let f = '';
  for (const name in state.fields) {
    if (!Object.hasOwn(state.fields, name)) continue;
    let regs = '';
    for (const fw of state.fields[name] as readonly FieldWrite[]) {
      if ('removed' in fw) regs += `${regs === '' ? '' : ','}[${idx(fw)}]`;
      else {
        const v = valueText(fw.value);
        if (v === undefined) ok = false;
        regs += `${regs === '' ? '' : ','}[${idx(fw)},${v}]`;
      }
    }
    f += `${f === '' ? '' : ','}${jsonString(name)}:[${regs}]`;
  }
  if (!ok || Object.hasOwn(state.fields, '__proto__')) return encodeStoredStateGeneric(state);
  const d = state.deletes.length > 0 ? `,"d":${JSON.stringify(state.deletes)}` : '';
  return `{"w":[${w}],"x":[${x}]${d}${f === '' ? '' : `,"f":{${f}}`}}`;
}

function corrupt(ref: RecordRef, why: string): never {
  throw new FleetError('FLEET_STATE_001', `stored state of ${ref.scope}/${ref.collection}/${ref.key}: ${why}`, { details: { ...ref } });
}

/** The record state of a `state` column, its view computed under `config`; FLEET_STATE_001 if the text is not a valid state. */
export function decodeStoredState(ref: RecordRef, text: string, config: StrategyConfig): RecordState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    corrupt(ref, 'not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) corrupt(ref, 'not an object');
  const body = parsed as Record<string, unknown>;
  if ('s' in body || 'c' in body || 'k' in body) corrupt(ref, 'unexpected reference inside the state');
  const wire = { s: ref.scope, c: ref.collection, k: ref.key, ...body };
  const issues = wireRecordIssues(wire);
  if (issues.length > 0) corrupt(ref, issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; '));
  return refreshView(fromWireRecord(wire as WireRecord), config);
}
