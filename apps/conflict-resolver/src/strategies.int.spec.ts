/**
 * Two writers edit the same record while apart, under each strategy, through the real services
 * (change-log path, version-vector, conflict-resolver, in-process, real NATS and PostgreSQL): the
 * final record on the server is exactly what sync-core computes from the logged changes, its
 * visible fields are the strategy's resolution of the two edits, and the conflict is recorded with
 * both sides. Then a delete concurrent with an edit, under each strategy.
 */
import { conflictOf, encodeRecordState, visibleFields, type RecordRef, type StrategyConfig } from '@fleet/sync-core';
import { Agent, applyChanges, readRecordState, startHarness, type Harness } from './testing/harness';

jest.setTimeout(120_000);

const strategies: StrategyConfig = {
  default: 'lww',
  collections: {
    lww: { strategy: 'lww' },
    merge: { strategy: 'merge' },
    manual: { strategy: 'manual' },
    custom: { strategy: 'custom', rule: 'max', fields: { tags: { rule: 'set-union' } } },
  },
};

let h: Harness;
beforeAll(async () => {
  h = await startHarness(strategies);
});
afterAll(async () => {
  await h?.close();
});

async function conflictRows(ref: RecordRef): Promise<{ id: string; status: string; strategy: string; sides: { fields: { field: string; sides: { origin: string }[] }[]; existence?: { sides: { origin: string }[] } } }[]> {
  return h.ds.query('select id, status, strategy, sides from conflicts where scope = $1 and collection = $2 and key = $3 order by id', [ref.scope, ref.collection, ref.key]);
}

/** The server's record equals sync-core's fold of every logged change of it (agent edits and resolutions). */
async function expectServerMatchesModel(ref: RecordRef): Promise<void> {
  const server = await readRecordState(h.ds, ref);
  const log = await h.logOf(ref);
  expect(server).toBeDefined();
  expect(encodeRecordState(server!.state)).toBe(encodeRecordState(applyChanges(log, strategies)));
  expect(server!.lastSeq).toBe(log[log.length - 1]?.seq);
}

describe.each(['lww', 'merge', 'custom', 'manual'] as const)('strategy %s', (collection) => {
  it('two agents edit one record while apart: the server ends where sync-core says, the conflict is recorded', async () => {
    const [ida, idb] = [`${collection}-ea`, `${collection}-eb`];
    const ref = { scope: `host.${ida}`, collection, key: 'edit' };
    const a = new Agent(ida, strategies);
    const b = new Agent(idb, strategies);
    const base = a.write(ref, { op: 'put', fields: { n: 1, tags: ['base'], note: 'base' } });
    await h.push(ida, [base]);
    b.receive([base]); // b synced once, then both go offline
    const ea = a.write(ref, { op: 'put', fields: { n: 5, tags: ['a'], onlyA: true } }, 1_767_225_700_000);
    const eb = b.write(ref, { op: 'put', fields: { n: 3, tags: ['b'], note: 'from b' } }, 1_767_225_700_500); // b's clock is later
    await h.push(ida, [ea]);
    await h.append([eb]);
    await h.quiesce();

    await expectServerMatchesModel(ref);
    const server = (await readRecordState(h.ds, ref))!.state;
    // What sync-core resolves for exactly these edits (the agents reach the same when they pull).
    const model = applyChanges([base, ea, eb], strategies);
    expect(visibleFields(server)).toEqual(visibleFields(model));
    const expected = {
      lww: { n: 3, tags: ['b'], note: 'from b', onlyA: true },
      merge: { n: 3, tags: ['b'], note: 'from b', onlyA: true },
      custom: { n: 5, tags: ['a', 'b'], note: 'from b', onlyA: true },
      manual: { n: 3, tags: ['b'], note: 'from b', onlyA: true }, // provisional LWW winner
    }[collection];
    expect(visibleFields(server)).toEqual(expected);

    const rows = await conflictRows(ref);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.strategy).toBe(collection);
    const field = rows[0]!.sides.fields.find((f) => f.field === 'n');
    expect(field?.sides.map((x) => x.origin).sort()).toEqual([ida, idb]);
    if (collection === 'manual') {
      expect(rows[0]!.status).toBe('pending');
      expect(server.view.conflicted).toBe(true);
      const [rec] = (await h.ds.query('select conflicted from records where scope = $1 and collection = $2 and key = $3', [ref.scope, ref.collection, ref.key])) as { conflicted: boolean }[];
      expect(rec?.conflicted).toBe(true);
    } else {
      expect(rows[0]!.status).toBe('auto-resolved');
      expect(conflictOf(server, strategies)).toBeUndefined(); // the resolution dominates both sides
      expect(server.vv['server']).toBe(1);
    }
  });

  it('a delete concurrent with an edit is a conflict, settled by the strategy, never a silent loss', async () => {
    const [ida, idb] = [`${collection}-da`, `${collection}-db`];
    const ref = { scope: `host.${ida}`, collection, key: 'delete' };
    const a = new Agent(ida, strategies);
    const b = new Agent(idb, strategies);
    const base = a.write(ref, { op: 'put', fields: { n: 1, keep: 'k' } });
    await h.push(ida, [base]);
    b.receive([base]);
    const del = a.write(ref, { op: 'delete' }, 1_767_225_800_500); // the delete is the later write
    const edit = b.write(ref, { op: 'put', fields: { n: 2 } }, 1_767_225_800_000);
    await h.append([edit]);
    await h.push(ida, [del]);
    await h.quiesce();

    await expectServerMatchesModel(ref);
    const server = (await readRecordState(h.ds, ref))!.state;
    const model = applyChanges([base, del, edit], strategies);
    expect(server.view.status).toBe(model.view.status);
    expect(visibleFields(server)).toEqual(visibleFields(model));
    // lww/custom (onDelete default lww): the later delete wins; merge: the edit wins (observed-remove);
    // manual: provisional LWW (deleted), queued.
    expect(server.view.status).toBe(collection === 'merge' ? 'live' : 'deleted');
    if (collection === 'merge') expect(visibleFields(server)).toEqual({ n: 2 }); // the delete removed what it saw: keep; the edit's n lives

    const rows = await conflictRows(ref);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    const last = rows[rows.length - 1]!;
    expect(last.sides.existence?.sides.map((x) => x.origin).sort()).toEqual([ida, idb]);
    expect(last.status).toBe(collection === 'manual' ? 'pending' : 'auto-resolved');
  });
});
