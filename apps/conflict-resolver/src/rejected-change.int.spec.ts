/**
 * A logged change that reuses a dot (origin, counter) its record already holds for another change
 * (forged, or from an agent that lost its counters) is rejected by the projection: it stays in the log,
 * changes nothing, is reported in `vv.stale` with its reason and copied to the dead-letter stream, and
 * the changes after it (in the same batch, on the same record) are applied. Before, it stopped the
 * projection: every fold of that record threw FLEET_CHANGE_002 and the batch was redelivered forever.
 */
import { decodeChangesIgnoredEvent, Headers } from '@fleet/contracts';
import { readStream } from '@fleet/messaging/src/test-support';
import { encodeRecordState, type Change, type StrategyConfig } from '@fleet/sync-core';
import { testUuidV7 } from '@fleet/server-store/src/testing';
import { readProjectionCursor, rebuildProjections, RecordsProjection } from '@fleet/server-store';
import { Agent, applyChanges, eventually, readRecordState, startHarness, type Harness } from './testing/harness';

jest.setTimeout(120_000);

const strategies: StrategyConfig = { default: 'lww' };

let h: Harness;
beforeAll(async () => {
  h = await startHarness(strategies, { replicas: 2 });
});
afterAll(async () => {
  await h?.close();
});

it('a change reusing a held dot is rejected with its reason and dead-lettered; the rest of the batch and later changes apply', async () => {
  const a = new Agent('rj-1', strategies);
  const ref = { scope: 'host.rj-1', collection: 'settings', key: 'ntp' };
  const other = { scope: 'host.rj-1', collection: 'settings', key: 'dns' };
  const first = a.write(ref, { op: 'put', fields: { server: 'ntp.example', level: 1 } });
  // Same vector (so the same dot rj-1#1), another change id and origin sequence, other content.
  const forged: Change = { ...first, changeId: testUuidV7(), originSeq: first.originSeq + 100, fields: { server: 'evil.example', level: 9 } };
  const sibling = a.write(other, { op: 'put', fields: { resolver: '10.0.0.1' } });
  await h.push('rj-1', [first, forged, sibling]);
  const later = a.write(ref, { op: 'put', fields: { level: 2 } });
  await h.push('rj-1', [later]);

  await h.quiesce(30_000);
  const log = await h.logOf(ref);
  expect(log.map((c) => c.changeId)).toEqual([first.changeId, forged.changeId, later.changeId]); // nothing acknowledged is lost from the log
  const server = (await readRecordState(h.ds, ref))!;
  expect(server.state.view.fields).toEqual({ server: 'ntp.example', level: 2 });
  expect(encodeRecordState(server.state)).toBe(encodeRecordState(applyChanges([first, later], strategies)));
  expect(server.lastSeq).toBe(log[2]!.seq);
  expect((await readRecordState(h.ds, other))?.state.view.fields).toEqual({ resolver: '10.0.0.1' });
  const [head] = (await h.ds.query(`select max(seq)::bigint as m from change_log`)) as { m: string }[];
  await eventually(async () => (await readProjectionCursor(h.ds)) === Number(head!.m), 10_000, 'cursor at the log head');

  // durable with the records, and derived from the log: a rebuild gives the same list
  const listed = async () => (await h.ds.query(`select seq::int as seq, change_id, origin, code, reason from rejected_changes order by seq`)) as { seq: number; change_id: string; origin: string; code: string; reason: string }[];
  const rows = await listed();
  expect(rows.map((r) => [r.seq, r.change_id, r.origin, r.code])).toEqual([[log[1]!.seq, forged.changeId, 'rj-1', 'FLEET_CHANGE_002']]);
  expect(rows[0]!.reason).toContain(first.changeId);
  await rebuildProjections(h.ds, [new RecordsProjection(strategies)]);
  expect((await listed()).map((r) => [r.seq, r.change_id])).toEqual([[log[1]!.seq, forged.changeId]]);

  const jsm = await h.bus.jsm();
  const dead = await eventually(async () => {
    const msgs = await readStream(jsm, h.s.streams.deadLetter).catch(() => []);
    return msgs.length >= 1 ? msgs : undefined;
  }, 10_000, 'dead letter');
  expect(dead).toHaveLength(1); // two replicas of version-vector: still one (one fold, a stable msg id)
  const [d] = dead;
  expect(d!.subject).toBe(h.s.deadLetter('change-log'));
  expect(d!.header.get(Headers.RejectCode)).toBe('FLEET_CHANGE_002');
  expect(d!.header.get(Headers.RejectReason)).toContain(forged.changeId);
  expect(d!.header.get(Headers.RejectReason)).toContain(first.changeId);
  expect(d!.header.get(Headers.OriginalSequence)).toBe(String(log[1]!.seq));
  expect(d!.header.get(Headers.OriginalSubject)).toBe(h.s.push('rj-1'));
  expect(JSON.parse(new TextDecoder().decode(d!.data))).toMatchObject({ changeId: forged.changeId, fields: forged.fields, seq: log[1]!.seq });

  const ignored = (await readStream(jsm, h.s.streams.vv)).filter((m) => m.subject === h.s.classified('stale')).flatMap((m) => decodeChangesIgnoredEvent(m.data).changes);
  const rejected = ignored.filter((c) => c.outcome === 'rejected');
  expect(rejected.map((c) => c.changeId)).toEqual([forged.changeId]);
  expect(rejected[0]!.reason).toContain('rj-1#1');
});
