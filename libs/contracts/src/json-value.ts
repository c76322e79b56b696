/**
 * Validation of record fields: JSON that every store and every peer reads the same way.
 *
 * "Parsed from JSON" is not enough. Values that JSON.parse accepts but the rest of the
 * system cannot hold faithfully are rejected here, at the boundary, rather than failing (or
 * silently changing) later:
 * - `\u0000` in a string: PostgreSQL `text` and `jsonb` refuse it, so the append would fail
 *   forever and look like an infrastructure error.
 * - lone UTF-16 surrogates (`"\ud800"`): not encodable as UTF-8; TextEncoder would replace
 *   them with U+FFFD, so the content hash would differ between peers.
 * - non-finite numbers (`1e400` parses to Infinity): JSON.stringify writes `null`.
 * - `__proto__` keys: zod and object spreads drop or misassign them (prototype pollution).
 * - depth beyond MAX_JSON_DEPTH: hashing and merging recurse; this also stops cycles when a
 *   value did not come from JSON.parse.
 * - values that are not JSON at all (undefined, functions, class instances, Map, Date).
 */
import { z } from 'zod';
import { jsonString } from '@fleet/sync-core';
import type { Fields, JsonValue } from '@fleet/sync-core';
import { OVERSIZED, utf8ByteLength } from './codec';
import { MAX_CHANGE_FIELDS_BYTES, MAX_FIELD_NAME_BYTES, MAX_FIELD_VALUE_BYTES, MAX_FIELDS_PER_CHANGE, MAX_JSON_DEPTH } from './limits';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why a string cannot be stored and hashed faithfully, or undefined if it can. */
export function stringProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character (\\u0000), which PostgreSQL cannot store';
  if (LONE_SURROGATE.test(s)) return 'contains a lone UTF-16 surrogate (not valid Unicode)';
  return undefined;
}

export type Issue = { path: PropertyKey[]; message: string; oversized?: boolean };

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function checkKey(k: string, path: PropertyKey[], issues: Issue[], maxBytes: number): void {
  if (k === '__proto__') issues.push({ path, message: 'the key "__proto__" is not allowed' });
  else if (utf8ByteLength(k) > maxBytes) issues.push({ path, message: `key is longer than ${maxBytes} bytes`, oversized: true });
  else {
    const p = stringProblem(k);
    if (p !== undefined) issues.push({ path, message: `key ${p}` });
  }
}

/** Collects the problems of one JSON value; stops descending at the first issue in a branch. */
function checkJson(v: unknown, path: PropertyKey[], depth: number, issues: Issue[]): void {
  if (issues.length >= 20) return;
  if (v === null || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) issues.push({ path, message: 'expected a finite number' });
    return;
  }
  if (typeof v === 'string') {
    const p = stringProblem(v);
    if (p !== undefined) issues.push({ path, message: `string ${p}` });
    return;
  }
  if (depth >= MAX_JSON_DEPTH) {
    issues.push({ path, message: `nested deeper than ${MAX_JSON_DEPTH} levels`, oversized: true });
    return;
  }
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      if (!(i in v)) issues.push({ path: [...path, i], message: 'sparse array hole is not JSON' });
      else checkJson(v[i], [...path, i], depth + 1, issues);
    }
    return;
  }
  if (isPlainObject(v)) {
    for (const k of Object.keys(v)) {
      checkKey(k, [...path, k], issues, MAX_FIELD_NAME_BYTES);
      checkJson(v[k], [...path, k], depth + 1, issues);
    }
    return;
  }
  issues.push({ path, message: `expected a JSON value, received ${v === undefined ? 'undefined' : typeof v === 'object' ? 'a non-plain object' : typeof v}` });
}

function report(ctx: z.core.$RefinementCtx, issues: readonly Issue[]): void {
  for (const i of issues) {
    ctx.addIssue(i.oversized ? { code: 'custom', path: i.path, message: i.message, params: OVERSIZED } : { code: 'custom', path: i.path, message: i.message });
  }
}

/** The problems of one JSON value (see the file comment), appended to `issues` with paths under `path`. */
export function jsonValueIssues(v: unknown, path: PropertyKey[], issues: Issue[]): void {
  checkJson(v, path, 0, issues);
}

/** Any JSON value that survives storage and hashing unchanged (see the file comment). */
export const JsonValueSchema: z.ZodType<JsonValue> = z.custom<JsonValue>().superRefine((v, ctx) => {
  const issues: Issue[] = [];
  checkJson(v, [], 0, issues);
  report(ctx, issues);
});

/** A field name: non-empty, at most MAX_FIELD_NAME_BYTES, storable, not `__proto__`. */
export function fieldNameProblem(k: string): string | undefined {
  if (k.length === 0) return 'field name is empty';
  const issues: Issue[] = [];
  checkKey(k, [], issues, MAX_FIELD_NAME_BYTES);
  return issues[0]?.message;
}

/** A field name as a schema (`fieldNameProblem`): for lists of field names, e.g. what a write or a resolution unsets. */
export const FieldNameSchema = z.string({ error: 'expected a string' }).superRefine((k, ctx) => {
  const p = fieldNameProblem(k);
  if (p !== undefined) ctx.addIssue(p.includes('longer') ? { code: 'custom', message: p, params: OVERSIZED } : { code: 'custom', message: p });
});

/**
 * The fields of a change: a plain JSON object of at most MAX_FIELDS_PER_CHANGE entries, each
 * value at most MAX_FIELD_VALUE_BYTES as JSON, all together at most MAX_CHANGE_FIELDS_BYTES.
 * Validated by hand rather than with `z.record` because zod drops a `__proto__` key silently.
 */
export const FieldsSchema: z.ZodType<Fields> = z.custom<Fields>().superRefine((v, ctx) => {
  if (!isPlainObject(v)) {
    ctx.addIssue({ code: 'custom', message: 'expected a JSON object' });
    return;
  }
  const keys = Object.keys(v);
  if (keys.length > MAX_FIELDS_PER_CHANGE) {
    ctx.addIssue({ code: 'custom', message: `has ${keys.length} fields, the limit is ${MAX_FIELDS_PER_CHANGE}`, params: OVERSIZED });
    return;
  }
  const issues: Issue[] = [];
  let total = 0;
  for (const k of keys) {
    const before = issues.length;
    const nameProblem = fieldNameProblem(k);
    if (nameProblem !== undefined) issues.push({ path: [k], message: nameProblem, oversized: nameProblem.includes('longer') });
    checkJson(v[k], [k], 1, issues);
    if (issues.length > before) continue;
    // Structure is valid JSON here (no cycles, finite numbers), so stringify is safe and exact.
    const bytes = utf8ByteLength(JSON.stringify(v[k]));
    total += bytes;
    if (bytes > MAX_FIELD_VALUE_BYTES) issues.push({ path: [k], message: `value is ${bytes} bytes as JSON, the limit is ${MAX_FIELD_VALUE_BYTES}`, oversized: true });
  }
  if (total > MAX_CHANGE_FIELDS_BYTES) issues.push({ path: [], message: `fields are ${total} bytes as JSON, the limit is ${MAX_CHANGE_FIELDS_BYTES}`, oversized: true });
  report(ctx, issues);
});

/**
 * Whether `checkJson` would find nothing wrong with `v` at `depth`: the same rules as a yes/no,
 * without building a path per node (the decoders' fast path; see `isValidFields`).
 */
function isCleanJson(v: unknown, depth: number): boolean {
  if (v === null || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (typeof v === 'string') return stringProblem(v) === undefined;
  if (depth >= MAX_JSON_DEPTH) return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!(i in v) || !isCleanJson(v[i], depth + 1)) return false;
    return true;
  }
  if (!isPlainObject(v)) return false;
  for (const k of Object.keys(v)) {
    if (k === '__proto__' || utf8ByteLength(k) > MAX_FIELD_NAME_BYTES || stringProblem(k) !== undefined) return false;
    if (!isCleanJson(v[k], depth + 1)) return false;
  }
  return true;
}

/**
 * Whether `FieldsSchema` accepts `v` without a single issue, as a yes/no (the decoders' fast path:
 * a `false` sends the value through the schema, which says exactly what is wrong). Must never say
 * yes where the schema would report an issue; `change.spec.ts` checks the two agree.
 */
export function isValidFields(v: unknown): v is Fields {
  if (!isPlainObject(v)) return false;
  const keys = Object.keys(v);
  if (keys.length > MAX_FIELDS_PER_CHANGE) return false;
  let total = 0;
  for (const k of keys) {
    if (fieldNameProblem(k) !== undefined) return false;
    const value = v[k];
    if (!isCleanJson(value, 1)) return false;
    // A string's JSON text without the builtin when nothing in it needs escaping (the common field value).
    const bytes = utf8ByteLength(typeof value === 'string' ? jsonString(value) : JSON.stringify(value));
    if (bytes > MAX_FIELD_VALUE_BYTES) return false;
    total += bytes;
  }
  return total <= MAX_CHANGE_FIELDS_BYTES;
}

