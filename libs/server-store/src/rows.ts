import type { Change, ChangeOp, Fields, LoggedChange, VersionVector } from '@fleet/sync-core';

/** The columns of `change_log` as node-postgres returns them (bigint as string, jsonb parsed). */
export interface ChangeLogRow {
  seq: string;
  change_id: string;
  origin: string;
  origin_seq: string;
  scope: string;
  collection: string;
  key: string;
  op: string;
  fields: Fields;
  unset: readonly string[] | null;
  hlc: string;
  vv: VersionVector;
  hash: string;
  protocol: number;
}

/** The columns selected when a change is read back (never `select *`, so new columns do not leak). */
export const CHANGE_COLUMNS = 'seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol';

export function toSafeNumber(v: string | number, what: string): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isSafeInteger(n)) throw new RangeError(`${what} ${String(v)} is not a safe integer`);
  return n;
}

export function rowToLoggedChange(r: ChangeLogRow): LoggedChange {
  const base = {
    seq: toSafeNumber(r.seq, 'seq'),
    changeId: r.change_id,
    origin: r.origin,
    originSeq: toSafeNumber(r.origin_seq, 'origin_seq'),
    scope: r.scope,
    collection: r.collection,
    key: r.key,
    op: r.op as ChangeOp,
    fields: r.fields,
    hlc: r.hlc,
    vv: r.vv,
    hash: r.hash,
    protocol: r.protocol,
  };
  return r.unset === null ? base : { ...base, unset: r.unset };
}

/** JSON with object keys sorted, so two equal values have one text. */
export function stableJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
    .join(',')}}`;
}

/** Everything that makes a change the change it is (all of it but the server's seq). */
export function contentOf(c: Change): string {
  return stableJson({
    changeId: c.changeId.toLowerCase(),
    origin: c.origin,
    originSeq: c.originSeq,
    scope: c.scope,
    collection: c.collection,
    key: c.key,
    op: c.op,
    fields: c.fields,
    unset: c.unset ?? null,
    hlc: c.hlc,
    vv: c.vv,
    hash: c.hash,
    protocol: c.protocol,
  });
}

/** Where two contents differ, for the dead letter's reason. */
export function differingFields(a: Change, b: Change): string[] {
  const keys = ['origin', 'originSeq', 'scope', 'collection', 'key', 'op', 'fields', 'unset', 'hlc', 'vv', 'hash', 'protocol'] as const;
  return keys.filter((k) => stableJson(a[k] ?? null) !== stableJson(b[k] ?? null));
}
