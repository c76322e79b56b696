/**
 * The sync manager against a REAL nats-server with JetStream (a private one on a spare port, so the
 * test can take the link away), with the server side played by small responders in this file (the
 * delta calculator's pull/merkle/pullkeys wire from @fleet/contracts; the push stream as the
 * change-log service provisions it). What the server does with a batch is the change log's business
 * and tested there.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectNats, NatsPublisher, provisionStream } from '@fleet/messaging';
import { eventually, PrivateNatsServer, readStream, testNamespace } from '@fleet/messaging/src/test-support';
import { decodeMerkleRequest, decodePullKeysRequest, decodePullRequest, decodePushBatch, encodeJson, errorReply, Headers, toWireRecord } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import type { PullRequest, Subjects } from '@fleet/contracts';
import { SqliteLocalStore } from '@fleet/agent-store';
import { answerVerify, applyChanges, batchIdOf, encodeHlc, makeLocalChange, MerkleTree, recordHash, visibleHash } from '@fleet/sync-core';
import type { Change, MerkleVerifyRequest, RecordState } from '@fleet/sync-core';
import { HEALTH_RETRY_MS, SyncManager } from './sync-manager';
import { NatsSyncTransport } from './transport';
import { MemorySyncStore } from './testing/memory-store';

jest.setTimeout(60_000);

const AGENT = 'agent-1';
const REF = (key: string) => ({ scope: `host.${AGENT}`, collection: 'inventory', key });
const FLEET = (key: string) => ({ scope: 'fleet', collection: 'settings', key });

/** The server side: a log of record deltas (seq-ordered) and the current states, answering the agent's requests. */
class FakeDeltaServer {
  log: { seq: number; state: RecordState }[] = [];
  current = new Map<string, RecordState>();
  pageSize = 2;
  gzip = true;
  pulls = 0;
  /** Every pull request decoded, in arrival order. */
  readonly pullRequests: PullRequest[] = [];
  /** Answer as a server of protocol 1 would: a pull request of protocol 2 is FLEET_DECODE_003. */
  speaksOnlyProtocol1 = false;
  /** Answer every pull with more to come and the cursor it was asked from (a defective server). */
  stuck = false;
  /** Pull answers computed but not sent yet (`holdPulls`): a reply still on its way. */
  holdPulls = false;
  readonly held: (() => void)[] = [];
  private responders: { drain(): Promise<void> }[] = [];
  readonly writer = new MemorySyncStore('server');
  constructor(
    private readonly pub: NatsPublisher,
    private readonly s: Subjects,
  ) {}
  write(ref: { scope: string; collection: string; key: string }, fields: Record<string, string | number>): void {
    this.writer.put(ref, fields);
    const st = this.writer.getState(ref) as RecordState;
    this.log.push({ seq: this.log.length + 1, state: st });
    this.current.set(ref.key, st);
  }
  private reply(body: unknown): { data: Uint8Array; headers: Record<string, string> } {
    const raw = encodeJson(body);
    return this.gzip ? { data: new Uint8Array(gzipSync(raw)), headers: { [Headers.Encoding]: 'gzip' } } : { data: raw, headers: {} };
  }
  start(): void {
    // messaging's responder cannot set reply headers, so answer on the raw connection.
    const nc = this.pub.nc;
    const sub = (subject: string, fn: (data: Uint8Array) => unknown) => {
      const s = nc.subscribe(subject, {
        callback: (_e, m) => {
          const r = this.reply(fn(m.data));
          const hd = headers();
          for (const [k, v] of Object.entries(r.headers)) hd.set(k, v);
          const send = () => m.respond(r.data, { headers: hd });
          if (subject === this.s.pull(AGENT) && this.holdPulls) this.held.push(send);
          else send();
        },
      });
      this.responders.push({ drain: () => s.drain() });
    };
    sub(this.s.pull(AGENT), (data) => {
      this.pulls++;
      if (this.speaksOnlyProtocol1) {
        const p: unknown = (JSON.parse(new TextDecoder().decode(data)) as { protocol?: unknown }).protocol;
        if (p !== 1) return errorReply(new FleetError('FLEET_DECODE_003', `protocol is ${String(p)}, this build speaks 1`));
      }
      const req = decodePullRequest(data);
      this.pullRequests.push(req);
      const from = typeof req.cursor === 'number' ? req.cursor : 0;
      if (this.stuck) return { protocol: 1, records: [], nextCursor: from, hasMore: true };
      const entries = this.log.filter((e) => e.seq > from).slice(0, this.pageSize);
      const last = entries[entries.length - 1];
      return { protocol: 1, records: entries.map((e) => toWireRecord(e.state)), nextCursor: last?.seq ?? from, hasMore: this.log.some((e) => e.seq > (last?.seq ?? from)) };
    });
    sub(this.s.merkle(AGENT), (data) => {
      const req = decodeMerkleRequest(data);
      // Live records only, as delta-calculator's trees (a tombstone is no entry).
      const tree = MerkleTree.build(
        [...this.current.values()].filter((s) => s.ref.scope === req.scope && s.ref.collection === req.collection && s.view.status === 'live').map((s) => ({ key: s.ref.key, recordHash: recordHash(s) })),
      );
      return { protocol: 1, msg: answerVerify(tree, req.msg as MerkleVerifyRequest) };
    });
    // A new store (SqliteLocalStore) asks once which of its origin's numbers the log holds: none.
    sub(this.s.origin(AGENT), () => ({ protocol: 1, agentId: AGENT, lastOriginSeq: null }));
    sub(this.s.pullKeys(AGENT), (data) => {
      const req = decodePullKeysRequest(data);
      const records = req.records.map((r) => this.current.get(r.key)).filter((s): s is RecordState => s !== undefined);
      return { protocol: 1, records: records.map(toWireRecord), answered: req.records.length };
    });
  }
  async stop(): Promise<void> {
    // Stoppable more than once (a test may take the responders away and bring them back).
    for (const r of this.responders.splice(0)) await r.drain().catch(() => undefined);
  }
}

let nats: PrivateNatsServer;
let serverNc: NatsConnection;
let jsm: JetStreamManager;
let s: Subjects;
let server: FakeDeltaServer;
const managers: SyncManager[] = [];

function manager(store: MemorySyncStore | SqliteLocalStore, extra: Partial<ConstructorParameters<typeof SyncManager>[0]> = {}): SyncManager {
  const m = new SyncManager({
    store,
    transport: new NatsSyncTransport({ servers: nats.url, name: AGENT, reconnectTimeWaitMs: 100, timeoutMs: 2000 }, s.ns),
    namespace: s.ns,
    strategy: { default: 'lww' },
    connection: { backoff: { baseMs: 50, maxMs: 200 }, verifyIntervalMs: Number.POSITIVE_INFINITY },
    requestTimeoutMs: 1500,
    publishTimeoutMs: 1500,
    ...extra,
  });
  managers.push(m);
  return m;
}

beforeAll(async () => {
  nats = await PrivateNatsServer.start();
  s = testNamespace('as');
});

beforeEach(async () => {
  serverNc = await connectNats({ servers: nats.url, name: 'server-side', reconnectTimeWaitMs: 100 });
  jsm = await jetstreamManager(serverNc);
  await provisionStream(jsm, { name: s.streams.push, subjects: [s.pushAll], duplicateWindowMs: 120_000 });
  await jsm.streams.purge(s.streams.push);
  server = new FakeDeltaServer(new NatsPublisher(serverNc, s), s);
  server.start();
});

afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  await server.stop();
  await serverNc.close();
});

afterAll(async () => {
  await nats?.stop();
});

describe('SyncManager (real JetStream, private nats-server)', () => {
  it('offline: rows stay in the outbox; after the link returns they are pushed in originSeq order and leave only after the PubAck', async () => {
    await serverNc.close();
    await nats.kill();
    const store = new MemorySyncStore(AGENT);
    const m = manager(store);
    m.start();
    for (let i = 0; i < 5; i++) store.put(REF(`k${i}`), { n: i });
    await new Promise((r) => setTimeout(r, 500));
    expect(store.outbox).toHaveLength(5);
    expect(m.state).toBe('connecting');

    await nats.startProcess();
    serverNc = await connectNats({ servers: nats.url, name: 'server-side', reconnectTimeWaitMs: 100 });
    jsm = await jetstreamManager(serverNc);
    server = new FakeDeltaServer(new NatsPublisher(serverNc, s), s);
    server.start();
    const status = await m.nextSync();
    expect(status).toMatchObject({ changesPushed: 5 });
    expect(store.outbox).toHaveLength(0);
    const msgs = await readStream(jsm, s.streams.push);
    expect(msgs).toHaveLength(1);
    const batch = decodePushBatch(msgs[0]!.data);
    expect((batch.changes as { originSeq: number }[]).map((c) => c.originSeq)).toEqual([1, 2, 3, 4, 5]);
    expect(msgs[0]!.header.get(Headers.MsgId)).toBe(batchIdOf((batch.changes as { changeId: string }[]).map((c) => c.changeId)));
  });

  it('a scope added since the cursor was pulled: the cursor starts over (records of the new scope from before it would never come); same scopes: kept', async () => {
    const store = new MemorySyncStore(AGENT);
    server.write(REF('x'), { n: 1 });
    server.write(REF('y'), { n: 2 });
    const first = manager(store);
    first.start();
    await first.nextSync();
    await first.stop();
    expect(store.syncState()).toMatchObject({ cursor: 2, scopes: [`host.${AGENT}`, 'fleet'] });
    const wider = [`host.${AGENT}`, 'fleet', 'group.ops'];
    const second = manager(store, { scopes: wider });
    const pullsBefore = server.pulls;
    second.start();
    expect(store.syncState().cursor).toBeNull(); // before any pull
    await second.nextSync();
    expect(store.syncState()).toMatchObject({ cursor: 2, scopes: wider });
    expect(server.pulls).toBeGreaterThan(pullsBefore);
    await second.stop();
    const again = manager(store, { scopes: wider });
    again.start();
    expect(store.syncState().cursor).toBe(2); // nothing added: the cursor stays
  });

  it('a reporter that throws (a status file on a full disk) never stops syncing: writes are still pushed and pulls go on', async () => {
    const store = new MemorySyncStore(AGENT);
    let reports = 0;
    const m = manager(store, {
      onReport: () => {
        reports++;
        throw new Error('ENOSPC: no space left on device');
      },
    });
    m.start();
    store.put(REF('a'), { n: 1 });
    await m.nextSync();
    store.put(REF('b'), { n: 2 });
    for (let i = 0; i < 100 && store.outbox.length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(store.outbox).toHaveLength(0);
    expect((await readStream(jsm, s.streams.push)).length).toBeGreaterThanOrEqual(2);
    m.syncNow();
    await m.nextSync(); // still pulling after every report threw
    expect(reports).toBeGreaterThan(3);
  });

  it('a crash between the PubAck and markSent: the restarted agent republishes the same batch id and the stream dedupes it', async () => {
    const store = new MemorySyncStore(AGENT);
    store.failNext.markSent = () => {
      throw new Error('crash after publish');
    };
    const a = manager(store, { connection: { backoff: { baseMs: 60_000, maxMs: 60_000 }, verifyIntervalMs: Number.POSITIVE_INFINITY } });
    for (let i = 0; i < 3; i++) store.put(REF(`c${i}`), { n: i });
    a.start();
    await eventually(() => a.state === 'backoff', 10_000, 'first manager failing after publish');
    await a.stop();
    expect(store.outbox).toHaveLength(3);
    expect(await readStream(jsm, s.streams.push)).toHaveLength(1);

    const b = manager(store);
    b.start();
    await b.nextSync();
    expect(store.outbox).toHaveLength(0);
    const msgs = await readStream(jsm, s.streams.push);
    expect(msgs).toHaveLength(1); // the second publish was a dedupe hit
    const info = await jsm.streams.info(s.streams.push);
    expect(info.state.messages).toBe(1);
  });

  it('pull: pages applied with their cursor, never ahead; a crash between pages re-pulls only the page that failed; gzip undone', async () => {
    for (let i = 0; i < 5; i++) server.write(FLEET(`f${i}`), { v: i });
    const store = new MemorySyncStore(AGENT);
    let cursorAtCrash: unknown;
    let calls = 0;
    const original = store.applyRemote.bind(store);
    store.applyRemote = (items, cursor) => {
      calls++;
      if (calls === 2) {
        cursorAtCrash = store.cursor;
        throw new Error('killed between pages');
      }
      return original(items, cursor);
    };
    const m = manager(store);
    m.start();
    const status = await m.nextSync();
    expect(cursorAtCrash).toBe(2); // page 1 applied, with its cursor; page 2 not, and the cursor did not move
    expect(store.cursor).toBe(5);
    expect(status.changesPulled).toBe(5);
    for (let i = 0; i < 5; i++) expect(store.getState(FLEET(`f${i}`))?.view.fields).toEqual({ v: i });
  });

  it('a nudge triggers a pull', async () => {
    const store = new MemorySyncStore(AGENT);
    const m = manager(store);
    m.start();
    await m.nextSync();
    const before = server.pulls;
    server.write(FLEET('nudged'), { on: 1 });
    serverNc.publish(s.notify(AGENT), new Uint8Array());
    await eventually(() => store.getState(FLEET('nudged'))?.view.fields['on'] === 1, 10_000, 'nudged record');
    expect(server.pulls).toBeGreaterThan(before);
  });

  it('a page with more to come that does not move the cursor is a failure (backoff, reported), not a pull again at once for ever', async () => {
    server.stuck = true;
    const store = new MemorySyncStore(AGENT);
    const reports: { type: string; op?: string; error?: string }[] = [];
    const m = manager(store, { onReport: (r) => reports.push(r as never) });
    m.start();
    await eventually(() => reports.some((r) => r.type === 'failed' && r.op === 'pull'), 10_000, 'a failed pull');
    expect(reports.find((r) => r.type === 'failed' && r.op === 'pull')?.error).toMatch(/more to come and the same cursor/);
  });

  it('conflicts: a pulled write concurrent with a local one is counted and resolved by the strategy (same code as the server)', async () => {
    const store = new MemorySyncStore(AGENT);
    store.put(FLEET('both'), { mode: 'local' }); // agent writes a fleet record offline (pushed rows are the server's business)
    store.outbox = [];
    server.write(FLEET('both'), { mode: 'server' });
    const m = manager(store);
    m.start();
    const status = await m.nextSync();
    expect(status.conflictsDetected).toBe(1);
    expect(status.conflictsResolved).toBe(1);
    expect(store.getState(FLEET('both'))?.view.contested).toEqual(['mode']);
  });

  it('push and pull are independent: with no pull responder, then one answering errors, the outbox still drains; once it answers, pulls succeed', async () => {
    // The delta calculator is down (no responder on the pull subject); the change log's stream is up.
    await server.stop();
    server.write(FLEET('while-down'), { v: 1 });
    const store = new MemorySyncStore(AGENT);
    for (let i = 0; i < 3; i++) store.put(REF(`d${i}`), { n: i });
    const reports: unknown[] = [];
    const m = manager(store, { onReport: (r) => reports.push(r), connection: { backoff: { baseMs: 400, maxMs: 800 }, verifyIntervalMs: Number.POSITIVE_INFINITY } });
    m.start();
    // Push first: the reconnect drains the outbox although every pull fails.
    await eventually(() => store.outbox.length === 0, 10_000, 'outbox drained with no pull responder');
    await eventually(() => m.state === 'backoff', 10_000, 'pull backing off');
    expect(reports).toContainEqual(expect.objectContaining({ type: 'failed', op: 'pull' }));
    expect(reports).not.toContainEqual(expect.objectContaining({ type: 'failed', op: 'push' }));
    expect(store.cursor).toBeNull();
    expect(await readStream(jsm, s.streams.push)).toHaveLength(1);

    // While the pull backs off, a local write is pushed at once (not after the pull's retry).
    store.put(REF('during-backoff'), { n: 1 });
    await eventually(() => store.outbox.length === 0, 10_000, 'a write during the pull backoff pushed');
    expect(await readStream(jsm, s.streams.push)).toHaveLength(2);

    // The delta calculator answers, but with errors (its database is down): still no pull, pushes still go.
    const failing = serverNc.subscribe(s.pull(AGENT), {
      callback: (_e, msg) => {
        msg.respond(encodeJson(errorReply(new FleetError('FLEET_INFRA_001', 'database unavailable'))));
      },
    });
    const remoteErrors = () => reports.filter((r) => (r as { type: string }).type === 'failed' && /FLEET_INFRA_001/.test((r as { error?: string }).error ?? '')).length;
    await eventually(() => remoteErrors() > 0, 10_000, 'a pull failing with the remote error');
    store.put(REF('during-errors'), { n: 2 });
    await eventually(() => store.outbox.length === 0, 10_000, 'a write during pull errors pushed');
    const msgs = await readStream(jsm, s.streams.push);
    expect(msgs).toHaveLength(3);
    const keys = msgs.flatMap((msg) => (decodePushBatch(msg.data).changes as { key: string }[]).map((c) => c.key));
    expect(keys).toEqual(['d0', 'd1', 'd2', 'during-backoff', 'during-errors']);
    expect(store.cursor).toBeNull();

    // The responder comes back: the pull's retry succeeds, the reconnect completes.
    await failing.drain();
    server.start();
    const status = await m.nextSync();
    expect(status.changesPulled).toBe(1);
    expect(store.cursor).toBe(1);
    expect(store.getState(FLEET('while-down'))?.view.fields).toEqual({ v: 1 });
    expect(m.state).toBe('idle');
  });

  it("pulls report the push side: a store whose pushes are refused reports its outbox, the oldest change's wait, the retry queue and failed pushes at protocol 2; 0 again once pushes go", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sync-health-'));
    const store = SqliteLocalStore.open({ dataDir, agentId: AGENT });
    try {
      // No push stream: JetStream has no one to store the agent's push (no responders), every push fails.
      await jsm.streams.delete(s.streams.push);
      const m = manager(store, { pushHealthSampleMs: 0, connection: { backoff: { baseMs: 20, maxMs: 100 }, verifyIntervalMs: Number.POSITIVE_INFINITY } });
      m.start();
      for (let i = 0; i < 3; i++) store.put(REF(`h${i}`), { n: i });
      await eventually(() => store.outboxStats().consecutiveFailures >= 3, 15_000, 'pushes failing');
      // Pulls go on meanwhile, each with the report as the store has it then.
      const lastReport = async () => {
        const n = server.pullRequests.length;
        m.syncNow();
        await eventually(() => server.pullRequests.length > n, 10_000, 'a pull');
        return server.pullRequests.at(-1)!;
      };
      const failing = await lastReport();
      expect(failing.protocol).toBe(2);
      expect(failing.health).toMatchObject({ outbox: 3, retryQueue: 3 });
      expect(failing.health!.failedPushes).toBeGreaterThanOrEqual(3);
      expect(failing.health!.oldestUnsentAgeMs).toBeGreaterThan(0);
      expect(store.outboxSize()).toBe(3);

      // The stream is back: the outbox drains, the next report says nothing waits.
      await provisionStream(jsm, { name: s.streams.push, subjects: [s.pushAll], duplicateWindowMs: 120_000 });
      await eventually(() => store.outboxSize() === 0, 15_000, 'the outbox drained');
      expect((await lastReport()).health).toEqual({ outbox: 0, oldestUnsentAgeMs: 0, retryQueue: 0, failedPushes: 0 });
    } finally {
      for (const mg of managers.splice(0)) await mg.stop();
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a server of protocol 1 refuses a pull with the report (FLEET_DECODE_003): the agent pulls again without it; a store that cannot tell reports nothing', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sync-health-v1-'));
    const store = SqliteLocalStore.open({ dataDir, agentId: AGENT });
    try {
      server.speaksOnlyProtocol1 = true;
      server.write(FLEET('old-server'), { v: 1 });
      const reports: { type: string; op?: string; error?: string }[] = [];
      let clock = Date.now();
      const m = manager(store, { onReport: (r) => reports.push(r as (typeof reports)[number]), now: () => clock });
      m.start();
      await m.nextSync();
      expect(store.get(FLEET('old-server'))?.fields).toEqual({ v: 1 });
      expect(reports).toContainEqual(expect.objectContaining({ type: 'failed', op: 'pull', error: expect.stringContaining('FLEET_DECODE_003') }));
      expect(server.pullRequests.length).toBeGreaterThan(0);
      for (const r of server.pullRequests) expect({ protocol: r.protocol, health: r.health }).toEqual({ protocol: 1, health: undefined });
      // The replica it reached was upgraded meanwhile: after HEALTH_RETRY_MS the report goes again.
      server.speaksOnlyProtocol1 = false;
      const seen = server.pullRequests.length;
      clock += HEALTH_RETRY_MS + 1;
      m.syncNow();
      await m.nextSync();
      expect(server.pullRequests.slice(seen).some((r) => r.protocol === 2 && r.health !== undefined)).toBe(true);
      await m.stop();
    } finally {
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
    // The in-memory store has no outboxStats: its pulls are the protocol 1 ones they always were.
    server.speaksOnlyProtocol1 = false;
    const mem = new MemorySyncStore(AGENT);
    const before = server.pullRequests.length;
    const m2 = manager(mem);
    m2.start();
    await m2.nextSync();
    expect(server.pullRequests.length).toBeGreaterThan(before);
    for (const r of server.pullRequests.slice(before)) expect({ protocol: r.protocol, health: r.health }).toEqual({ protocol: 1, health: undefined });
  });

  it('verification after a restore: Merkle exchange finds what is missing here, fetches it, clears needsVerification', async () => {
    server.write(FLEET('a'), { x: 1 });
    server.write(FLEET('b'), { x: 2 });
    server.log = []; // compacted away: only verification can find them
    const store = new MemorySyncStore(AGENT);
    store.needsVerification = true;
    const reports: unknown[] = [];
    const m = manager(store, { verifyTargets: [{ scope: 'fleet', collection: 'settings' }], onReport: (r) => reports.push(r) });
    m.start();
    await eventually(() => !store.needsVerification, 10_000, 'verification');
    expect(store.getState(FLEET('a'))?.view.fields).toEqual({ x: 1 });
    expect(store.getState(FLEET('b'))?.view.fields).toEqual({ x: 2 });
    expect(m.lastVerify[0]).toMatchObject({ missingHere: 2, fetched: 2, unrepaired: [] });
    expect(reports).toContainEqual({ type: 'verified', violations: 2, repaired: 0 });
  });

  it('verification of a store that lost 12,000 records: the exchanges are cut to bounded messages and resumed from where each stopped, until every record is back', async () => {
    for (let i = 0; i < 12_000; i++) server.write(FLEET(`k${i}`), { i });
    server.log = []; // compacted away: only verification can find them
    const store = new MemorySyncStore(AGENT);
    store.needsVerification = true;
    const m = manager(store, { verifyTargets: [{ scope: 'fleet', collection: 'settings' }], requestTimeoutMs: 10_000 });
    m.start();
    await eventually(() => !store.needsVerification, 50_000, 'verification');
    expect(m.lastVerify[0]).toMatchObject({ missingHere: 12_000, fetched: 12_000, missingThere: 0, differing: 0, unrepaired: [] });
    expect(m.lastVerify[0]!.roundTrips).toBeGreaterThan(3); // one exchange is 3 round trips: it took several
    for (const i of [0, 4_321, 11_999]) expect(store.getState(FLEET(`k${i}`))?.view.fields).toEqual({ i });
  });

  it('verification repairs both ways in the host scope: fetches what is missing here, re-pushes (restated) what the server lacks or holds older, a tombstone included; a manual conflict is reported, not settled', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sync-verify-'));
    const strategy = { default: 'lww' as const, collections: { notes: { strategy: 'manual' as const } } };
    const store = SqliteLocalStore.open({ dataDir, agentId: AGENT, strategies: strategy });
    const NOTE = (key: string) => ({ scope: `host.${AGENT}`, collection: 'notes', key });
    try {
      // The server's log was restored from an older backup: it lost writes this host pushed.
      server.write(REF('srv-has'), { v: 0 }); // only there (an operator's write the host lost)
      store.put(REF('older'), { v: 1 });
      server.current.set('older', store.getState(REF('older')) as RecordState);
      store.patch(REF('older'), { v: 2 }); // lost by the server
      store.put(REF('gone'), { v: 1 });
      server.current.set('gone', store.getState(REF('gone')) as RecordState);
      store.delete(REF('gone')); // lost by the server: it still holds it live
      store.put(REF('mine'), { v: 3 }); // lost by the server
      store.put(NOTE('c'), { t: 'host' });
      server.write(NOTE('c'), { t: 'server' });
      store.applyRemote([{ ref: NOTE('c'), state: server.current.get('c') as RecordState }], null);
      expect(store.get(NOTE('c'))?.conflicted).toBe(true); // the host's side lost by the server too
      store.markSent(store.peekOutbox(100).map((c) => c.changeId));
      server.log = [];
      const m = manager(store, { strategy, verifyTargets: () => [{ scope: `host.${AGENT}`, collection: 'inventory' }, { scope: `host.${AGENT}`, collection: 'notes' }] });
      m.start();
      await m.nextSync();
      m.requestVerification();
      await eventually(() => m.lastVerify.length === 2, 10_000, 'verification');
      expect(m.lastVerify[0]).toMatchObject({ missingHere: 2, missingThere: 1, differing: 1, fetched: 3, repushed: 3, unrepaired: [] });
      expect(m.lastVerify[1]).toMatchObject({ missingHere: 0, missingThere: 0, differing: 1, fetched: 1, repushed: 0, unrepaired: ['c'] });
      expect(store.get(REF('srv-has'))?.fields).toEqual({ v: 0 });
      expect(store.get(NOTE('c'))?.conflicted).toBe(true);
      // The restatements are pushed like any change; applied to what the server holds, they give what the host holds.
      await eventually(() => store.outboxSize() === 0, 10_000, 'the re-push');
      const pushed = (await readStream(jsm, s.streams.push)).flatMap((msg) => decodePushBatch(msg.data).changes as Change[]);
      expect(pushed.map((c) => `${c.key}:${c.op}`).sort()).toEqual(['gone:delete', 'mine:put', 'older:put']);
      for (const c of pushed) {
        const there = server.current.get(c.key);
        const after = there === undefined ? applyChanges([c], strategy) : applyChanges([c], strategy, there);
        expect(recordHash(after)).toBe(store.get(REF(c.key))?.hash);
      }
      await m.stop();
    } finally {
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('verification in the host scope does not undo a newer server delete: the key only here is fetched, its tombstone joined, nothing re-pushed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sync-verify-del-'));
    const store = SqliteLocalStore.open({ dataDir, agentId: AGENT });
    try {
      store.put(REF('del'), { v: 1 });
      store.markSent(store.peekOutbox(100).map((c) => c.changeId));
      // The server holds the host's write, then an operator deleted the record there; the host has not
      // pulled that delete (both trees hold live records only: to the Merkle exchange it is "only here").
      const held = store.getState(REF('del')) as RecordState;
      const tombstone = makeLocalChange(held, { op: 'delete' }, { origin: 'server', originSeq: 1, changeId: 'server-delete-1', hlc: encodeHlc({ wallMs: Date.now() + 1000, counter: 0, node: 'server' }), protocol: 1 }, { default: 'lww' }).state;
      server.current.set('del', tombstone);
      server.log = [];
      const m = manager(store, { verifyTargets: () => [{ scope: `host.${AGENT}`, collection: 'inventory' }] });
      m.start();
      await m.nextSync();
      m.requestVerification();
      await eventually(() => m.lastVerify.length === 1, 10_000, 'verification');
      expect(m.lastVerify[0]).toMatchObject({ missingThere: 1, fetched: 1, repushed: 0, unrepaired: [] });
      expect(store.getState(REF('del'))?.view.status).toBe('deleted');
      expect(store.outboxSize()).toBe(0);
      await m.stop();
    } finally {
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('verification in a server-owned scope: the server\'s states replace the local records (a corruption that kept its stamp included), keys the server lacks are dropped; the cursor and outbox are left alone', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sync-verify-fleet-'));
    const store = SqliteLocalStore.open({ dataDir, agentId: AGENT });
    try {
      for (const [k, v] of [['a', 1], ['b', 2], ['c', 3], ['d', 4]] as const) server.write(FLEET(k), { v });
      const m = manager(store, { verifyTargets: () => [{ scope: 'fleet', collection: 'settings' }] });
      m.start();
      await m.nextSync();
      expect(store.get(FLEET('d'))?.fields).toEqual({ v: 4 });
      const cursor = store.syncState().cursor;
      // Plain SQL behind the store's back: 'a' gets another value under the SAME write stamp (a join keeps
      // it: equal stamps), 'b' is gone, and 'ghost' is a record the server never had.
      const ghostWriter = new MemorySyncStore('server');
      ghostWriter.put(FLEET('ghost'), { v: 666 });
      store.applyRemote([{ ref: FLEET('ghost'), state: ghostWriter.getState(FLEET('ghost')) as RecordState }], cursor);
      const db = new Database(store.path);
      try {
        const row = db.prepare<[], { state: string }>("SELECT state FROM records WHERE scope = 'fleet' AND key = 'a'").get() as { state: string };
        const corrupt = row.state.replace('"v":[[0,1]]', '"v":[[0,99]]');
        expect(corrupt).not.toBe(row.state);
        db.prepare("UPDATE records SET state = ?, fields = ?, hash = ? WHERE scope = 'fleet' AND key = 'a'").run(corrupt, JSON.stringify({ v: 99 }), visibleHash({ v: 99 }));
        db.prepare("DELETE FROM records WHERE scope = 'fleet' AND key = 'b'").run();
      } finally {
        db.close();
      }
      expect(store.get(FLEET('a'))?.fields).toEqual({ v: 99 });
      expect(store.get(FLEET('ghost'))?.fields).toEqual({ v: 666 });

      m.requestVerification();
      await eventually(() => m.lastVerify.length === 1, 10_000, 'verification');
      const first = m.lastVerify;
      // The store now holds exactly the server's states of the scope: no more, no less.
      const serverStates = [...server.current.values()].filter((st) => st.ref.scope === 'fleet');
      for (const st of serverStates) {
        expect(toWireRecord(store.getState(st.ref) as RecordState)).toEqual(toWireRecord(st));
        expect(store.get(st.ref)?.hash).toBe(recordHash(st));
        expect(store.get(st.ref)?.fields).toEqual(st.view.fields);
      }
      expect(store.get(FLEET('ghost'))).toBeNull();
      expect(store.getState(FLEET('ghost'))).toBeNull();
      expect(store.query('fleet', 'settings').map((r) => r.ref.key)).toEqual(serverStates.map((st) => st.ref.key).sort());
      expect([...store.merkleEntries('fleet', 'settings')]).toEqual(serverStates.map((st) => ({ key: st.ref.key, recordHash: recordHash(st) })).sort((x, y) => (x.key < y.key ? -1 : 1)));
      // A repair is not a position in the log, and nothing is queued for push in a scope the agent does not write.
      expect(store.syncState().cursor).toEqual(cursor);
      expect(store.outboxSize()).toBe(0);
      // 'a' and 'b' fetched and replaced, 'ghost' asked for too (the server may hold a tombstone) and dropped.
      expect(first[0]).toMatchObject({ missingHere: 1, missingThere: 1, differing: 1, fetched: 2, replaced: 2, dropped: 1, repushed: 0, unrepaired: [] });

      m.requestVerification();
      await eventually(() => m.lastVerify !== first, 10_000, 'the second verification');
      expect(m.lastVerify[0]).toMatchObject({ missingHere: 0, missingThere: 0, differing: 0, fetched: 0, replaced: 0, dropped: 0, unrepaired: [] });
      await m.stop();
    } finally {
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a link that flaps while a pull is in flight: once its page is in, the reconnect runs at once (push, then pull), not at the next periodic sync', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'sync-flap-'));
    const store = SqliteLocalStore.open({ dataDir, agentId: AGENT });
    try {
      server.write(FLEET('before'), { v: 1 });
      const transport = new NatsSyncTransport({ servers: nats.url, name: AGENT, reconnectTimeWaitMs: 100, timeoutMs: 2000 }, s.ns);
      const link: boolean[] = [];
      transport.onStatus((up) => link.push(up));
      const reports: { type: string; kind?: string; from?: string; to?: string }[] = [];
      // The reply of the pull in flight must outlive the outage: a long request timeout.
      const m = manager(store, { transport, requestTimeoutMs: 30_000, onReport: (r) => reports.push(r as (typeof reports)[number]) });
      m.start();
      await m.nextSync();
      expect(store.get(FLEET('before'))?.fields).toEqual({ v: 1 });
      expect(m.state).toBe('idle'); // the next periodic pull is ~50 s away (default scheduler)

      // A pull whose answer is on its way when the link drops.
      server.holdPulls = true;
      m.syncNow();
      await eventually(() => server.held.length === 1, 10_000, 'the pull reached the server');
      expect(m.state).toBe('pulling');
      await nats.kill();
      await eventually(() => link.at(-1) === false, 10_000, 'the agent saw the link drop');
      // During the outage: the server gets a write (its nudge would be lost), the host writes locally.
      server.write(FLEET('during'), { v: 2 });
      store.put(REF('offline'), { v: 3 });
      await nats.startProcess();
      await eventually(() => link.at(-1) === true, 15_000, 'the agent saw the link come back');
      await eventually(async () => serverNc.flush().then(() => true).catch(() => false), 15_000, 'the server side reconnected');
      expect(m.state).toBe('pulling'); // still the one operation in flight: nothing else was started
      const since = reports.length;
      server.holdPulls = false;
      for (const send of server.held.splice(0)) send(); // the page answered before the outage arrives now

      // The reconnect runs as soon as that page is applied: the outbox first, then the pull that brings the outage's write.
      await eventually(() => store.get(FLEET('during'))?.fields?.['v'] === 2, 10_000, 'the write made during the outage pulled by the reconnect');
      await eventually(() => store.outboxSize() === 0, 10_000, 'the offline write pushed');
      const after = reports.slice(since);
      expect(after).toContainEqual(expect.objectContaining({ type: 'transition', from: 'pulling', to: 'reconciling' }));
      await eventually(() => reports.slice(since).some((r) => r.type === 'synced' && r.kind === 'reconnect'), 10_000, 'a reconnect sync reported');
      // One operation at a time: the state went from the pull to the reconnect, never through two at once.
      const states = reports.slice(since).filter((r) => r.type === 'transition').map((r) => r.to);
      expect(states[0]).toBe('reconciling');
      const pushed = (await readStream(jsm, s.streams.push)).flatMap((msg) => (decodePushBatch(msg.data).changes as { key: string }[]).map((c) => c.key));
      expect(pushed).toEqual(['offline']);
    } finally {
      for (const mg of managers.splice(0)) await mg.stop();
      store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
