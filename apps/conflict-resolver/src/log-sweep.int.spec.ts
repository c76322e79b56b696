/**
 * version-vector's log sweep (docs/conflicts.md, "The log sweep"), with two replicas of each service:
 * changes committed to the log whose `log.appended` event was never published (a publish lost after
 * the commit) are projected within the sweep interval, conflicts detected and resolved once; a
 * projection rebuild resets the cursor and the sweep carries on from it.
 */
import type { StrategyConfig } from '@fleet/sync-core';
import { readProjectionCursor, rebuildProjections, RecordsProjection } from '@fleet/server-store';
import { Agent, applyChanges, eventually, readRecordState, startHarness, type Harness } from './testing/harness';
import { encodeRecordState } from '@fleet/sync-core';

jest.setTimeout(120_000);

const strategies: StrategyConfig = { default: 'lww', collections: { settings: { strategy: 'lww' }, counters: { strategy: 'custom', rule: 'counter-sum' } } };

let h: Harness;
beforeAll(async () => {
  h = await startHarness(strategies, { replicas: 2, logSweepInterval: '300ms' });
});
afterAll(async () => {
  await h?.close();
});

async function logHead(): Promise<number> {
  const [r] = (await h.ds.query(`select coalesce(max(seq), 0)::bigint as m from change_log`)) as { m: string }[];
  return Number(r?.m ?? 0);
}

it('a change logged without any appended event is projected by the sweep, its conflict detected and resolved once', async () => {
  const owner = new Agent('sw-1', strategies);
  const other = new Agent('sw-2', strategies);
  const ref = { scope: 'host.sw-1', collection: 'settings', key: 'ntp' };
  // concurrent edits of one record by two origins, appended with NO event at all
  const logged = await h.appendSilently([owner.write(ref, { op: 'put', fields: { level: 1 } }), other.write(ref, { op: 'put', fields: { level: 2 } })]);
  expect(logged).toHaveLength(2);
  await eventually(
    async () => {
      const [n] = (await h.ds.query(`select count(*)::int as n from conflicts where scope = $1 and key = $2 and status = 'auto-resolved'`, [ref.scope, ref.key])) as { n: number }[];
      return n?.n === 1;
    },
    15_000,
    'conflict detected by the sweep and auto-resolved',
  );
  await h.quiesce(15_000);
  const log = await h.logOf(ref);
  const server = (await readRecordState(h.ds, ref))!;
  expect(encodeRecordState(server.state)).toBe(encodeRecordState(applyChanges(log, strategies)));
  expect(server.lastSeq).toBe(log[log.length - 1]!.seq);
  // one conflict row, one resolution change (two replicas of each service, no double resolution)
  const rows = (await h.ds.query(`select status, resolution_change_id from conflicts where scope = $1 and key = $2`, [ref.scope, ref.key])) as { status: string; resolution_change_id: string }[];
  expect(rows).toHaveLength(1);
  const resolutions = log.filter((c) => c.origin === 'server');
  expect(resolutions.map((c) => c.changeId)).toEqual([rows[0]!.resolution_change_id]);
  await eventually(async () => (await readProjectionCursor(h.ds)) === (await logHead()), 10_000, 'cursor at the log head');
});

it('many silent changes over many records: all projected, each conflict row once', async () => {
  const agents = Array.from({ length: 4 }, (_, i) => new Agent(`swm-${i}`, strategies));
  const changes = [];
  for (let k = 0; k < 40; k++) {
    const ref = { scope: 'host.swm-0', collection: k % 2 === 0 ? 'settings' : 'counters', key: `k${k}` };
    for (const a of agents) changes.push(a.write(ref, { op: 'put', fields: { v: k, by: a.id } }));
  }
  await h.appendSilently(changes);
  await h.quiesce(60_000);
  const [dup] = (await h.ds.query(`select count(*)::int as n from (select scope, collection, key, seq from conflicts group by 1, 2, 3, 4 having count(*) > 1) d`)) as { n: number }[];
  expect(dup?.n).toBe(0);
  const [shared] = (await h.ds.query(
    `select count(*)::int as n from (select resolution_change_id from conflicts where resolution_change_id is not null group by 1 having count(distinct (scope, collection, key)) > 1) d`,
  )) as { n: number }[];
  expect(shared?.n).toBe(0);
  await eventually(async () => (await readProjectionCursor(h.ds)) === (await logHead()), 10_000, 'cursor at the log head');
});

it('a rebuild resets the cursor to the replayed head; a silent change after it is still swept', async () => {
  const before = (await h.ds.query(`select scope, collection, key, state, last_seq from records order by 1, 2, 3`)) as Record<string, unknown>[];
  const report = await rebuildProjections(h.ds, [new RecordsProjection(strategies)]);
  expect(await readProjectionCursor(h.ds)).toBe(report.headSeq);
  const after = (await h.ds.query(`select scope, collection, key, state, last_seq from records order by 1, 2, 3`)) as Record<string, unknown>[];
  expect(after).toEqual(before);
  const a = new Agent('sw-3', strategies);
  const ref = { scope: 'host.sw-3', collection: 'settings', key: 'after-rebuild' };
  const [c] = await h.appendSilently([a.write(ref, { op: 'put', fields: { x: 1 } })]);
  await eventually(async () => (await readRecordState(h.ds, ref))?.lastSeq === c!.seq, 10_000, 'swept after the rebuild');
  await eventually(async () => (await readProjectionCursor(h.ds)) === (await logHead()), 10_000, 'cursor at the log head');
});
