/**
 * fast-check arbitraries of valid messages, for this lib's tests and for any other project
 * that wants generated wire messages (import from '@fleet/contracts/src/testing/arbitraries').
 */
import fc from 'fast-check';
import { applyChanges } from '@fleet/sync-core';
import type { Change, Fields, JsonValue, LoggedChange } from '@fleet/sync-core';
import { MAX_REPORTED_AGE_MS, MAX_REPORTED_COUNT } from '../limits';
import { HEALTH_REPORT_PROTOCOL_VERSION, PROTOCOL_VERSION } from '../protocol';
import { resyncCursor } from '../messages';
import type { PullRequest, PushBatch, PushHealth } from '../messages';
import { toWireRecord } from '../wire-record';
import type { WireRecord } from '../wire-record';

export const agentIdArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/).filter((s) => s !== 'server' && s !== '__proto__');
export const scopeArb = fc.oneof(
  fc.constant('fleet'),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/).map((n) => `group.${n}`),
  agentIdArb.map((a) => `host.${a}`),
);
export const collectionArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,30}$/);
/** Keys: any well-formed text without NUL. */
export const keyArb = fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }).filter((s) => !s.includes('\u0000'));
export const hashArb = fc.stringMatching(/^[0-9a-f]{64}$/);
export const hlcArb = fc.stringMatching(/^[0-9]{15}-[0-9]{6}-[\x21-\x7e]{1,24}$/);
export const uuidV7Arb = fc.uuid({ version: 7 });

/** JSON in normal form (what JSON.parse yields: no -0), storable (no NUL, no __proto__). */
export const jsonValueArb: fc.Arbitrary<JsonValue> = fc
  .jsonValue({ maxDepth: 3 })
  .map((v) => JSON.parse(JSON.stringify(v)) as JsonValue)
  .filter((v) => {
    const s = JSON.stringify(v);
    return !s.includes('"__proto__"') && !s.includes('\\u0000');
  });

const fieldNameArb = fc.string({ minLength: 1, maxLength: 12 }).filter((k) => k !== '__proto__' && !k.includes('\u0000'));
export const fieldsArb: fc.Arbitrary<Fields> = fc.dictionary(fieldNameArb, jsonValueArb, { maxKeys: 6 });

export const changeArb: fc.Arbitrary<Change> = fc
  .record({
    changeId: uuidV7Arb,
    origin: fc.oneof(agentIdArb, fc.constant('server')),
    originSeq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    scope: scopeArb,
    collection: collectionArb,
    key: keyArb,
    op: fc.constantFrom('put' as const, 'delete' as const),
    fields: fieldsArb,
    unset: fc.option(fc.uniqueArray(fieldNameArb, { maxLength: 4 }), { nil: undefined }),
    hlc: hlcArb,
    otherActors: fc.dictionary(agentIdArb, fc.integer({ min: 1, max: 1_000_000 }), { maxKeys: 3 }),
    own: fc.integer({ min: 1, max: 1_000_000 }),
    hash: hashArb,
  })
  .map(({ otherActors, own, unset, ...c }): Change => {
    const base = { ...c, vv: { ...otherActors, [c.origin]: own }, protocol: PROTOCOL_VERSION };
    if (c.op === 'delete') return { ...base, fields: {} };
    const u = unset?.filter((n) => !Object.prototype.hasOwnProperty.call(c.fields, n));
    return u === undefined ? base : { ...base, unset: u };
  });

/** Host-scope changes written by `agentId`: what an honest agent pushes. */
export function ownChangeArb(agentId: string): fc.Arbitrary<Change> {
  return changeArb.map((c) => {
    const { [c.origin]: own = 1, ...rest } = c.vv;
    return { ...c, origin: agentId, scope: `host.${agentId}`, vv: { ...rest, [agentId]: own } };
  });
}

export function loggedChangesArb(maxLength: number): fc.Arbitrary<LoggedChange[]> {
  return fc
    .array(fc.tuple(changeArb, fc.integer({ min: 1, max: 1000 })), { maxLength })
    .map((items) => {
      let seq = 0;
      return items.map(([c, step]) => ({ ...c, seq: (seq += step) }));
    });
}

export const pushBatchArb: fc.Arbitrary<PushBatch> = agentIdArb.chain((agentId) =>
  fc.record(
    {
      protocol: fc.constant(PROTOCOL_VERSION),
      batchId: fc.uuid(),
      agentId: fc.constant(agentId),
      sentAt: fc.integer({ min: 0, max: 4_102_444_800_000 }),
      changes: fc.array(ownChangeArb(agentId), { minLength: 1, maxLength: 5 }),
    },
    { requiredKeys: ['protocol', 'batchId', 'agentId', 'changes'] },
  ),
);

/** An agent's push-side report (any value the schema takes, edges included). */
export const pushHealthArb: fc.Arbitrary<PushHealth> = fc.record({
  outbox: fc.oneof(fc.nat({ max: 1000 }), fc.constant(MAX_REPORTED_COUNT)),
  oldestUnsentAgeMs: fc.oneof(fc.nat({ max: 86_400_000 }), fc.constant(MAX_REPORTED_AGE_MS)),
  retryQueue: fc.nat({ max: 1000 }),
  failedPushes: fc.oneof(fc.nat({ max: 100 }), fc.constant(MAX_REPORTED_COUNT)),
});

/** A pull request of protocol 1, or of protocol 2 with or without `health`. */
export const pullRequestArb: fc.Arbitrary<PullRequest> = fc
  .record(
    {
      agentId: agentIdArb,
      scopes: fc.uniqueArray(scopeArb, { minLength: 1, maxLength: 5 }),
      cursor: fc.oneof(
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.tuple(fc.integer({ min: 0, max: 1e9 }), fc.option(fc.record({ scope: scopeArb, collection: collectionArb, key: keyArb }), { nil: undefined })).map(([at, after]) => resyncCursor(at, after)),
      ),
      limit: fc.integer({ min: 1, max: 1000 }),
      acceptEncodings: fc.uniqueArray(fc.constantFrom('identity' as const, 'gzip' as const)),
      health: pushHealthArb,
    },
    { requiredKeys: ['agentId', 'scopes', 'cursor'] },
  )
  .chain((r) => (r.health === undefined ? fc.constantFrom(PROTOCOL_VERSION, HEALTH_REPORT_PROTOCOL_VERSION) : fc.constant(HEALTH_REPORT_PROTOCOL_VERSION)).map((protocol): PullRequest => ({ protocol, ...r })));

/** A pull response as a sender builds it (domain `LoggedChange`s). */
export interface PullResponseLike {
  protocol: number;
  records: WireRecord[];
  nextCursor: number;
  hasMore: boolean;
  fullResync?: boolean;
}

export const pullResponseArb: fc.Arbitrary<PullResponseLike> = fc
  .record({ changes: loggedChangesArb(5), extra: fc.integer({ min: 0, max: 100 }), hasMore: fc.boolean(), fullResync: fc.option(fc.boolean(), { nil: undefined }) })
  .map(({ changes, extra, hasMore, fullResync }) => {
    const last = changes[changes.length - 1]?.seq ?? 0;
    const r: PullResponseLike = { protocol: PROTOCOL_VERSION, records: changes.map((c) => toWireRecord(applyChanges([c], { default: 'lww' }))), nextCursor: last + extra, hasMore };
    return fullResync === undefined ? r : { ...r, fullResync };
  });

/** One valid change, for example-based tests. */
export function sampleChange(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    changeId: '0190a6e0-5b7e-7cc3-8a8a-0123456789ab',
    origin: 'agent-1',
    originSeq: 7,
    scope: 'host.agent-1',
    collection: 'inventory',
    key: 'pkg:openssl',
    op: 'put',
    fields: { version: '3.0.2', arch: 'x86_64', tags: ['security'] },
    hlc: '001732777777777-000000-agent-1',
    vv: { 'agent-1': 3, server: 1 },
    hash: 'a'.repeat(64),
    protocol: 1,
    ...overrides,
  };
}

export function bytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}
