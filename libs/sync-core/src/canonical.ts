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
import { createHash } from 'node:crypto';
import { FleetError } from '@fleet/errors';
import type { JsonValue } from './model';

function fail(path: string, why: string): never {
  throw new FleetError('FLEET_JSON_001', `${why} at ${path}`, { details: { path } });
}

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function write(value: unknown, out: string[], path: string, ancestors: Set<object>): void {
  switch (typeof value) {
    case 'string':
      out.push(JSON.stringify(value));
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(path, `non-finite number ${String(value)}`);
      out.push(JSON.stringify(value));
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'object':
      break;
    default:
      fail(path, `${typeof value} is not JSON`);
  }
  if (value === null) {
    out.push('null');
    return;
  }
  if (ancestors.has(value)) fail(path, 'cycle');
  ancestors.add(value);
  if (Array.isArray(value)) {
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(',');
      // A hole reads as undefined and is rejected like any undefined.
      write(value[i], out, `${path}[${i}]`, ancestors);
    }
    out.push(']');
  } else {
    if (!isPlainObject(value)) fail(path, 'not a plain object');
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    out.push('{');
    keys.forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(JSON.stringify(k), ':');
      write(obj[k], out, `${path}.${k}`, ancestors);
    });
    out.push('}');
  }
  ancestors.delete(value);
}

/** The one canonical JSON text of `value`. Throws `FLEET_JSON_001` for anything that is not JSON. */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  write(value, out, '$', new Set());
  return out.join('');
}

/** Narrows `value` to JSON, or throws `FLEET_JSON_001` naming the offending path. */
export function assertJson(value: unknown): asserts value is JsonValue {
  canonicalJson(value);
}

/** Whether `value` is representable as canonical JSON (never throws). */
export function isJsonValue(value: unknown): value is JsonValue {
  try {
    canonicalJson(value);
    return true;
  } catch {
    return false;
  }
}

/** Structural equality of two JSON values (key order ignored). */
export function jsonEquals(a: JsonValue, b: JsonValue): boolean {
  return a === b || canonicalJson(a) === canonicalJson(b);
}

/** sha256 (hex) of the canonical JSON of `value`. */
export function contentHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}
