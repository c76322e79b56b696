/**
 * Review finding: `applyRemoteWire` receives a single-write record's HLC when it batches the record, and
 * again (through `joinRemoteState`) when the INSERT finds the key already held. For an HLC beyond the
 * drift bound the second `hlcReceive` is not skipped (the last one drifted), so `drifted` counts that
 * record twice; `applyRemote` of the same record counts it once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toWireRecord } from '@fleet/contracts';
import { emptyRecord, encodeHlc, joinChange } from '@fleet/sync-core';
import type { Change } from '@fleet/sync-core';
import { SqliteLocalStore } from './sqlite-local-store';

const NOW = 1_767_225_700_000;
const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

function open(): SqliteLocalStore {
  const d = mkdtempSync(join(tmpdir(), 'agent-wire-drift-'));
  roots.push(d);
  return SqliteLocalStore.open({ dataDir: d, agentId: 'agent-d', strategies: { default: 'lww' }, now: () => NOW, maxDriftMs: 60_000 });
}

function remoteChange(n: number, wallMs: number): Change {
  return {
    changeId: `c-${n}`,
    origin: 'other',
    originSeq: n,
    scope: 'fleet',
    collection: 'c',
    key: 'k',
    op: 'put',
    fields: { n },
    hlc: encodeHlc({ wallMs, counter: 0, node: 'other' }),
    vv: { other: n },
    hash: '0'.repeat(64),
    protocol: 1,
  };
}

it('a held record whose HLC drifted counts one drift, as applyRemote counts it', () => {
  const held = remoteChange(1, NOW - 1000);
  const far = remoteChange(2, NOW + 3_600_000); // an hour ahead: beyond the 60 s bound
  const wire = toWireRecord(joinChange(emptyRecord(far), far).state);

  const a = open();
  a.applyRemoteWire([toWireRecord(joinChange(emptyRecord(held), held).state)], 1);
  const viaWire = a.applyRemoteWire([wire], 2);

  const b = open();
  b.applyRemoteWire([toWireRecord(joinChange(emptyRecord(held), held).state)], 1);
  const viaStates = b.applyRemote([{ ref: { scope: 'fleet', collection: 'c', key: 'k' }, state: joinChange(emptyRecord(far), far).state }], 2);

  expect(viaStates.drifted).toBe(1);
  expect(viaWire.drifted).toBe(viaStates.drifted);
  a.close();
  b.close();
});
