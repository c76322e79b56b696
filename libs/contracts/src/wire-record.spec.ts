import fc from 'fast-check';
import { emptyRecord, joinChange, mergeRecordStates, recordHash, refreshView, visibleHash } from '@fleet/sync-core';
import type { Change, RecordState, StrategyConfig } from '@fleet/sync-core';
import {
  decodeNextCursorHeader,
  decodePullResponse,
  encodeJson,
  fromWireRecord,
  MAX_PULL_LIMIT,
  MAX_PULL_RESPONSE_BYTES,
  MAX_SNAPSHOT_PAGE_RECORDS,
  MAX_SNAPSHOT_RESPONSE_BYTES,
  resyncCursor,
  singleWriteState,
  toWireRecord,
  wireRecordIssues,
  wireStateText,
} from './index';
import type { WireRecord } from './index';
import { changeArb, jsonValueArb } from './testing/arbitraries';

const configs: StrategyConfig[] = [{ default: 'lww' }, { default: 'merge' }, { default: 'manual' }];

/** The general path: what the agent store holds after joining `w` into an empty state. */
function joined(w: WireRecord, config: StrategyConfig): RecordState {
  return mergeRecordStates(emptyRecord({ scope: w.s, collection: w.c, key: w.k }), fromWireRecord(w), config);
}

/** Integer-like names enumerate first in JavaScript objects whatever their order: singleWriteState leaves them to the join. */
const indexLike = (w: WireRecord): boolean => Object.keys(w.f ?? {}).some((n) => /^(0|[1-9][0-9]*)$/.test(n));

function expectSameAsJoin(w: WireRecord): void {
  const fast = singleWriteState(w);
  if (fast === undefined) return;
  for (const config of configs) {
    const m = joined(w, config);
    expect(fast.text).toBe(wireStateText(m));
    expect(fast.status).toBe(m.view.status);
    expect(fast.fields).toEqual(m.view.fields);
    expect(fast.fieldsText).toBe(m.view.status === 'live' ? JSON.stringify(m.view.fields) : null);
    expect(JSON.stringify(fast.vv)).toBe(JSON.stringify(m.vv));
    expect(fast.hash).toBe(recordHash(m));
    expect(m.view.conflicted).toBe(false);
  }
}

/** Reorders a wire record's field registers (a sender need not send them in order). */
function shuffledFields(w: WireRecord, seed: number): WireRecord {
  if (w.f === undefined) return w;
  const entries = Object.entries(w.f);
  const rot = entries.length === 0 ? 0 : seed % entries.length;
  return { ...w, f: Object.fromEntries([...entries.slice(rot), ...entries.slice(0, rot)].reverse()) };
}

describe('singleWriteState (the bulk apply path)', () => {
  it('equals the join into an empty state, for every record of one change, under every strategy', () => {
    fc.assert(
      fc.property(changeArb, (c: Change) => {
        const w = toWireRecord(joinChange(emptyRecord(c), c).state);
        expect(wireRecordIssues(w)).toEqual([]);
        if (c.op === 'put' && !indexLike(w)) expect(singleWriteState(w)).toBeDefined(); // the common case takes the fast path
        expectSameAsJoin(w);
      }),
      { numRuns: 500 },
    );
  });
  it('is undefined or equal to the join for joined histories and reordered registers', () => {
    fc.assert(
      fc.property(fc.array(changeArb, { minLength: 1, maxLength: 4 }), fc.nat(), (cs, seed) => {
        const first = cs[0] as Change;
        const ref = { scope: first.scope, collection: first.collection, key: first.key };
        let s = emptyRecord(ref);
        for (const c of cs) {
          try {
            s = joinChange(s, { ...c, ...ref }).state;
          } catch {
            return; // a reused dot (FLEET_CHANGE_002): not a history
          }
        }
        const w = toWireRecord(refreshView(s, { default: 'lww' }));
        expectSameAsJoin(w);
        expectSameAsJoin(shuffledFields(w, seed));
      }),
      { numRuns: 300 },
    );
  });
  it('hashes visible fields like visibleHash, flat or nested values alike', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__'), jsonValueArb, { maxKeys: 6 }), (fields) => {
        const names = Object.keys(fields).sort();
        const w: WireRecord = {
          s: 'fleet',
          c: 'col',
          k: 'k',
          w: [['server', 1, '001767225600000-000000-server', 'c1', { server: 1 }]],
          x: [[0, 1]],
          ...(names.length === 0 ? {} : { f: Object.fromEntries(names.map((n) => [n, [[0, fields[n] as never]]])) }),
        };
        const fast = singleWriteState(w);
        if (fast !== undefined) expect(fast.hash).toBe(visibleHash(fast.fields));
        expectSameAsJoin(w);
      }),
    );
  });
  it('leaves a record with delete vectors, several stamps or several writes in a register to the join', () => {
    const stamp = (n: number): WireRecord['w'][number] => ['server', n, `00176722560000${n}-000000-server`, `c${n}`, { server: n }];
    const base: WireRecord = { s: 'fleet', c: 'col', k: 'k', w: [stamp(1)], x: [[0, 1]], f: { a: [[0, 1]] } };
    expect(singleWriteState(base)).toBeDefined();
    expect(singleWriteState({ ...base, d: [{ server: 1 }] })).toBeUndefined();
    expect(singleWriteState({ ...base, w: [stamp(1), stamp(2)], x: [[0, 1], [1, 1]] })).toBeUndefined();
    expect(singleWriteState({ ...base, f: { b: [[0, 1]], a: [[0, 2]] } })).toBeUndefined();
    expect(singleWriteState({ ...base, f: { a: [[0, 1], [0, 2]] } })).toBeUndefined();
  });
});

describe('snapshot pages', () => {
  const rec = (i: number): WireRecord => ({ s: 'fleet', c: 'col', k: `k${i}`, w: [['server', i + 1, '001767225600000-000000-server', `c${i}`, { server: i + 1 }]], x: [[0, 1]] });
  it('may carry up to MAX_SNAPSHOT_PAGE_RECORDS records and MAX_SNAPSHOT_RESPONSE_BYTES when the caller allows; other pages stay capped', () => {
    const many = Array.from({ length: MAX_PULL_LIMIT + 1 }, (_, i) => rec(i));
    const snap = { protocol: 1, records: many, nextCursor: resyncCursor(7, { scope: 'fleet', collection: 'col', key: 'k1' }, 'snapshot'), hasMore: true, snapshot: true };
    expect(decodePullResponse(encodeJson(snap)).records).toHaveLength(MAX_PULL_LIMIT + 1);
    const log = { protocol: 1, records: many, nextCursor: 9, hasMore: true };
    expect(() => decodePullResponse(encodeJson(log))).toThrow(/more than 5000 records/);
    const tooMany = { ...snap, records: Array.from({ length: MAX_SNAPSHOT_PAGE_RECORDS + 1 }, (_, i) => rec(i)) };
    expect(() => decodePullResponse(encodeJson(tooMany), MAX_SNAPSHOT_RESPONSE_BYTES)).toThrow(/more than 16384 records/);
    // over the ordinary byte cap: only a snapshot page, and only with the larger cap
    const big = Array.from({ length: 4000 }, (_, i) => ({ ...rec(i), f: { pad: [[0, 'x'.repeat(300)]] } }));
    const bigSnap = encodeJson({ ...snap, records: big });
    expect(bigSnap.byteLength).toBeGreaterThan(MAX_PULL_RESPONSE_BYTES);
    expect(() => decodePullResponse(bigSnap)).toThrow(/limit is/);
    expect(decodePullResponse(bigSnap, MAX_SNAPSHOT_RESPONSE_BYTES).records).toHaveLength(4000);
    const bigLog = encodeJson({ ...log, records: big });
    expect(() => decodePullResponse(bigLog, MAX_SNAPSHOT_RESPONSE_BYTES)).toThrow(/limit is 983040/);
  });
  it('cursors: s. and r. positions round-trip; the next-cursor header decodes only cursors', () => {
    expect(decodeNextCursorHeader('123')).toBe(123);
    expect(decodeNextCursorHeader(JSON.stringify(resyncCursor(5, undefined, 'snapshot')))).toBe('s.5.');
    expect(decodeNextCursorHeader(JSON.stringify(resyncCursor(5)))).toBe('r.5.');
    expect(decodeNextCursorHeader('"x.1."')).toBeUndefined();
    expect(decodeNextCursorHeader('-1')).toBeUndefined();
    expect(decodeNextCursorHeader('{')).toBeUndefined();
    expect(decodeNextCursorHeader(undefined)).toBeUndefined();
    expect(decodeNextCursorHeader('')).toBeUndefined();
  });
});
