/**
 * A `SyncStore` in memory, for this lib's tests (not exported from index.ts). It keeps the invariants
 * the real store promises – a write and its outbox row together, rows leave only by `markSent`, a
 * page and its cursor applied together – and it can fail on purpose (`failNext`) to simulate a crash
 * at a chosen call. Persisting across a "restart" is done by handing the same object to a new manager.
 */
import { randomFillSync } from 'node:crypto';
import { emptyRecord, encodeHlc, formatUuidV7, makeLocalChange, mergeRecordStates, recordHash } from '@fleet/sync-core';
import type { Change, Fields, LocalEdit, MerkleEntry, RecordRef, RecordState, StrategyConfig } from '@fleet/sync-core';
import { isServerScope, restatementOf } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import type { StoredCursor, SyncStore } from '../ports';

const key = (r: RecordRef): string => JSON.stringify([r.scope, r.collection, r.key]);

type Listener = (e: { readonly source: 'local' | 'captured' | 'remote' | 'renumbered' }) => void;

export class MemorySyncStore implements SyncStore {
  readonly records = new Map<string, RecordState>();
  outbox: Change[] = [];
  cursor: StoredCursor = null;
  scopes: readonly string[] | undefined;
  needsVerification = false;
  originSeq = 0;
  private tick = 0;
  failures: { ids: readonly string[]; error: string }[] = [];
  /** Called before each named method; throw from it to simulate a crash there. */
  failNext: Partial<Record<'markSent' | 'applyRemote', () => void>> = {};
  applyCalls = 0;
  private readonly listeners = new Set<Listener>();

  constructor(
    readonly agentId: string,
    private readonly config: StrategyConfig = { default: 'lww' },
  ) {}

  put(ref: RecordRef, fields: Fields): Change {
    return this.write(ref, { op: 'put', fields });
  }

  private write(ref: RecordRef, edit: LocalEdit): Change {
    const state = this.records.get(key(ref)) ?? emptyRecord(ref);
    this.originSeq++;
    this.tick++;
    const now = 1_767_225_600_000 + this.tick;
    const { change, state: next } = makeLocalChange(state, edit, { origin: this.agentId, originSeq: this.originSeq, changeId: formatUuidV7(now, randomFillSync(new Uint8Array(16))), hlc: encodeHlc({ wallMs: now, counter: 0, node: this.agentId }), protocol: 1 }, this.config);
    this.records.set(key(ref), next);
    this.outbox.push(change);
    for (const l of this.listeners) l({ source: 'local' });
    return change;
  }

  /** Restates each held, unconflicted record of the host scope as new local changes (contracts' `restatementOf`, as the SQLite store). */
  requeueForPush(refs: readonly RecordRef[]): number {
    let n = 0;
    for (const ref of refs) {
      const state = this.records.get(key(ref));
      if (ref.scope !== `host.${this.agentId}` || state === undefined || state.view.conflicted) continue;
      for (const edit of restatementOf(state)) this.write(ref, edit);
      n++;
    }
    return n;
  }

  /** The server's states replace the held ones (no join), `drop` refs are removed; server-owned scopes only (FLEET_AUTH_003). Cursor and outbox untouched. */
  replaceFromServer(items: readonly { ref: RecordRef; state: RecordState }[], drop: readonly RecordRef[]): { replaced: number; dropped: number } {
    for (const ref of [...items.map((i) => i.ref), ...drop]) {
      if (!isServerScope(ref.scope)) throw new FleetError('FLEET_AUTH_003', `replaceFromServer: ${JSON.stringify(ref.scope)} is not a server-owned scope`);
    }
    let replaced = 0;
    let dropped = 0;
    for (const it of items) {
      const next = mergeRecordStates(emptyRecord(it.ref), it.state, this.config);
      const before = this.records.get(key(it.ref));
      if (before !== undefined && JSON.stringify(before) === JSON.stringify(next)) continue;
      this.records.set(key(it.ref), next);
      replaced++;
    }
    for (const ref of drop) if (this.records.delete(key(ref))) dropped++;
    if (replaced + dropped > 0) for (const l of this.listeners) l({ source: 'remote' });
    return { replaced, dropped };
  }

  getState(ref: RecordRef): RecordState | null {
    return this.records.get(key(ref)) ?? null;
  }

  peekOutbox(limit: number): Change[] {
    return [...this.outbox].sort((a, b) => a.originSeq - b.originSeq).slice(0, limit);
  }

  markSent(changeIds: readonly string[]): number {
    const f = this.failNext.markSent;
    if (f !== undefined) {
      delete this.failNext.markSent;
      f();
    }
    const ids = new Set(changeIds);
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((c) => !ids.has(c.changeId));
    return before - this.outbox.length;
  }

  recordFailure(changeIds: readonly string[], error: string): void {
    this.failures.push({ ids: changeIds, error });
  }

  outboxSize(): number {
    return this.outbox.length;
  }

  applyRemote(items: readonly { ref: RecordRef; state: RecordState }[], cursorAfter: StoredCursor): { changed: number } {
    this.applyCalls++;
    const f = this.failNext.applyRemote;
    if (f !== undefined) {
      delete this.failNext.applyRemote;
      f(); // before anything is written: the "transaction" rolls back whole
    }
    let changed = 0;
    const next = new Map<string, RecordState>();
    for (const it of items) {
      const k = key(it.ref);
      const before = next.get(k) ?? this.records.get(k) ?? emptyRecord(it.ref);
      const after = mergeRecordStates(before, it.state, this.config);
      if (JSON.stringify(after) !== JSON.stringify(before)) changed++;
      next.set(k, after);
    }
    for (const [k, v] of next) this.records.set(k, v);
    this.cursor = cursorAfter;
    if (items.length > 0) for (const l of this.listeners) l({ source: 'remote' });
    return { changed };
  }

  syncState(): { cursor: StoredCursor; needsVerification: boolean; scopes?: readonly string[] } {
    return { cursor: this.cursor, needsVerification: this.needsVerification, ...(this.scopes === undefined ? {} : { scopes: this.scopes }) };
  }

  setSyncState(patch: { needsVerification?: boolean; cursor?: null; scopes?: readonly string[] }): void {
    if (patch.needsVerification !== undefined) this.needsVerification = patch.needsVerification;
    if (patch.cursor !== undefined) this.cursor = patch.cursor;
    if (patch.scopes !== undefined) this.scopes = patch.scopes;
  }

  merkleEntries(scope: string, collection: string): MerkleEntry[] {
    return [...this.records.values()]
      .filter((s) => s.ref.scope === scope && s.ref.collection === collection)
      .map((s) => ({ key: s.ref.key, recordHash: recordHash(s) }))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  watch(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
