/**
 * `JSON.stringify`, byte for byte, for the shapes the local write path encodes on every write: the
 * outbox row's change, the record's visible fields and vector. Built by concatenation with sync-core's
 * `jsonString` (a string's JSON text without the builtin when nothing needs escaping): on the write path
 * `JSON.stringify` of a 400-byte change cost ~3x the concatenation. Anything outside the expected shape
 * (another key order, a nested value, an unexpected type) goes to `JSON.stringify` itself, so the text is
 * always exactly what `JSON.stringify` writes; `json-text.spec.ts` checks that on generated values.
 */
import { jsonString } from '@fleet/sync-core';
import type { Change } from '@fleet/sync-core';

/** The JSON text of a primitive (string, finite number, boolean, null), or undefined for anything else. */
function primitiveText(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return jsonString(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : undefined;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      return v === null ? 'null' : undefined;
    default:
      return undefined;
  }
}

/**
 * The JSON text of a value as an array element or property value of `JSON.stringify`, or undefined when
 * the builtin would treat it specially there (undefined, functions, symbols, non-finite numbers, toJSON).
 */
export function valueText(v: unknown): string | undefined {
  const t = primitiveText(v);
  if (t !== undefined || typeof v !== 'object' || v === null || typeof (v as { toJSON?: unknown }).toJSON === 'function') return t;
  return JSON.stringify(v);
}

/** `JSON.stringify(o)` of a plain object (visible fields, a version vector): its keys in their order. */
export function objectText(o: object): string {
  if (Array.isArray(o) || typeof (o as { toJSON?: unknown }).toJSON === 'function') return JSON.stringify(o);
  let out = '';
  for (const k in o) {
    if (!Object.hasOwn(o, k)) continue;
    const v: unknown = (o as Record<string, unknown>)[k];
    let t = primitiveText(v);
    if (t === undefined) {
      // undefined, functions, symbols, bigints, non-finite numbers, a nested toJSON (called with its key): the builtin's rules.
      if (typeof v !== 'object' || v === null || typeof (v as { toJSON?: unknown }).toJSON === 'function') return JSON.stringify(o);
      t = JSON.stringify(v);
    }
    out += out === '' ? `{${jsonString(k)}:${t}` : `,${jsonString(k)}:${t}`;
  }
  return out === '' ? JSON.stringify(o) : `${out}}`;
}

/** The keys of a change in the order sync-core's `makeLocalChange` builds them (`unset` only when non-empty). */
const CHANGE_KEYS = ['scope', 'collection', 'key', 'changeId', 'origin', 'originSeq', 'op', 'fields', 'hlc', 'vv', 'hash', 'protocol'] as const;
const CHANGE_KEYS_UNSET = ['scope', 'collection', 'key', 'changeId', 'origin', 'originSeq', 'op', 'fields', 'unset', 'hlc', 'vv', 'hash', 'protocol'] as const;

/** `JSON.stringify(change)`: the outbox row's `change` column. */
export function changeText(c: Change): string {
  const keys = Object.hasOwn(c, 'unset') ? CHANGE_KEYS_UNSET : CHANGE_KEYS;
  let i = 0;
  for (const k in c) {
    if (k !== keys[i]) return JSON.stringify(c);
    i++;
  }
  if (i !== keys.length) return JSON.stringify(c);
  const s = (v: unknown): string | undefined => (typeof v === 'string' ? jsonString(v) : undefined);
  const n = (v: unknown): string | undefined => (typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined);
  const o = (v: unknown): string | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? objectText(v) : undefined);
  const parts: (string | undefined)[] = [s(c.scope), s(c.collection), s(c.key), s(c.changeId), s(c.origin), n(c.originSeq), s(c.op), o(c.fields)];
  if (keys === CHANGE_KEYS_UNSET) parts.push(Array.isArray(c.unset) && c.unset.every((u) => typeof u === 'string') ? `[${c.unset.map((u) => jsonString(u)).join(',')}]` : undefined);
  parts.push(s(c.hlc), o(c.vv), s(c.hash), n(c.protocol));
  let out = '{';
  for (let j = 0; j < keys.length; j++) {
    const t = parts[j];
    if (t === undefined) return JSON.stringify(c);
    out += `${j === 0 ? '' : ','}"${keys[j] as string}":${t}`;
  }
  return `${out}}`;
}
