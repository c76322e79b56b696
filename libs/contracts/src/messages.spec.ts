import fc from 'fast-check';
import { FleetError, isFleetError, type ErrorCode } from '@fleet/errors';
import {
  decodeAppendedEvent,
  decodeDeadLetter,
  decodeEncodingHeader,
  decodeErrorReply,
  decodePullReply,
  decodePullRequest,
  decodePullResponse,
  decodePushBatch,
  deadLetterForChange,
  encodeJson,
  errorReply,
  MAX_APPENDED_EVENT_BYTES,
  MAX_CHANGES_PER_PUSH,
  MAX_PULL_REQUEST_BYTES,
  MAX_PULL_RESPONSE_BYTES,
  MAX_PUSH_BATCH_BYTES,
  MAX_DEAD_LETTER_BYTES,
  MAX_REPORTED_AGE_MS,
  MAX_REPORTED_COUNT,
  MAX_ERROR_REPLY_BYTES,
  splitPushBatch,
} from './index';
import { bytes, loggedChangesArb, pullRequestArb, pullResponseArb, pushBatchArb, sampleChange } from './testing/arbitraries';

function failure(fn: () => unknown): { code: ErrorCode; message: string } {
  try {
    fn();
  } catch (e) {
    if (isFleetError(e)) return { code: e.code, message: e.message };
    throw new Error(`expected a FleetError, got ${String(e)}`);
  }
  throw new Error('expected decoding to fail');
}

const logged = { ...sampleChange(), seq: 5 };
const batch = { protocol: 1, batchId: '0190a6e0-5b7e-4cc3-8a8a-0123456789ab', agentId: 'agent-1', changes: [sampleChange()] };
const pullRequest = { protocol: 1, agentId: 'agent-1', scopes: ['host.agent-1', 'fleet'], cursor: 0 };
const pullResponse = { protocol: 1, records: [{ s: 'fleet', c: 'settings', k: 'a', w: [['server', 1, '001767225600000-000000-server', 'c1', { server: 1 }]], x: [[0, 1]], f: { n: [[0, 1]] } }], nextCursor: 5, hasMore: false };
const deadLetter = { protocol: 1, code: 'FLEET_DECODE_002', reason: 'x', source: { subject: 'sync.push.agent-1' }, rejectedAt: 0, payload: { a: 1 } };

/** Every decoder with one valid message, its cap, and paths to corrupt. */
const decoders: { name: string; decode: (b: Uint8Array) => unknown; valid: Record<string, unknown>; max: number; required: string[]; protocol: boolean }[] = [
  { name: 'push batch', decode: decodePushBatch, valid: batch, max: MAX_PUSH_BATCH_BYTES, required: ['batchId', 'agentId', 'changes'], protocol: true },
  { name: 'appended event', decode: decodeAppendedEvent, valid: { protocol: 1, changes: [logged] }, max: MAX_APPENDED_EVENT_BYTES, required: ['changes'], protocol: true },
  { name: 'pull request', decode: decodePullRequest, valid: pullRequest, max: MAX_PULL_REQUEST_BYTES, required: ['agentId', 'scopes', 'cursor'], protocol: true },
  { name: 'pull response', decode: decodePullResponse, valid: pullResponse, max: MAX_PULL_RESPONSE_BYTES, required: ['records', 'nextCursor', 'hasMore'], protocol: true },
  { name: 'error reply', decode: decodeErrorReply, valid: { error: { code: 'FLEET_AUTH_001', message: 'no' } }, max: MAX_ERROR_REPLY_BYTES, required: ['error'], protocol: false },
  { name: 'dead letter', decode: decodeDeadLetter, valid: deadLetter, max: MAX_DEAD_LETTER_BYTES, required: ['code', 'reason', 'source', 'rejectedAt'], protocol: true },
];

describe.each(decoders)('decode $name', ({ decode, valid, max, required, protocol }) => {
  it('accepts a valid message', () => {
    expect(decode(bytes(valid))).toEqual(valid);
  });
  it('rejects invalid UTF-8 and invalid JSON with FLEET_DECODE_001', () => {
    expect(failure(() => decode(new Uint8Array([0x7b, 0xff, 0x7d]))).code).toBe('FLEET_DECODE_001');
    expect(failure(() => decode(new TextEncoder().encode('{"protocol":1,'))).code).toBe('FLEET_DECODE_001');
    expect(failure(() => decode(new Uint8Array())).code).toBe('FLEET_DECODE_001');
  });
  it.each([['null'], ['42'], ['"x"'], ['[]'], ['true']])('rejects the non-object %s with FLEET_DECODE_002', (json) => {
    expect(failure(() => decode(new TextEncoder().encode(json))).code).toBe('FLEET_DECODE_002');
  });
  it('rejects a payload over its cap with FLEET_DECODE_004 before parsing', () => {
    const f = failure(() => decode(new Uint8Array(max + 1)));
    expect(f.code).toBe('FLEET_DECODE_004');
    expect(f.message).toContain(`limit is ${max}`);
  });
  it('names each missing field', () => {
    for (const k of required) {
      const { [k]: _, ...rest } = valid;
      const f = failure(() => decode(bytes(rest)));
      expect(f.code).toBe('FLEET_DECODE_002');
      expect(f.message).toContain(`${k}: required`);
    }
  });
  it('rejects unknown keys', () => {
    expect(failure(() => decode(bytes({ ...valid, surprise: true }))).message).toMatch(/Unrecognized key: "surprise"/);
  });
  it('rejects wrong types in every field', () => {
    // `payload` of a dead letter is any JSON on purpose: it holds what was rejected.
    for (const k of Object.keys(valid).filter((k) => k !== 'payload')) {
      const f = failure(() => decode(bytes({ ...valid, [k]: { wrong: [] } })));
      expect(f.code).toBe('FLEET_DECODE_002');
      expect(f.message).toContain(k);
    }
  });
  if (protocol) {
    it('rejects an unknown protocol version with FLEET_DECODE_003', () => {
      expect(failure(() => decode(bytes({ ...valid, protocol: 99 }))).code).toBe('FLEET_DECODE_003');
    });
  }
  it('throws only FleetErrors for arbitrary JSON and arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue().map((v) => bytes(v)), fc.uint8Array({ maxLength: 64 })), (b) => {
        try {
          decode(b);
        } catch (e) {
          expect(isFleetError(e)).toBe(true);
        }
      }),
    );
  });
});

describe('round trips of generated messages', () => {
  it('push batch: envelope and changes', () => {
    fc.assert(
      fc.property(pushBatchArb, (b) => {
        const decoded = decodePushBatch(encodeJson(b));
        expect(decoded).toEqual(b);
        const { accepted, rejected } = splitPushBatch(decoded, b.agentId);
        expect(rejected).toEqual([]);
        expect(accepted).toEqual(b.changes);
      }),
    );
  });
  it('appended event', () => {
    fc.assert(
      fc.property(loggedChangesArb(5).filter((c) => c.length > 0), (changes) => {
        const e = { protocol: 1, changes };
        expect(decodeAppendedEvent(encodeJson(e))).toEqual(e);
      }),
    );
  });
  it('pull request', () => {
    fc.assert(fc.property(pullRequestArb, (r) => expect(decodePullRequest(encodeJson(r))).toEqual(r)));
  });
  it('pull response, also as a reply', () => {
    fc.assert(
      fc.property(pullResponseArb, (r) => {
        expect(decodePullResponse(encodeJson(r))).toEqual(r);
        expect(decodePullReply(encodeJson(r))).toEqual({ ok: true, value: r });
      }),
    );
  });
});

describe('push batch', () => {
  it('keeps the good changes of a batch with bad ones, and says why for each bad one', () => {
    const b = decodePushBatch(
      bytes({
        ...batch,
        changes: [
          sampleChange(),
          sampleChange({ vv: { 'agent-1': 0 } }),
          'not a change',
          sampleChange({ origin: 'agent-2', vv: { 'agent-2': 1 } }),
          sampleChange({ scope: 'fleet' }),
          sampleChange({ protocol: 7 }),
        ],
      }),
    );
    const { accepted, rejected } = splitPushBatch(b, 'agent-1');
    expect(accepted).toHaveLength(1);
    expect(rejected.map((r) => [r.index, r.error.code])).toEqual([
      [1, 'FLEET_DECODE_002'],
      [2, 'FLEET_DECODE_002'],
      [3, 'FLEET_AUTH_001'],
      [4, 'FLEET_AUTH_003'],
      [5, 'FLEET_DECODE_003'],
    ]);
    expect(rejected[0]?.error.message).toContain('changes[1].vv.agent-1: expected a positive integer');
    expect(rejected[3]?.error.message).toContain('agent "agent-1" may write only "host.agent-1"');
  });
  it('refuses the whole batch when the envelope names another agent', () => {
    expect(failure(() => splitPushBatch(decodePushBatch(bytes(batch)), 'agent-2')).code).toBe('FLEET_AUTH_001');
  });
  it('refuses an empty batch and one with too many changes', () => {
    expect(failure(() => decodePushBatch(bytes({ ...batch, changes: [] }))).code).toBe('FLEET_DECODE_002');
    expect(failure(() => decodePushBatch(bytes({ ...batch, changes: Array.from({ length: MAX_CHANGES_PER_PUSH + 1 }, () => 0) }))).code).toBe('FLEET_DECODE_004');
  });
  it('refuses the server as agent id', () => {
    expect(failure(() => decodePushBatch(bytes({ ...batch, agentId: 'server' }))).message).toMatch(/agentId: expected an agent id/);
  });
  it('builds a dead letter for a rejected change that decodes again', () => {
    const b = decodePushBatch(bytes({ ...batch, changes: [sampleChange({ originSeq: -1 })] }));
    const [r] = splitPushBatch(b, 'agent-1').rejected;
    if (r === undefined) throw new Error('expected a rejection');
    const dl = deadLetterForChange(b, r, { subject: 'sync.push.agent-1', stream: 'SYNC_PUSH', streamSeq: 3 }, 1_700_000_000_000);
    expect(decodeDeadLetter(encodeJson(dl))).toEqual(dl);
    expect(dl).toMatchObject({ code: 'FLEET_DECODE_002', index: 0, changeId: sampleChange()['changeId'], agentId: 'agent-1' });
  });
});

describe('appended event and pull response invariants', () => {
  it('requires ascending seq', () => {
    const f = failure(() => decodeAppendedEvent(bytes({ protocol: 1, changes: [logged, logged] })));
    expect(f.message).toContain('changes[1].seq: expected seq above 5');
  });
  it('rejects a cursor the server did not make', () => {
    expect(failure(() => decodePullResponse(bytes({ ...pullResponse, nextCursor: 'x.1.' }))).message).toContain('nextCursor');
  });
  it('rejects a record whose stamp index is out of range', () => {
    const rec = { ...pullResponse.records[0], x: [[1, 1]] };
    expect(failure(() => decodePullResponse(bytes({ ...pullResponse, records: [rec] }))).message).toContain('stamp index out of range');
  });
});

describe('pull request', () => {
  it.each([
    ['duplicate scopes', { scopes: ['fleet', 'fleet'] }, /scopes: scopes are listed twice/],
    ['no scopes', { scopes: [] }, /scopes: at least one scope/],
    ['negative cursor', { cursor: -1 }, /cursor: expected a non-negative integer/],
    ['forged cursor', { cursor: 'r.1.$$' }, /cursor: expected a cursor/],
    ['limit 0', { limit: 0 }, /limit: expected at least 1/],
    ['limit above the cap', { limit: 5001 }, /limit: expected at most 5000/],
    ['unknown encoding', { acceptEncodings: ['br'] }, /acceptEncodings\[0\]/],
    ['explicit null for an optional', { limit: null }, /limit/],
  ])('rejects %s', (_n, o, reason) => {
    expect(failure(() => decodePullRequest(bytes({ ...pullRequest, ...o }))).message).toMatch(reason);
  });
});

describe('pull request health (protocol 2)', () => {
  const health = { outbox: 12, oldestUnsentAgeMs: 90_000, retryQueue: 12, failedPushes: 4 };
  const v2 = { ...pullRequest, protocol: 2, health };

  it('is read at protocol 2; a protocol 1 pull request without it reads as before', () => {
    expect(decodePullRequest(bytes(v2))).toEqual(v2);
    expect(decodePullRequest(bytes(pullRequest))).toEqual(pullRequest);
    expect(decodePullRequest(bytes({ ...pullRequest, protocol: 2 }))).toEqual({ ...pullRequest, protocol: 2 });
  });

  it('is refused at protocol 1 (a version 1 pull request has no health), and a version this build does not speak is FLEET_DECODE_003', () => {
    expect(failure(() => decodePullRequest(bytes({ ...v2, protocol: 1 })))).toEqual({ code: 'FLEET_DECODE_002', message: expect.stringMatching(/health: needs protocol 2/) });
    expect(failure(() => decodePullRequest(bytes({ ...v2, protocol: 3 }))).code).toBe('FLEET_DECODE_003');
  });

  it.each([
    ['a negative count', { outbox: -1 }, /health\.outbox: expected at least 0/],
    ['a fraction', { retryQueue: 1.5 }, /health\.retryQueue/],
    ['a count over the cap', { failedPushes: MAX_REPORTED_COUNT + 1 }, /health\.failedPushes: expected at most 2147483647/],
    ['an age over ten years', { oldestUnsentAgeMs: MAX_REPORTED_AGE_MS + 1 }, /health\.oldestUnsentAgeMs: expected at most/],
    ['a string', { outbox: '3' }, /health\.outbox/],
    ['null', { failedPushes: null }, /health\.failedPushes/],
    ['an unknown field', { lastPushOkAt: 5 }, /Unrecognized key/],
  ])('rejects %s (FLEET_DECODE_002)', (_n, o, reason) => {
    const f = failure(() => decodePullRequest(bytes({ ...v2, health: { ...health, ...o } })));
    expect(f.code).toBe('FLEET_DECODE_002');
    expect(f.message).toMatch(reason);
  });

  it('rejects a health with a field missing', () => {
    const { retryQueue: _, ...partial } = health;
    expect(failure(() => decodePullRequest(bytes({ ...v2, health: partial }))).message).toMatch(/health\.retryQueue: required/);
  });
});

describe('replies', () => {
  it('maps a FleetError to an error reply and back', () => {
    const reply = errorReply(new FleetError('FLEET_AUTH_002', 'host.x', { details: { scope: 'host.x' } }));
    expect(reply).toEqual({ error: { code: 'FLEET_AUTH_002', message: 'scope is not readable by this agent: host.x', retryable: false, details: { scope: 'host.x' } } });
    expect(decodeErrorReply(encodeJson(reply))).toEqual(reply);
    expect(decodePullReply(encodeJson(reply))).toEqual({ ok: false, error: reply.error });
  });
  it('hides anything that is not a FleetError', () => {
    expect(errorReply(new Error('db password is hunter2'))).toEqual({ error: { code: 'FLEET_INTERNAL_001', message: 'internal error', retryable: false } });
  });
  it('accepts codes this build does not know, but not malformed ones', () => {
    expect(decodeErrorReply(bytes({ error: { code: 'FLEET_FUTURE_123', message: 'x' } })).error.code).toBe('FLEET_FUTURE_123');
    expect(failure(() => decodeErrorReply(bytes({ error: { code: 'oops', message: 'x' } }))).code).toBe('FLEET_DECODE_002');
  });
});

describe('dead letter', () => {
  it('requires exactly one of payload and rawBase64', () => {
    const { payload: _, ...neither } = deadLetter;
    expect(failure(() => decodeDeadLetter(bytes(neither))).message).toMatch(/exactly one of payload and rawBase64/);
    expect(failure(() => decodeDeadLetter(bytes({ ...deadLetter, rawBase64: 'AA==' }))).message).toMatch(/exactly one/);
    expect(decodeDeadLetter(bytes({ ...neither, rawBase64: 'AA==' })).rawBase64).toBe('AA==');
  });
});

describe('encoding header', () => {
  it('knows identity and gzip and nothing else', () => {
    expect(decodeEncodingHeader(undefined)).toBe('identity');
    expect(decodeEncodingHeader('gzip')).toBe('gzip');
    expect(failure(() => decodeEncodingHeader('br')).code).toBe('FLEET_DECODE_001');
  });
});
