/**
 * Canonical JSON and content hashing.
 *
 * Every replica (server in PostgreSQL, agents in SQLite, Merkle buckets) must compute the same
 * hash for the same content, so the encoding has exactly one form per value:
 * - object keys sorted by UTF-16 code unit (JavaScript's default sort), so insertion order, which
 *   differs between a jsonb round trip and a SQLite round trip, cannot change the bytes;
 * - no whitespace;
 * - numbers and strings as `JSON.stringify` writes them: ECMAScript fixes the shortest round-trip
 *   form for numbers and escapes lone surrogates, so every engine agrees. `-0` becomes `0`.
 * - values JSON cannot represent are rejected rather than dropped or coerced (`JSON.stringify`
 *   silently drops `undefined` fields and writes NaN as `null`): a hash over a silently altered
 *   value would verify content nobody stored.
 */
import { hash } from 'node:crypto';
import { FleetError } from '@fleet/errors';
import type { JsonValue } from './model';

function fail(path: string, why: string): never {
  throw new FleetError('FLEET_JSON_001', `${why} at ${path}`, { details: { path } });
}

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** A character `JSON.stringify` escapes in a string (quote, backslash, control) or may (any surrogate half). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * `JSON.stringify(s)` for a string, byte for byte: the text between quotes as it is when nothing in it
 * needs escaping (the common case: names, keys, versions, ids), else `JSON.stringify` itself. The
 * write path encodes a dozen short strings per write; this skips the builtin's per-call overhead.
 */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * Appends the canonical text of `value` to `out`. The hot path (every write hashes its record) builds
 * no path strings and allocates nothing per primitive: on a failure the path of the offending value is
 * found again by `locate`, which costs only in the error case.
 */
function write(value: unknown, out: string[], ancestors: object[]): boolean {
  switch (typeof value) {
    case 'string':
      out.push(jsonString(value));
      return true;
    case 'number':
      if (!Number.isFinite(value)) return false;
      // A finite number's JSON text is its String() (the shortest round trip; -0 is "0" in both).
      out.push(String(value));
      return true;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) {
    out.push('null');
    return true;
  }
  if (ancestors.includes(value)) return false;
  ancestors.push(value);
  if (Array.isArray(value)) {
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(',');
      // A hole reads as undefined and is rejected like any undefined.
      if (!write(value[i], out, ancestors)) return false;
    }
    out.push(']');
  } else {
    if (!isPlainObject(value)) return false;
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    out.push('{');
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as string;
      out.push(i > 0 ? ',' : '', jsonString(k), ':');
      if (!write(obj[k], out, ancestors)) return false;
    }
    out.push('}');
  }
  ancestors.pop();
  return true;
}

/** Whether `value` is JSON `write` would accept, without producing the text (what `assertJson` needs). */
function isJson(value: unknown, ancestors: object[]): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      break;
    default:
      return false;
  }
  if (value === null) return true;
  if (ancestors.includes(value)) return false;
  ancestors.push(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isJson(value[i], ancestors)) return false;
  } else {
    if (!isPlainObject(value)) return false;
    for (const k in value) if (Object.hasOwn(value, k) && !isJson((value as Record<string, unknown>)[k], ancestors)) return false;
  }
  ancestors.pop();
  return true;
}

/** Finds the first value `write` refuses, depth first in canonical order, and throws naming its path. */
function locate(value: unknown, path: string, ancestors: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(path, `non-finite number ${String(value)}`);
      return;
    case 'object':
      break;
    default:
      fail(path, `${typeof value} is not JSON`);
  }
  if (value === null) return;
  if (ancestors.has(value)) fail(path, 'cycle');
  ancestors.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) locate(value[i], `${path}[${i}]`, ancestors);
  } else {
    if (!isPlainObject(value)) fail(path, 'not a plain object');
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj).sort()) locate(obj[k], `${path}.${k}`, ancestors);
  }
  ancestors.delete(value);
}

/** The one canonical JSON text of `value`. Throws `FLEET_JSON_001` for anything that is not JSON. */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  if (!write(value, out, [])) {
    locate(value, '$', new Set());
    fail('$', 'not JSON'); // unreachable: locate throws for whatever write refused
  }
  return out.join('');
}

/** Narrows `value` to JSON, or throws `FLEET_JSON_001` naming the offending path. */
export function assertJson(value: unknown): asserts value is JsonValue {
  if (!isJson(value, [])) {
    locate(value, '$', new Set());
    fail('$', 'not JSON'); // unreachable: locate throws for whatever isJson refused
  }
}

/** Whether `value` is representable as canonical JSON (never throws). */
export function isJsonValue(value: unknown): value is JsonValue {
  return isJson(value, []);
}

/** Structural equality of two JSON values (key order ignored). */
export function jsonEquals(a: JsonValue, b: JsonValue): boolean {
  return a === b || canonicalJson(a) === canonicalJson(b);
}

/** sha256 (hex) of the canonical JSON of `value`. */
export function contentHash(value: unknown): string {
  // One-shot `hash` (Node >= 20.12): the same digest as createHash().update().digest(), without the Hash object.
  return hash('sha256', canonicalJson(value), 'hex');
}
