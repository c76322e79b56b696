import fc from 'fast-check';
import type { Change } from './model';
import { encodeHlc } from './hlc';
import { emptyRecord, recordHash } from './record';
import type { RecordState } from './record';
import { makeLocalChange } from './resolve';
import type { StrategyConfig } from './resolve';
import { batchIdOf, mergePulledRecords, planPushBatch, planVerifyFetch, settleAfterFetch } from './sync-protocol';

const cfg: StrategyConfig = { default: 'lww', collections: { ops: { strategy: 'manual' } } };
const ref = (collection = 'inv', key = 'k') => ({ scope: 'fleet', collection, key });

function edit(origin: string, seq: number, state = emptyRecord(ref()), fields: Record<string, number> = { a: seq }) {
  return makeLocalChange(state, { op: 'put', fields }, { origin, originSeq: seq, changeId: `${origin}-${seq}`, hlc: encodeHlc({ wallMs: 1_700_000_000_000 + seq, counter: 0, node: origin }), protocol: 1 }, cfg);
}

const change = (seq: number): Change => ({ ...edit('agent-1', seq).change, key: `k${seq}` });

describe('planPushBatch', () => {
  it('property: a prefix of the outbox in originSeq order, within both caps, never empty when the first row fits', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 10_000 }), { maxLength: 60 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 4000 }), (seqs, maxChanges, maxBytes) => {
        const rows = seqs.map(change);
        const sizeOf = (c: Change) => 50 + (c.originSeq % 100);
        const plan = planPushBatch(rows, { maxChanges, maxBytes, sizeOf });
        const sorted = [...rows].sort((a, b) => a.originSeq - b.originSeq);
        expect(plan.changes).toEqual(sorted.slice(0, plan.changes.length));
        expect(plan.changes.length).toBeLessThanOrEqual(maxChanges);
        expect(plan.changes.reduce((n, c) => n + sizeOf(c) + 1, 0)).toBeLessThanOrEqual(maxBytes);
        const first = sorted[0];
        if (first !== undefined && sizeOf(first) + 1 <= maxBytes) expect(plan.changes.length).toBeGreaterThan(0);
        if (first !== undefined && sizeOf(first) + 1 > maxBytes) expect(plan.oversized).toBe(first);
      }),
    );
  });

  it('batch ids: deterministic, a lowercase UUID, different for different rows', () => {
    const id = batchIdOf(['a', 'b']);
    expect(id).toBe(batchIdOf(['a', 'b']));
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(batchIdOf(['a', 'b', 'c'])).not.toBe(id);
    expect(batchIdOf(['ab'])).not.toBe(batchIdOf(['a', 'b']));
  });
});

describe('mergePulledRecords', () => {
  it('a remote write concurrent with a local one is a conflict, settled by lww; manual stays for an operator', () => {
    for (const [collection, resolved] of [['inv', 1], ['ops', 0]] as const) {
      const r = ref(collection);
      const local = edit('agent-1', 1, emptyRecord(r), { a: 1 }).state;
      const remote = edit('server', 1, emptyRecord(r), { a: 2 }).state;
      const out = mergePulledRecords([{ ...r, state: remote }], () => local, () => false, cfg);
      expect(out).toMatchObject({ changed: 1, conflictsDetected: 1, conflictsResolved: resolved });
      expect(out.merged[0]?.state.view.contested).toEqual(['a']);
    }
  });

  it('a causal update is no conflict; a page applied twice changes nothing the second time', () => {
    const base = edit('server', 1).state;
    const next = edit('server', 2, base).state;
    const out = mergePulledRecords([{ ...ref(), state: next }], () => base, () => false, cfg);
    expect(out).toMatchObject({ changed: 1, conflictsDetected: 0 });
    const again = mergePulledRecords([{ ...ref(), state: next }], () => out.merged[0]?.state, () => false, cfg);
    expect(again).toMatchObject({ changed: 0, conflictsDetected: 0 });
  });

  it('news on a record with a pending local change counts as detected', () => {
    const base = edit('server', 1).state;
    const next = edit('server', 2, base).state;
    expect(mergePulledRecords([{ ...ref(), state: next }], () => base, () => true, cfg).conflictsDetected).toBe(1);
  });
});

describe('verify repairs', () => {
  it('fetches every differing key in the own and server-owned scopes (either side may hold one deleted); elsewhere reports the keys only here', () => {
    const diff = { missingHere: ['b'], missingThere: ['c'], differing: ['a'] };
    expect(planVerifyFetch(diff, true)).toEqual({ fetch: ['a', 'b', 'c'], unrepairable: [], replace: false });
    expect(planVerifyFetch(diff, false, true)).toEqual({ fetch: ['a', 'b', 'c'], unrepairable: [], replace: true });
    expect(planVerifyFetch(diff, false)).toEqual({ fetch: ['a', 'b'], unrepairable: ['c'], replace: false });
  });

  it('after the fetch and join, re-pushes what holds writes the server has not seen or that it lacks; a server delete the join applied is not re-pushed', () => {
    const server = edit('server', 1).state;
    const mine = edit('agent-1', 1, server, { a: 5 }).state;
    const none = (): undefined => undefined;
    expect(settleAfterFetch(['k'], () => mine, () => server, cfg)).toEqual({ repush: ['k'], unrepaired: [] });
    expect(settleAfterFetch(['k'], () => mine, none, cfg)).toEqual({ repush: ['k'], unrepaired: [] });
    expect(settleAfterFetch(['k'], () => server, () => server, cfg)).toEqual({ repush: [], unrepaired: [] });
    // A state decoded from the wire carries no view: it is computed before comparing.
    const fromWire: RecordState = { ...server, view: { ...server.view, status: 'absent', fields: {} } };
    expect(settleAfterFetch(['k'], () => server, () => fromWire, cfg)).toEqual({ repush: [], unrepaired: [] });
    // The server deleted the record after everything this side wrote: the join (before this decision)
    // applied the delete; no restatement. (That the key is fetched and joined first is planVerifyFetch's part.)
    const deleted = makeLocalChange(mine, { op: 'delete' }, { origin: 'server', originSeq: 2, changeId: 'server-2', hlc: encodeHlc({ wallMs: 1_700_000_000_010, counter: 0, node: 'server' }), protocol: 1 }, cfg).state;
    expect(deleted.view.status).toBe('deleted');
    expect(settleAfterFetch(['k'], () => deleted, () => deleted, cfg)).toEqual({ repush: [], unrepaired: [] });
    expect(recordHash(mine)).not.toBe(recordHash(server));
  });

  it('reports a key the join left different (a value corrupted under its own stamp), and a conflicted one instead of restating it', () => {
    const server = edit('server', 1).state;
    const corrupt = { ...server, view: { ...server.view, fields: { a: 'corrupt' } } };
    expect(settleAfterFetch(['k'], () => corrupt, () => server, cfg)).toEqual({ repush: [], unrepaired: ['k'] });
    const mine = edit('agent-1', 1, server, { a: 5 }).state;
    const conflicted = { ...mine, view: { ...mine.view, conflicted: true } };
    expect(settleAfterFetch(['k'], () => conflicted, () => server, cfg)).toEqual({ repush: [], unrepaired: ['k'] });
  });
});
