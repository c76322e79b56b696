import { isFleetError } from '@fleet/errors';
import { emptyRecord, makeLocalChange, recordHash } from '@fleet/sync-core';
import type { RecordRef, RecordState } from '@fleet/sync-core';
import { MemorySyncStore } from './memory-store';

const FLEET = (key: string): RecordRef => ({ scope: 'fleet', collection: 'settings', key });

function serverState(ref: RecordRef, v: number, seq: number): RecordState {
  const hlc = `${String(1_700_000_000_000 + seq).padStart(15, '0')}-000000-server`;
  return makeLocalChange(emptyRecord(ref), { op: 'put', fields: { v } }, { origin: 'server', originSeq: seq, changeId: `0190a000-0000-7000-8000-${String(seq).padStart(12, '0')}`, hlc, protocol: 1 }, { default: 'lww' }).state;
}

describe('MemorySyncStore.replaceFromServer (the SyncStore port, as SqliteLocalStore keeps it)', () => {
  it('replaces server-owned records (no join), drops what the server lacks, leaves the outbox and cursor; refuses the host scope', () => {
    const store = new MemorySyncStore('agent-1');
    const newer = serverState(FLEET('a'), 2, 2);
    store.applyRemote([{ ref: FLEET('a'), state: newer }, { ref: FLEET('ghost'), state: serverState(FLEET('ghost'), 9, 3) }], 5);
    store.put({ scope: 'host.agent-1', collection: 'settings', key: 'mine' }, { n: 1 });
    const older = serverState(FLEET('a'), 1, 1);
    let code: string | undefined;
    try {
      store.replaceFromServer([{ ref: FLEET('a'), state: older }], [{ scope: 'host.agent-1', collection: 'settings', key: 'mine' }]);
    } catch (e) {
      code = isFleetError(e) ? e.code : String(e);
    }
    expect(code).toBe('FLEET_AUTH_003');
    expect(store.getState(FLEET('a'))?.view.fields).toEqual({ v: 2 });
    expect(store.replaceFromServer([{ ref: FLEET('a'), state: older }], [FLEET('ghost'), FLEET('never')])).toEqual({ replaced: 1, dropped: 1 });
    expect(store.getState(FLEET('a'))?.view.fields).toEqual({ v: 1 }); // a join would have kept v: 2
    expect(store.getState(FLEET('ghost'))).toBeNull();
    expect(store.merkleEntries('fleet', 'settings')).toEqual([{ key: 'a', recordHash: recordHash(older) }]);
    expect(store.cursor).toBe(5);
    expect(store.outboxSize()).toBe(1);
    expect(store.replaceFromServer([{ ref: FLEET('a'), state: older }], [FLEET('ghost')])).toEqual({ replaced: 0, dropped: 0 });
  });
});
