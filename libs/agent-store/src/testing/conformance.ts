/**
 * The LocalStore conformance suite, written once and registered for every implementation
 * (`describeLocalStoreConformance('sqlite', factory)` in the adapter's spec). It checks the port's
 * contract only: nothing here knows about SQLite.
 */
import { isFleetError } from '@fleet/errors';
import { applyChanges, emptyRecord, encodeRecordState, makeLocalChange, recordHash, visibleFields } from '@fleet/sync-core';
import type { Change, Fields, RecordRef, RecordState, StrategyConfig } from '@fleet/sync-core';
import { decodeChange, MAX_RECORD_STATE_BYTES } from '@fleet/contracts';
import type { LocalStore, StoreEvent } from '../local-store';

export interface ConformanceOptions {
  readonly agentId: string;
  readonly now: () => number;
  readonly outboxMax?: number;
  readonly coalesceAbove?: number;
}

export interface StoreHarness {
  readonly store: LocalStore;
  /** Closes the store and opens it again on the same data (a restart). */
  reopen(overrides?: Partial<ConformanceOptions>): LocalStore;
  cleanup(): void;
}

export type StoreFactory = (options: ConformanceOptions) => StoreHarness;

const AGENT = 'agent-1';
const HOST = `host.${AGENT}`;
const LWW: StrategyConfig = { default: 'lww' };

function ref(key: string, collection = 'settings', scope = HOST): RecordRef {
  return { scope, collection, key };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isFleetError(e) ? e.code : `not a FleetError: ${String(e)}`;
  }
  return undefined;
}

/** A replica elsewhere (the server) making its own changes to records, with sync-core. */
class Remote {
  private seq = 0;
  private wall: number;
  readonly states = new Map<string, RecordState>();
  constructor(
    private readonly origin: string,
    wallMs = 1_700_000_060_000,
  ) {
    this.wall = wallMs;
  }
  write(r: RecordRef, fields: Fields, base?: RecordState): Change {
    const k = `${r.scope}/${r.collection}/${r.key}`;
    const state = base ?? this.states.get(k) ?? emptyRecord(r);
    this.seq += 1;
    this.wall += 1;
    const hlc = `${String(this.wall).padStart(15, '0')}-000000-${this.origin}`;
    const made = makeLocalChange(state, { op: 'put', fields }, { origin: this.origin, originSeq: this.seq, changeId: `0190a000-0000-7000-8000-${String(this.seq).padStart(12, '0')}`, hlc, protocol: 1 }, LWW);
    this.states.set(k, made.state);
    return made.change;
  }
}

export function describeLocalStoreConformance(name: string, factory: StoreFactory): void {
  describe(`LocalStore conformance: ${name}`, () => {
    let clock = 1_700_000_000_000;
    const now = () => clock;
    let h: StoreHarness;
    let store: LocalStore;
    const open = (o: Partial<ConformanceOptions> = {}) => {
      h = factory({ agentId: AGENT, now, ...o });
      store = h.store;
    };
    beforeEach(() => {
      clock = 1_700_000_000_000;
    });
    afterEach(() => h?.cleanup());

    it('writes, reads, patches, deletes and queries records', () => {
      open();
      const first = store.syncState().ownFrom;
      const c1 = store.put(ref('a'), { x: 1, y: 'two' });
      expect(c1).toMatchObject({ origin: AGENT, originSeq: first, op: 'put', fields: { x: 1, y: 'two' }, scope: HOST, collection: 'settings', key: 'a' });
      // the agent's vector entry is the origin sequence of its write (sync-core makeLocalChange)
      expect(store.get(ref('a'))).toMatchObject({ status: 'live', fields: { x: 1, y: 'two' }, conflicted: false, vv: { [AGENT]: first } });
      // put replaces: y is unset, x unchanged is not re-sent.
      const c2 = store.put(ref('a'), { x: 1, z: true });
      expect(c2).toMatchObject({ fields: { z: true }, unset: ['y'] });
      expect(store.get(ref('a'))?.fields).toEqual({ x: 1, z: true });
      expect(store.put(ref('a'), { x: 1, z: true })).toBeNull();
      const c3 = store.patch(ref('a'), { x: 2 }, ['z']);
      expect(c3).toMatchObject({ fields: { x: 2 }, unset: ['z'] });
      expect(store.patch(ref('a'), { x: 2 })).toBeNull();
      store.put(ref('b/1'), { v: 1 });
      store.put(ref('b/2'), { v: 2 });
      store.put(ref('c'), { v: 3 });
      expect(store.delete(ref('c'))).toMatchObject({ op: 'delete', fields: {} });
      expect(store.delete(ref('c'))).toBeNull();
      expect(store.get(ref('c'))).toMatchObject({ status: 'deleted', fields: null });
      expect(store.get(ref('nope'))).toBeNull();
      expect(store.query(HOST, 'settings').map((r) => r.ref.key)).toEqual(['a', 'b/1', 'b/2']);
      expect(store.query(HOST, 'settings', { prefix: 'b/' }).map((r) => r.ref.key)).toEqual(['b/1', 'b/2']);
      expect(store.query(HOST, 'settings', { after: 'a', limit: 1 }).map((r) => r.ref.key)).toEqual(['b/1']);
      expect(store.get(ref('a'))?.hash).toBe(recordHash(store.getState(ref('a')) as RecordState));
    });

    it('refuses invalid writes and writes to server-owned scopes, queueing nothing', () => {
      open();
      expect(code(() => store.put(ref('k', 'settings', 'fleet'), { a: 1 }))).toBe('FLEET_AUTH_003');
      expect(code(() => store.put(ref('k', 'settings', 'host.other'), { a: 1 }))).toBe('FLEET_AUTH_003');
      expect(code(() => store.put(ref('k', 'bad collection!'), { a: 1 }))).toBe('FLEET_AGENT_005');
      expect(code(() => store.put(ref(''), { a: 1 }))).toBe('FLEET_AGENT_005');
      expect(code(() => store.put(ref('k'), { a: Number.NaN }))).toBe('FLEET_AGENT_005');
      expect(code(() => store.put(ref('k'), { a: 'nul\u0000' }))).toBe('FLEET_AGENT_005');
      expect(code(() => store.patch(ref('k'), { a: 1 }, ['a']))).toBe('FLEET_AGENT_005');
      expect(store.outboxStats().size).toBe(0);
      expect(store.outboxSize()).toBe(0); // the counter agrees with the scan
      expect(store.get(ref('k'))).toBeNull();
    });

    it('commits a record and its outbox row together or not at all (crash inside a transaction)', () => {
      open();
      store.put(ref('before'), { n: 0 });
      expect(() =>
        store.transaction(() => {
          store.put(ref('a'), { n: 1 });
          store.put(ref('b'), { n: 2 });
          throw new Error('crash');
        }),
      ).toThrow('crash');
      expect(store.get(ref('a'))).toBeNull();
      expect(store.get(ref('b'))).toBeNull();
      expect(store.outboxStats().size).toBe(1);
      expect(store.outboxSize()).toBe(1); // the counter agrees with the scan
      // A failing write inside a transaction whose caller swallows the error still leaves the rest consistent.
      store.transaction(() => {
        store.put(ref('c'), { n: 3 });
        expect(code(() => store.put(ref('x', 'settings', 'fleet'), { n: 4 }))).toBe('FLEET_AUTH_003');
      });
      expect(store.peekOutbox(10).map((c) => c.key)).toEqual(['before', 'c']);
      expect(() => store.transaction(() => Promise.resolve(1))).toThrow(/synchronous/);
    });

    it('keeps outbox order and a monotonic HLC across a restart, even when the wall clock steps back', () => {
      open();
      const made: Change[] = [];
      store.transaction(() => {
        for (let i = 0; i < 5; i++) made.push(store.put(ref(`k${i}`), { i }) as Change);
      });
      const hlcBefore = store.clock();
      store = h.reopen();
      clock -= 3_600_000; // NTP step back an hour
      const after = store.put(ref('later'), { i: 99 }) as Change;
      expect(after.originSeq).toBe((made[4] as Change).originSeq + 1);
      expect(after.hlc > hlcBefore).toBe(true);
      expect(store.peekOutbox(100).map((c) => c.changeId)).toEqual([...made.map((c) => c.changeId), after.changeId]);
      const seqs = store.peekOutbox(100).map((c) => c.originSeq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    });

    it('hands the outbox out in order, removes rows only on markSent, and reports failures', () => {
      open();
      store.put(ref('a'), { n: 1 });
      clock += 1000;
      store.put(ref('b'), { n: 2 });
      store.put(ref('c'), { n: 3 });
      clock += 500;
      const first = store.peekOutbox(2);
      expect(first.map((c) => c.key)).toEqual(['a', 'b']);
      store.recordFailure(first.map((c) => c.changeId), 'nats: timeout');
      let s = store.outboxStats();
      expect(s).toMatchObject({ size: 3, oldestAt: 1_700_000_000_000, oldestAgeMs: 1500, failures: 2, consecutiveFailures: 1, lastError: 'nats: timeout', inFlight: 2 });
      expect(store.peekOutbox(2).map((c) => c.changeId)).toEqual(first.map((c) => c.changeId));
      expect(store.markSent(first.map((c) => c.changeId))).toBe(2);
      expect(store.markSent(first.map((c) => c.changeId))).toBe(0);
      s = store.outboxStats();
      expect(s).toMatchObject({ size: 1, oldestAt: 1_700_000_001_000, consecutiveFailures: 0 });
      expect(store.peekOutbox(10).map((c) => c.key)).toEqual(['c']);
    });

    it('coalesces unsent changes so that applying the queue anywhere gives the local state', () => {
      open({ coalesceAbove: 0, outboxMax: 1000 });
      const r = ref('busy');
      store.put(r, { a: 1, b: 1 });
      store.patch(r, { b: 2, c: 3 });
      store.patch(r, {}, ['a']);
      store.delete(r);
      store.put(r, { d: 4 });
      store.patch(r, { d: 5, e: 6 });
      store.put(ref('other'), { z: 1 });
      const queued = store.peekOutbox(100);
      expect(queued.filter((c) => c.key === 'busy').map((c) => c.op)).toEqual(['delete', 'put']);
      expect(queued.map((c) => c.originSeq)).toEqual([...queued.map((c) => c.originSeq)].sort((x, y) => x - y));
      // A replica that receives only the queue holds exactly what the agent holds.
      const replica = applyChanges(queued.filter((c) => c.key === 'busy'), LWW);
      const local = store.getState(r) as RecordState;
      expect(visibleFields(replica)).toEqual({ d: 5, e: 6 });
      expect(encodeRecordState(replica)).toBe(encodeRecordState(local));
      // Rows handed out are frozen: later writes queue behind them, not into them.
      store.patch(r, { e: 7 });
      const afterPeek = store.peekOutbox(100).filter((c) => c.key === 'busy');
      expect(afterPeek).toHaveLength(3);
      expect(afterPeek.slice(0, 2)).toEqual(queued.filter((c) => c.key === 'busy'));
    });

    it('never coalesces writes into a change the change log would refuse (more fields, or more bytes, than one change may carry)', () => {
      open({ coalesceAbove: 0, outboxMax: 1000 });
      const r = ref('wide');
      // Each write alone is valid; their union holds 300 fields (the cap is 256) and 5 x 60 KiB (the cap is 256 KiB).
      store.put(r, Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`a${i}`, i])));
      store.patch(r, Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`b${i}`, i])));
      const big = ref('big');
      for (let i = 0; i < 5; i++) store.patch(big, { [`blob${i}`]: 'x'.repeat(60 * 1024) });
      const queued = store.peekOutbox(100);
      for (const c of queued) expect(decodeChange(JSON.parse(JSON.stringify(c)))).toEqual(c); // each one a change the log accepts
      expect(queued.filter((c) => c.key === 'wide')).toHaveLength(2);
      expect(queued.filter((c) => c.key === 'big').length).toBeGreaterThan(1);
      // and together they still give the local state
      for (const key of ['wide', 'big']) {
        const replica = applyChanges(queued.filter((c) => c.key === key), LWW);
        expect(encodeRecordState(replica)).toBe(encodeRecordState(store.getState(ref(key)) as RecordState));
      }
    });

    it('refuses (FLEET_AGENT_005) a write that would grow a record past MAX_RECORD_STATE_BYTES, writing nothing; the record stays writable', () => {
      open();
      const big = (i: number) => `${String(i)}${'x'.repeat(60 * 1024)}`; // under the 64 KiB cap of one value
      const r = ref('inventory', 'packages');
      let fields: Record<string, string> = {};
      let n = 0;
      // Field by field (each change well under its own caps) until the next one would pass the record cap.
      while ((n + 1) * 60 * 1024 < MAX_RECORD_STATE_BYTES - 8 * 1024) {
        fields = { ...fields, [`f${n}`]: big(n) };
        store.patch(r, { [`f${n}`]: big(n) });
        n++;
      }
      const outbox = store.outboxSize();
      const before = encodeRecordState(store.getState(r) as RecordState);
      const events: StoreEvent[] = [];
      const stop = store.watch((e) => events.push(e));
      expect(code(() => store.patch(r, { extra: big(99), more: big(98) }))).toBe('FLEET_AGENT_005');
      // Inside a caller's transaction: refused alone, the rest of the transaction commits.
      store.transaction(() => {
        expect(code(() => store.patch(r, { extra: big(99), more: big(98) }))).toBe('FLEET_AGENT_005');
        store.put(ref('other', 'packages'), { ok: true });
      });
      stop();
      expect(encodeRecordState(store.getState(r) as RecordState)).toBe(before);
      expect(store.get(r)?.fields).toEqual(fields);
      expect(store.outboxSize()).toBe(outbox + 1);
      expect(events.map((e) => e.ref.key)).toEqual(['other']);
      // Shrinking and then growing within the cap is fine.
      expect(store.patch(r, {}, ['f0', 'f1'])).not.toBeNull();
      expect(store.patch(r, { extra: big(99) })).not.toBeNull();
      // A record already past the cap (here an operator's fields of this host's record, pulled) may still
      // shrink or keep its size; it may not grow.
      const server = new Remote('server');
      const over = ref('pulled', 'packages');
      const serverFields = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`s${i}`, big(i)]));
      store.applyRemote([server.write(over, serverFields)], 5);
      expect(store.patch(over, { s0: 'short' })).not.toBeNull(); // smaller
      expect(code(() => store.patch(over, { note: big(7) }))).toBe('FLEET_AGENT_005'); // larger
      expect(store.patch(over, {}, ['s1'])).not.toBeNull();
      expect(store.get(over)?.fields?.['s0']).toBe('short');
    });

    it('bounds the outbox: coalesces past the soft limit, refuses new records past the max, loses nothing', () => {
      open({ coalesceAbove: 2, outboxMax: 3 });
      store.put(ref('a'), { n: 1 });
      store.put(ref('a'), { n: 2 }); // the queue stays within the soft limit: kept as made
      expect(store.outboxStats().size).toBe(2);
      expect(store.outboxSize()).toBe(2); // the counter agrees with the scan
      store.put(ref('b'), { n: 1 }); // would pass the soft limit: a full pass merges a's run first
      expect(store.outboxStats().size).toBe(2);
      expect(store.outboxSize()).toBe(2); // the counter agrees with the scan
      store.put(ref('a'), { n: 3 }); // past the soft limit: merged into a's row as it is written
      expect(store.outboxStats().size).toBe(2);
      expect(store.outboxSize()).toBe(2); // the counter agrees with the scan
      store.put(ref('c'), { n: 1 });
      expect(store.outboxStats().size).toBe(3);
      expect(store.outboxSize()).toBe(3); // the counter agrees with the scan
      expect(code(() => store.put(ref('d'), { n: 1 }))).toBe('FLEET_AGENT_003');
      expect(store.get(ref('d'))).toBeNull();
      // A write to a record already queued coalesces into its row: accepted at the bound.
      expect(store.put(ref('b'), { n: 2 })).not.toBeNull();
      expect(store.outboxStats().size).toBe(3);
      expect(store.outboxSize()).toBe(3); // the counter agrees with the scan
      const queued = store.peekOutbox(10);
      expect(queued.map((c) => [c.key, c.fields])).toEqual([
        ['a', { n: 3 }],
        ['c', { n: 1 }],
        ['b', { n: 2 }],
      ]);
      // Frozen rows cannot merge: the bound holds and says so.
      expect(code(() => store.put(ref('b'), { n: 3 }))).toBe('FLEET_AGENT_003');
      store.markSent(queued.map((c) => c.changeId));
      expect(store.put(ref('d'), { n: 1 })).not.toBeNull();
    });

    it('applies remote changes and moves the cursor in the same transaction', () => {
      open();
      const server = new Remote('server');
      const fleet = ref('policy', 'settings', 'fleet');
      const ok = server.write(fleet, { level: 'strict' });
      const events: StoreEvent[] = [];
      const stop = store.watch((e) => events.push(e));
      const r = store.applyRemote([ok], 17);
      expect(r).toMatchObject({ applied: 1, changed: 1, conflicts: 0 });
      expect(store.get(fleet)?.fields).toEqual({ level: 'strict' });
      expect(store.syncState()).toMatchObject({ cursor: 17, lastPullAt: clock });
      expect(events.map((e) => e.source)).toEqual(['remote']);
      // Re-delivery is harmless.
      expect(store.applyRemote([ok], 17).changed).toBe(0);
      // A batch that fails part-way applies nothing and leaves the cursor.
      const next = server.write(fleet, { level: 'lax' });
      const broken = { ...server.write(ref('x', 'settings', 'fleet'), { a: 1 }), vv: {} };
      expect(code(() => store.applyRemote([next, broken], 'c-99'))).toBe('FLEET_CHANGE_001');
      expect(store.get(fleet)?.fields).toEqual({ level: 'strict' });
      expect(store.syncState().cursor).toBe(17);
      stop();
      store.applyRemote([next], 'c-20');
      expect(events).toHaveLength(1);
      expect(store.syncState().cursor).toBe('c-20');
      // The HLC moved past what was received: the next local write orders after it.
      expect((store.put(ref('mine'), { a: 1 }) as Change).hlc.slice(0, 22) > next.hlc.slice(0, 22)).toBe(true);
      // A remote clock far ahead is applied but not followed past the drift bound, and counted.
      const far = new Remote('server', clock + 86_400_000).write(ref('far', 'settings', 'fleet'), { a: 1 });
      expect(store.applyRemote([far], 'c-21')).toMatchObject({ changed: 1, drifted: 1 });
      expect(store.clock() < far.hlc).toBe(true);
    });

    it('keeps pending local changes queued while remote changes merge into the same record', () => {
      open();
      const r = ref('shared');
      const mine = store.put(r, { a: 'local', b: 'local' }) as Change;
      // The server concurrently writes b (it never saw ours); its clock is later, so LWW takes its b.
      const server = new Remote('server');
      const theirs = server.write(r, { b: 'server', c: 'server' });
      const res = store.applyRemote([theirs], 1);
      expect(res.changed).toBe(1);
      expect(store.get(r)?.fields).toEqual({ a: 'local', b: 'server', c: 'server' });
      expect(store.get(r)?.vv).toEqual({ [AGENT]: mine.originSeq, server: 1 });
      expect(store.peekOutbox(10).map((c) => c.changeId)).toEqual([mine.changeId]);
      // The server, receiving our pending change, converges to the same state.
      const serverState = applyChanges([mine], LWW, server.states.get(`${r.scope}/${r.collection}/${r.key}`));
      expect(recordHash(serverState)).toBe(store.get(r)?.hash);
    });

    it('merges delta states (anti-entropy repair)', () => {
      open();
      const server = new Remote('server');
      const fleet = ref('cfg', 'settings', 'fleet');
      server.write(fleet, { a: 1 });
      server.write(fleet, { b: 2 });
      const state = server.states.get('fleet/settings/cfg') as RecordState;
      store.applyRemote([{ ref: fleet, state: encodeRecordState(state) }], null);
      expect(store.get(fleet)?.fields).toEqual({ a: 1, b: 2 });
      expect(store.get(fleet)?.hash).toBe(recordHash(state));
      expect(code(() => store.applyRemote([{ ref: ref('other', 'settings', 'fleet'), state }], null))).toBe('FLEET_STATE_001');
    });

    it('notifies watchers after commit only, and stops after unsubscribe', () => {
      open();
      const seen: string[] = [];
      const stop = store.watch((e) => seen.push(`${e.source}:${e.ref.key}:${e.record.status}`));
      store.put(ref('a'), { n: 1 });
      expect(() =>
        store.transaction(() => {
          store.put(ref('b'), { n: 1 });
          throw new Error('abort');
        }),
      ).toThrow('abort');
      store.delete(ref('a'));
      stop();
      store.put(ref('c'), { n: 1 });
      expect(seen).toEqual(['local:a:live', 'local:a:deleted']);
    });

    it('lists Merkle entries (key, visible hash) of a collection, deleted records included', () => {
      open();
      store.put(ref('b'), { n: 2 });
      store.put(ref('a'), { n: 1 });
      store.put(ref('c'), { n: 3 });
      store.delete(ref('c'));
      store.put(ref('z', 'other'), { n: 9 });
      const entries = [...store.merkleEntries(HOST, 'settings')];
      expect(entries.map((e) => e.key)).toEqual(['a', 'b', 'c']);
      expect(entries[0]?.recordHash).toBe(store.get(ref('a'))?.hash);
      expect(entries[2]?.recordHash).toBe(recordHash(emptyRecord(ref('c'))));
    });

    it('lists every (scope, collection) it holds records of, deleted ones included, each once, by scope then collection', () => {
      open();
      expect(store.collections()).toEqual([]);
      store.put(ref('b'), { n: 2 });
      store.put(ref('a'), { n: 1 });
      store.put(ref('z', 'other'), { n: 9 });
      store.put(ref('x', 'gone'), { n: 0 });
      store.delete(ref('x', 'gone'));
      const server = new Remote('server');
      const fleet = ref('cfg', 'settings', 'fleet');
      const group = ref('cfg', 'apps', 'group.web');
      store.applyRemote([server.write(fleet, { a: 1 }), server.write(group, { a: 2 })], 2);
      expect(store.collections()).toEqual([
        { scope: 'fleet', collection: 'settings' },
        { scope: 'group.web', collection: 'apps' },
        { scope: HOST, collection: 'gone' },
        { scope: HOST, collection: 'other' },
        { scope: HOST, collection: 'settings' },
      ]);
    });

    it('requeues for push a change restating a live and a deleted record (what a replica lacking them needs), through the local write path, even while writes are held', () => {
      open();
      const live = ref('live');
      const gone = ref('gone');
      const older = store.put(live, { x: 1, y: 2 }) as Change;
      store.patch(live, {}, ['y']);
      store.put(gone, { x: 1 });
      store.delete(gone);
      // 300 visible fields: more than one change may carry
      const wide = ref('wide');
      store.put(wide, Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`f${i}`, i])));
      store.patch(wide, Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`g${i}`, i])));
      const sent = store.peekOutbox(100);
      store.markSent(sent.map((c) => c.changeId));
      const lastSeq = Math.max(...sent.map((c) => c.originSeq));
      const lastHlc = sent.map((c) => c.hlc).sort().at(-1) as string;
      const server = new Remote('server');
      const fleet = ref('cfg', 'settings', 'fleet');
      store.applyRemote([server.write(fleet, { a: 1 })], 1);
      const before = [live, gone, wide].map((r) => store.get(r));
      // A restored store holds local writes until verified: the verification's re-push is not held.
      store.setSyncState({ needsVerification: true });
      const told: StoreEvent[] = [];
      const stop = store.watch((e) => told.push(e));
      expect(store.requeueForPush([live, gone, fleet, ref('never-held'), wide])).toBe(3);
      stop();
      expect(code(() => store.put(ref('held'), { n: 1 }))).toBe('FLEET_AGENT_004');
      store.setSyncState({ needsVerification: false });
      // the records are as they were (same visible fields and hash), with new writes of this agent's
      expect([live, gone, wide].map((r) => store.get(r)?.hash)).toEqual(before.map((r) => r?.hash));
      expect(store.get(gone)?.status).toBe('deleted');
      const queued = store.peekOutbox(100);
      expect(queued.map((c) => [c.key, c.op])).toEqual([
        ['live', 'put'],
        ['gone', 'delete'],
        ['wide', 'put'],
        ['wide', 'put'],
      ]);
      expect(queued[0]).toMatchObject({ origin: AGENT, fields: { x: 1 }, unset: ['y'] });
      for (const c of queued) {
        expect(c.originSeq).toBeGreaterThan(lastSeq);
        expect(c.hlc > lastHlc).toBe(true);
        expect(c.vv[AGENT]).toBe(c.originSeq);
        expect(decodeChange(JSON.parse(JSON.stringify(c)))).toEqual(c); // each one a change the change log accepts
      }
      expect(told.map((e) => `${e.source}:${e.ref.key}`)).toEqual(['local:live', 'local:gone', 'local:wide', 'local:wide']);
      // A replica that lacks the records gets them from the restatements alone; one holding an older state too.
      for (const r of [live, gone, wide]) {
        const mine = queued.filter((c) => c.key === r.key);
        expect(recordHash(applyChanges(mine, LWW))).toBe(store.get(r)?.hash);
      }
      expect(recordHash(applyChanges([older, ...queued.filter((c) => c.key === 'live')], LWW))).toBe(store.get(live)?.hash);
      expect(visibleFields(applyChanges([older, ...queued.filter((c) => c.key === 'live')], LWW))).toEqual({ x: 1 });
    });

    it('replaces records of server-owned scopes with the server\'s states (no join) and drops what the server lacks, in one transaction, leaving the outbox and cursor alone; refuses the agent\'s own scope', () => {
      open();
      const server = new Remote('server');
      const fleet = (key: string) => ref(key, 'settings', 'fleet');
      const group = ref('cfg', 'apps', 'group.web');
      server.write(fleet('a'), { v: 1 });
      const a1 = server.states.get('fleet/settings/a') as RecordState;
      const a2Change = server.write(fleet('a'), { v: 2 });
      const ghost = server.write(fleet('ghost'), { v: 666 });
      const b = server.write(fleet('b'), { v: 3 });
      const deleted = makeLocalChange(server.states.get('fleet/settings/b') as RecordState, { op: 'delete' }, { origin: 'server', originSeq: 99, changeId: '0190a000-0000-7000-8000-000000000099', hlc: '001700000070000-000000-server', protocol: 1 }, LWW);
      const g = server.write(group, { n: 1 });
      store.applyRemote([a2Change, ghost, b, g], 7);
      store.put(ref('mine'), { n: 1 }); // a pending local write of the host scope
      const outbox = store.peekOutbox(10);
      expect(store.get(fleet('a'))?.fields).toEqual({ v: 2 });
      const told: StoreEvent[] = [];
      const stop = store.watch((e) => told.push(e));

      // Refused whole (nothing replaced, nothing dropped) when a ref is of the agent's own scope, or any non-server-owned one.
      expect(code(() => store.replaceFromServer([{ ref: fleet('a'), state: a1 }], [ref('mine')]))).toBe('FLEET_AUTH_003');
      expect(code(() => store.replaceFromServer([{ ref: ref('mine'), state: a1 }]))).toBe('FLEET_AUTH_003');
      expect(code(() => store.replaceFromServer([], [ref('x', 'settings', 'host.agent-2')]))).toBe('FLEET_AUTH_003');
      expect(code(() => store.replaceFromServer([{ ref: fleet('b'), state: a1 }]))).toBe('FLEET_STATE_001');
      expect(store.get(fleet('a'))?.fields).toEqual({ v: 2 });
      expect(store.get(ref('mine'))?.fields).toEqual({ n: 1 });
      expect(told).toEqual([]);

      // The server's (older) state replaces the newer one held here: a join would have kept { v: 2 }.
      // A tombstone replaces a live record; a group record the server lacks is dropped, a ref not held counts for nothing.
      const r = store.replaceFromServer(
        [
          { ref: fleet('a'), state: a1 },
          { ref: fleet('b'), state: encodeRecordState(deleted.state) },
        ],
        [fleet('ghost'), group, fleet('never-held')],
      );
      stop();
      expect(r).toEqual({ replaced: 2, dropped: 2 });
      expect(encodeRecordState(store.getState(fleet('a')) as RecordState)).toBe(encodeRecordState(a1));
      expect(store.get(fleet('a'))).toMatchObject({ status: 'live', fields: { v: 1 }, hash: recordHash(a1), conflicted: false, vv: a1.vv });
      expect(store.get(fleet('b'))).toMatchObject({ status: 'deleted', fields: null, hash: recordHash(deleted.state) });
      for (const gone of [fleet('ghost'), group]) {
        expect(store.get(gone)).toBeNull();
        expect(store.getState(gone)).toBeNull();
      }
      expect([...store.merkleEntries('fleet', 'settings')]).toEqual([
        { key: 'a', recordHash: recordHash(a1) },
        { key: 'b', recordHash: recordHash(deleted.state) },
      ]);
      expect([...store.merkleEntries('group.web', 'apps')]).toEqual([]);
      expect(store.collections()).toEqual([
        { scope: 'fleet', collection: 'settings' },
        { scope: HOST, collection: 'settings' },
      ]);
      expect(told.map((e) => `${e.source}:${e.ref.scope}/${e.ref.key}:${e.record.status}`)).toEqual(['remote:fleet/a:live', 'remote:fleet/b:deleted', 'remote:fleet/ghost:absent', 'remote:group.web/cfg:absent']);
      // Not a position in the log, and nothing queued: the host's pending write is still there, alone.
      expect(store.syncState().cursor).toBe(7);
      expect(store.peekOutbox(10)).toEqual(outbox);
      expect(store.get(ref('mine'))?.fields).toEqual({ n: 1 });
      // Again: nothing left to replace or drop.
      expect(store.replaceFromServer([{ ref: fleet('a'), state: a1 }], [fleet('ghost')])).toEqual({ replaced: 0, dropped: 0 });
      // After a restart, as left.
      store = h.reopen();
      expect(store.get(fleet('a'))?.fields).toEqual({ v: 1 });
      expect(store.get(fleet('ghost'))).toBeNull();
    });

    it('keeps sync state', () => {
      open();
      // a new store numbers its changes from a floor read off its clock (microseconds): an earlier store
      // of the same agent id (a reinstalled host) used sequences below it, and pulls must bring those
      const ownFrom = clock * 1000 + 1;
      expect(store.syncState()).toEqual({ lastSyncAt: null, lastPullAt: null, cursor: null, needsVerification: false, ownFrom, originSettled: false });
      store.setSyncState({ lastSyncAt: 5, cursor: 'abc' });
      clock += 60_000;
      store = h.reopen(); // reopening keeps the numbering (the floor is taken once, at creation)
      expect(store.syncState()).toEqual({ lastSyncAt: 5, lastPullAt: null, cursor: 'abc', needsVerification: false, ownFrom, originSettled: false });
      store.setSyncState({ needsVerification: true });
      expect(code(() => store.put(ref('a'), { n: 1 }))).toBe('FLEET_AGENT_004');
      store.setSyncState({ needsVerification: false });
      // the log holds nothing of this agent id: nothing moves (nothing to tell watchers), and the store is settled for good
      const told: StoreEvent[] = [];
      const stop = store.watch((e) => told.push(e));
      expect(store.settleOrigin(null)).toEqual({ shift: 0, renumbered: 0, ownFrom });
      stop();
      expect(told).toEqual([]);
      expect(store.syncState().originSettled).toBe(true);
      expect(store.settleOrigin(ownFrom + 10)).toEqual({ shift: 0, renumbered: 0, ownFrom });
      expect(store.put(ref('a'), { n: 1 })?.originSeq).toBe(ownFrom);
    });

    it('settles its origin before its first sync: queued changes renumbered above what the log holds of its agent id, records folded again', () => {
      open();
      const { ownFrom } = store.syncState();
      expect(store.syncState().originSettled).toBe(false);
      store.put(ref('a'), { n: 1, tag: 'x' });
      store.put(ref('b'), { n: 2 });
      store.patch(ref('a'), { n: 3 }, ['tag']);
      store.delete(ref('b'));
      const before = store.query(HOST, 'settings').map((r) => [r.ref.key, r.status, r.fields]);
      store = h.reopen(); // still unsettled after a restart
      expect(store.syncState().originSettled).toBe(false);
      // an earlier store of this agent id (a host reinstalled with its clock behind) logged numbers above ours
      const lastLogged = ownFrom + 1_000;
      const made = store.peekOutbox(10).map((c) => c.changeId);
      const events: StoreEvent[] = [];
      const stop = store.watch((e) => events.push(e));
      const r = store.settleOrigin(lastLogged);
      stop();
      expect(r.renumbered).toBe(4);
      // Watchers are told: each record's vector moved with its changes (the fields did not), one event
      // per renumbered change, in order, with the change as renumbered and the record as stored now.
      expect(events.map((e) => [e.source, e.ref.key, e.change?.changeId, e.change?.originSeq])).toEqual(
        [['a', 0], ['b', 1], ['a', 2], ['b', 3]].map(([key, i], j) => ['renumbered', key, made[j], ownFrom + r.shift + (i as number)]),
      );
      for (const e of events) expect(e.record).toEqual(store.get(e.ref));
      expect(events.map((e) => e.record.vv[AGENT])).toEqual([ownFrom + r.shift + 2, ownFrom + r.shift + 3, ownFrom + r.shift + 2, ownFrom + r.shift + 3]);
      expect(r.ownFrom).toBeGreaterThan(lastLogged);
      expect(store.syncState()).toMatchObject({ ownFrom: r.ownFrom, originSettled: true });
      const queued = store.peekOutbox(10);
      expect(queued.map((c) => c.originSeq)).toEqual([0, 1, 2, 3].map((i) => ownFrom + r.shift + i));
      for (const c of queued) expect(c.vv[AGENT]).toBe(c.originSeq); // an agent's counter is its origin sequence
      // each change's hash is its record's after it, and the record is the fold of its changes
      for (const key of ['a', 'b']) {
        const mine = queued.filter((c) => c.key === key);
        mine.forEach((c, i) => expect(c.hash).toBe(recordHash(applyChanges(mine.slice(0, i + 1), LWW))));
        expect(store.get(ref(key))?.hash).toBe(recordHash(applyChanges(mine, LWW)));
        expect(store.get(ref(key))?.vv).toEqual({ [AGENT]: mine[mine.length - 1]?.originSeq });
      }
      expect(store.query(HOST, 'settings').map((x) => [x.ref.key, x.status, x.fields])).toEqual(before);
      expect(store.put(ref('c'), { n: 4 })?.originSeq).toBe(ownFrom + r.shift + 4);
      store = h.reopen();
      expect(store.syncState()).toMatchObject({ ownFrom: r.ownFrom, originSettled: true });
      expect(store.settleOrigin(r.ownFrom + 10)).toEqual({ shift: 0, renumbered: 0, ownFrom: r.ownFrom }); // once only
    });
  });
}
