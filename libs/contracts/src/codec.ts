/**
 * Bytes <-> values at the wire boundary. Every handler goes bytes -> `decodeJson` ->
 * `decodeWith(schema)`, and each step fails with a FleetError carrying a stable code and a
 * reason that names the offending paths, so a rejected message can be dead-lettered with
 * something an operator can act on.
 */
import type { z } from 'zod';
import { FleetError } from '@fleet/errors';
import { isSupportedProtocol, SUPPORTED_PROTOCOL_VERSIONS } from './protocol';
import { MAX_REASON_LENGTH } from './limits';

/** Issues listed in one reason; the rest are counted. Reasons travel in NATS headers, which must stay small. */
const MAX_LISTED_ISSUES = 16;

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** UTF-8 length of a string without encoding it. Lone surrogates count as U+FFFD (3 bytes), as TextEncoder would write them. */
export function utf8ByteLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Parses a UTF-8 JSON payload. Fails with FLEET_DECODE_004 if it is longer than `maxBytes`
 * (checked before any parsing, so an oversized message costs nothing), and FLEET_DECODE_001
 * if it is not valid UTF-8 or not valid JSON.
 */
export function decodeJson(bytes: Uint8Array, maxBytes: number = Number.POSITIVE_INFINITY): unknown {
  if (bytes.byteLength > maxBytes) {
    throw new FleetError('FLEET_DECODE_004', `payload is ${bytes.byteLength} bytes, the limit is ${maxBytes}`, {
      details: { bytes: bytes.byteLength, limit: maxBytes },
    });
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch (cause) {
    throw new FleetError('FLEET_DECODE_001', 'payload is not valid UTF-8', { cause });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new FleetError('FLEET_DECODE_001', cause instanceof Error ? cause.message : 'invalid JSON', { cause });
  }
}

/** Serialises a message. Only for values built from the contract types; `undefined` properties are dropped by JSON. */
export function encodeJson(value: unknown): Uint8Array {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('encodeJson: value has no JSON form');
  return encoder.encode(text);
}

/** `changes[3].vv["a b"]` from a zod issue path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(p)) out += out === '' ? p : `.${p}`;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out === '' ? '(root)' : out;
}

/** Marks a custom issue as a size-cap violation, so the decode fails with FLEET_DECODE_004. */
export const OVERSIZED = { oversized: true } as const;

function isOversized(issue: z.core.$ZodIssue): boolean {
  if (issue.code === 'too_big') return issue.origin === 'string' || issue.origin === 'array' || issue.origin === 'set';
  return issue.code === 'custom' && issue.params?.['oversized'] === true;
}

/** Whether `path` names a key that is absent from its (object) parent in `value`. */
function isMissing(value: unknown, path: readonly PropertyKey[]): boolean {
  let v = value;
  for (let i = 0; i < path.length; i++) {
    if (typeof v !== 'object' || v === null) return false;
    const k = path[i];
    if (k === undefined || !Object.prototype.hasOwnProperty.call(v, k)) return i === path.length - 1;
    v = Reflect.get(v, k);
  }
  return false;
}

function flatten(value: unknown, issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[]): { path: string; message: string; oversized: boolean }[] {
  return issues.map((issue) => {
    const missing = issue.path.length > 0 && isMissing(value, issue.path);
    return {
      path: formatPath([...prefix, ...issue.path]),
      message: missing ? `required (${issue.message})` : issue.message,
      oversized: isOversized(issue),
    };
  });
}

/**
 * Validates `value` against `schema` and returns the decoded value; never a cast. On failure:
 * FLEET_DECODE_004 if any issue is a size cap, else FLEET_DECODE_002; the message lists the
 * paths (`changes[3].vv.a: expected a positive integer`) and `details.issues` holds them all.
 * `pathPrefix` roots the paths when `value` is part of a larger message.
 */
export function decodeWith<S extends z.ZodType>(schema: S, value: unknown, pathPrefix: readonly PropertyKey[] = []): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = flatten(value, result.error.issues, pathPrefix);
  const listed = issues.slice(0, MAX_LISTED_ISSUES).map((i) => `${i.path}: ${i.message}`);
  if (issues.length > MAX_LISTED_ISSUES) listed.push(`and ${issues.length - MAX_LISTED_ISSUES} more`);
  let reason = listed.join('; ');
  if (reason.length > MAX_REASON_LENGTH) reason = `${reason.slice(0, MAX_REASON_LENGTH - 1)}…`;
  const code = issues.some((i) => i.oversized) ? 'FLEET_DECODE_004' : 'FLEET_DECODE_002';
  throw new FleetError(code, reason, { details: { issues: issues.map(({ path, message }) => ({ path, message })) } });
}

/**
 * Rejects a message that declares a protocol version this build does not speak, with
 * FLEET_DECODE_003, before the schema runs (so the sender learns "upgrade" rather than a list
 * of schema differences). A missing or non-integer `protocol` is left to the schema.
 */
export function checkProtocol(value: unknown, pathPrefix: readonly PropertyKey[] = []): void {
  if (typeof value !== 'object' || value === null || !Object.prototype.hasOwnProperty.call(value, 'protocol')) return;
  const p: unknown = Reflect.get(value, 'protocol');
  if (typeof p === 'number' && Number.isInteger(p) && !isSupportedProtocol(p)) {
    throw new FleetError(
      'FLEET_DECODE_003',
      `${formatPath([...pathPrefix, 'protocol'])} is ${p}, this build speaks ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}`,
      { details: { protocol: p, supported: [...SUPPORTED_PROTOCOL_VERSIONS] } },
    );
  }
}

/** `decodeJson` + `checkProtocol` + `decodeWith`: the whole decode of one message from its bytes. */
export function decodeMessage<S extends z.ZodType>(schema: S, bytes: Uint8Array, maxBytes: number): z.output<S> {
  const value = decodeJson(bytes, maxBytes);
  checkProtocol(value);
  return decodeWith(schema, value);
}
