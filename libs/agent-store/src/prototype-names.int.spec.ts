/**
 * Records whose names are names of Object.prototype's members (fields `toString`, `constructor`,
 * `hasOwnProperty`, `valueOf`; agents with those ids; a collection `constructor`), written on one agent
 * and synced to another through the real wire forms: the outbox change is decoded as the change log
 * decodes it, a server replica (sync-core, as the delta calculator folds) joins it, writes its own
 * concurrent edits (origin `server`, as the ServerWriter does), and serves the record states as a pull
 * response that each agent decodes and applies, by the bulk path (`applyRemoteWire`) and by the general
 * join (`applyRemote`). Real SQLite files. Regression: joining such a record threw a TypeError in
 * sync-core's `joinStates` (a field named `toString` held by one side only).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { decodeChange, decodePullResponse, encodeJson, fromWireRecord, PROTOCOL_VERSION, toWireRecord } from '@fleet/contracts';
import type { WireRecord } from '@fleet/contracts';
import { applyChange, canonicalJson, counterAdd, counterValue, emptyRecord, encodeHlc, formatUuidV7, makeLocalChange, recordHash } from '@fleet/sync-core';
import type { Change, Fields, JsonValue, LocalEdit, RecordRef, RecordState, StrategyConfig } from '@fleet/sync-core';
import { SqliteLocalStore } from './sqlite-local-store';

const STRATEGIES: StrategyConfig = {
  default: 'lww',
  collections: { constructor: { strategy: 'manual' as const, fields: { toString: { rule: 'max' }, hasOwnProperty: { rule: 'counter-sum' } } } },
};
const WRITER = 'toString';
const READER = 'constructor';
const PROTO_FIELDS = ['toString', 'constructor', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', 'toJSON', '__defineGetter__'] as const;

const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

function openStore(agentId: string, clock: { ms: number }): SqliteLocalStore {
  const d = mkdtempSync(join(tmpdir(), 'agent-proto-'));
  roots.push(d);
  let n = 0;
  return SqliteLocalStore.open({ dataDir: d, agentId, strategies: STRATEGIES, now: () => clock.ms, newId: () => idOf(clock.ms, agentId.length, ++n) });
}

/** A lowercase UUIDv7, unique per (salt, n). */
function idOf(ms: number, salt: number, n: number): string {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint8(9, salt);
  v.setUint32(12, n);
  return formatUuidV7(ms, b);
}

const refKey = (r: RecordRef): string => `${r.scope}\u0000${r.collection}\u0000${r.key}`;

/** The server side, in memory: the change log's decoding and the projection's join, plus server writes. */
class ServerReplica {
  readonly states = new Map<string, RecordState>();
  private seq = 0;
  private wall = 1_767_225_600_000;

  /** Pushes an agent's outbox as the change log receives it (JSON, then `decodeChange`) and acks it. */
  push(agent: SqliteLocalStore): number {
    const changes = agent.peekOutbox(1000);
    for (const raw of changes) {
      const c = decodeChange(JSON.parse(JSON.stringify(raw)));
      this.apply(c);
    }
    agent.markSent(changes.map((c) => c.changeId));
    return changes.length;
  }

  apply(c: Change): void {
    const s = this.states.get(refKey(c)) ?? emptyRecord(c);
    this.states.set(refKey(c), applyChange(s, c, STRATEGIES).state);
  }

  /** An operator write (origin `server`) on the record as the server holds it. */
  write(ref: RecordRef, edit: LocalEdit): Change {
    const s = this.states.get(refKey(ref)) ?? emptyRecord(ref);
    this.seq += 1;
    this.wall += 1000;
    const { change, state } = makeLocalChange(s, edit, { origin: 'server', originSeq: this.seq, changeId: idOf(this.wall, 255, this.seq), hlc: encodeHlc({ wallMs: this.wall, counter: 0, node: 'server' }), protocol: PROTOCOL_VERSION }, STRATEGIES);
    this.states.set(refKey(ref), state);
    return change;
  }

  /** A pull response of every record, encoded and decoded as on the wire. */
  page(cursor: number): WireRecord[] {
    const records = [...this.states.values()].map((s) => toWireRecord(s));
    return decodePullResponse(encodeJson({ protocol: PROTOCOL_VERSION, records, nextCursor: cursor, hasMore: false })).records;
  }
}

function pullBulk(server: ServerReplica, agent: SqliteLocalStore, cursor: number): void {
  agent.applyRemoteWire(server.page(cursor), cursor);
}

function pullJoin(server: ServerReplica, agent: SqliteLocalStore, cursor: number): void {
  agent.applyRemote(
    server.page(cursor).map((w) => ({ ref: { scope: w.s, collection: w.c, key: w.k }, state: fromWireRecord(w) })),
    cursor,
  );
}

/** Everyone holds the same state (registers, view, hash) of every record the server holds. */
function expectConverged(server: ServerReplica, agents: readonly SqliteLocalStore[]): void {
  for (const s of server.states.values()) {
    for (const a of agents) {
      const held = a.getState(s.ref);
      expect(held).not.toBeNull();
      expect(canonicalJson(held)).toBe(canonicalJson(s));
      const row = a.get(s.ref);
      expect(row?.hash).toBe(recordHash(s));
      expect(canonicalJson(row?.fields ?? null)).toBe(canonicalJson(s.view.status === 'live' ? s.view.fields : null));
    }
  }
}

describe('records with prototype-ish names, synced between agents (real SQLite)', () => {
  it('write, push, concurrent server edit (a manual conflict), pull by both paths, resolve: every replica converges', () => {
    const clock = { ms: 1_767_225_600_000 };
    const writer = openStore(WRITER, clock);
    const reader = openStore(READER, clock);
    const server = new ServerReplica();
    const ref: RecordRef = { scope: `host.${WRITER}`, collection: 'constructor', key: '__proto__' };
    const plain: RecordRef = { scope: `host.${WRITER}`, collection: 'toString', key: 'valueOf' };

    writer.put(ref, { toString: 'a', constructor: { valueOf: 1, toString: [1] }, hasOwnProperty: counterAdd(undefined, WRITER, 2), valueOf: 3 });
    writer.put(plain, { isPrototypeOf: 1, toJSON: 'not a function' });
    clock.ms += 1000;
    writer.patch(ref, { hasOwnProperty: counterAdd(writer.get(ref)?.fields?.['hasOwnProperty'], WRITER, 5) }, ['valueOf']);
    expect(writer.get(ref)?.fields).toEqual({ toString: 'a', constructor: { valueOf: 1, toString: [1] }, hasOwnProperty: counterAdd(counterAdd(undefined, WRITER, 2), WRITER, 5) });
    expect(server.push(writer)).toBe(3);

    // First pull of the reader: the bulk path for single-write records, the join (with the empty state) for the rest.
    pullBulk(server, reader, 1);
    expectConverged(server, [reader]);

    // Concurrent: the server edits what it holds while the writer edits its copy.
    server.write(ref, { op: 'put', fields: { toString: 'z', constructor: 'server', hasOwnProperty: counterAdd(server.states.get(refKey(ref))?.view.fields['hasOwnProperty'], 'server', 10) } });
    clock.ms += 1000;
    writer.patch(ref, { toString: 'b', constructor: 'writer', hasOwnProperty: counterAdd(writer.get(ref)?.fields?.['hasOwnProperty'], WRITER, 1), valueOf: 'back' });
    server.push(writer);
    const merged = server.states.get(refKey(ref)) as RecordState;
    expect(merged.view.contested).toEqual(['constructor', 'hasOwnProperty', 'toString']);
    expect(merged.view.conflicted).toBe(true);
    // `max` settles toString, counter-sum adds both sides' increments (2 + 5 + 1 by the writer, 10 by the server).
    expect(merged.view.fields['toString']).toBe('z');
    expect(counterValue(merged.view.fields['hasOwnProperty'] as JsonValue)).toBe(18);

    pullJoin(server, writer, 2);
    pullJoin(server, reader, 2);
    pullBulk(server, reader, 3); // a re-delivered page changes nothing
    expectConverged(server, [writer, reader]);
    expect(writer.get(ref)?.conflicted).toBe(true);

    // An operator takes the writer's side: the resolution collapses the conflict everywhere.
    server.write(ref, { op: 'put', fields: { constructor: 'writer' } });
    pullBulk(server, writer, 4);
    pullJoin(server, reader, 4);
    expectConverged(server, [writer, reader]);
    expect(writer.get(ref)?.fields).toMatchObject({ constructor: 'writer', valueOf: 'back', toString: 'z' });

    // Delete and re-create with only some of the names: no field of the old record resurfaces.
    clock.ms += 1000;
    writer.delete(plain);
    writer.put(plain, { valueOf: 0 });
    server.push(writer);
    pullBulk(server, reader, 5);
    pullJoin(server, writer, 5);
    expectConverged(server, [writer, reader]);
    expect(reader.get(plain)?.fields).toEqual({ valueOf: 0 });
    expect([...reader.merkleEntries(ref.scope, ref.collection)]).toEqual([...writer.merkleEntries(ref.scope, ref.collection)]);
    writer.close();
    reader.close();
  });

  it('generated histories of local and server writes with such names converge on every replica', () => {
    const opArb = fc.oneof(
      fc.record({
        kind: fc.constantFrom('local' as const, 'server' as const),
        key: fc.constantFrom('toString', 'k'),
        set: fc.dictionary(fc.constantFrom<string>(...PROTO_FIELDS), fc.oneof(fc.integer({ min: 0, max: 9 }), fc.constantFrom<JsonValue>('x', null, { valueOf: 1 })), { maxKeys: 3 }),
        unset: fc.subarray([...PROTO_FIELDS], { maxLength: 2 }),
        del: fc.boolean(),
      }),
      fc.record({ kind: fc.constantFrom('push' as const, 'pull-bulk' as const, 'pull-join' as const), who: fc.constantFrom(0, 1) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 14 }), (ops) => {
        const clock = { ms: 1_767_225_600_000 };
        const writer = openStore(WRITER, clock);
        const reader = openStore(READER, clock);
        const agents = [writer, reader];
        const server = new ServerReplica();
        let cursor = 0;
        try {
          for (const op of ops) {
            clock.ms += 10;
            if (op.kind === 'local' || op.kind === 'server') {
              const ref: RecordRef = { scope: `host.${WRITER}`, collection: op.key === 'k' ? 'constructor' : 'hasOwnProperty', key: op.key };
              const unset = op.unset.filter((f) => !Object.hasOwn(op.set, f));
              if (op.kind === 'local') {
                if (op.del) writer.delete(ref);
                else writer.patch(ref, op.set as Fields, unset);
              } else {
                server.write(ref, op.del ? { op: 'delete' } : { op: 'put', fields: op.set as Fields, unset });
              }
            } else if (op.kind === 'push') {
              server.push(writer);
            } else if ('who' in op) {
              cursor += 1;
              if (op.kind === 'pull-bulk') pullBulk(server, agents[op.who] as SqliteLocalStore, cursor);
              else pullJoin(server, agents[op.who] as SqliteLocalStore, cursor);
            }
          }
          // The final exchange: push, then both agents pull, one by each path.
          server.push(writer);
          pullBulk(server, writer, cursor + 1);
          pullJoin(server, reader, cursor + 1);
          expectConverged(server, agents);
        } finally {
          writer.close();
          reader.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
