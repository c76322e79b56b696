/**
 * The manual queue through the operator API, over HTTP and over NATS request/reply: list, show,
 * resolve (a resolution is itself a change, applied by version-vector), resolve again (error),
 * resolve a superseded item (error). Every operator request, reads too, needs the operator token; the
 * probes and the metrics do not. Also the operator write of a server-owned record.
 */
import {
  decodeConflictResolveReply,
  decodeConflictShowReply,
  decodeConflictsListReply,
  decodeStatusReply,
  encodeJson,
  Headers,
  PROTOCOL_VERSION,
} from '@fleet/contracts';
import { visibleFields, type RecordRef, type StrategyConfig } from '@fleet/sync-core';
import { Agent, eventually, HARNESS_OPERATOR_TOKEN, readRecordState, startHarness, type Harness } from './testing/harness';

jest.setTimeout(120_000);

const strategies: StrategyConfig = { default: 'lww', collections: { settings: { strategy: 'manual' } } };
let h: Harness;
beforeAll(async () => {
  h = await startHarness(strategies);
});
afterAll(async () => {
  await h?.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field in the tests
type Json = any;

/** An operator's request, with the operator token unless `token` says otherwise (`null`: none). */
async function http(method: string, path: string, body?: unknown, token: string | null = HARNESS_OPERATOR_TOKEN): Promise<{ status: number; body: Json }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) };
  const res = await fetch(`${h.http}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: res.status, body: await res.json() };
}

/** Two agents' concurrent edits of `key`; returns the agents (to make more edits) and the ref. */
async function conflicted(key: string): Promise<{ ref: RecordRef; a: Agent; b: Agent }> {
  const [ida, idb] = [`${key}-a`, `${key}-b`];
  const ref = { scope: `host.${ida}`, collection: 'settings', key };
  const a = new Agent(ida, strategies);
  const b = new Agent(idb, strategies);
  const base = a.write(ref, { op: 'put', fields: { level: 1 } });
  await h.push(ida, [base]);
  b.receive([base]);
  await h.push(ida, [a.write(ref, { op: 'put', fields: { level: 2, mode: 'a' } }, 1_767_225_700_000)]);
  await h.append([b.write(ref, { op: 'put', fields: { level: 3 } }, 1_767_225_700_100)]);
  await h.quiesce();
  return { ref, a, b };
}

async function pendingIdOf(ref: RecordRef): Promise<number> {
  const [r] = (await h.ds.query(`select id from conflicts where scope = $1 and collection = $2 and key = $3 and status = 'pending'`, [ref.scope, ref.collection, ref.key])) as { id: string }[];
  return Number(r?.id);
}

describe('manual queue over HTTP', () => {
  it('lists, shows, resolves; resolving again and resolving a superseded item are clear errors', async () => {
    const { ref, b } = await conflicted('http1');
    const list = await http('GET', '/conflicts?status=pending');
    expect(list.status).toBe(200);
    const item = (list.body.items as { id: number; ref: RecordRef }[]).find((i) => i.ref.key === 'http1');
    expect(item).toBeDefined();
    const shown = await http('GET', `/conflicts/${item!.id}`);
    expect(shown.status).toBe(200);
    expect(shown.body.item).toMatchObject({ id: item!.id, status: 'pending', strategy: 'manual', ref });
    expect(shown.body.item.conflict.fields.map((f: { field: string }) => f.field)).toEqual(['level']);
    expect(shown.body.item.outcome).toEqual({ kind: 'queued', provisional: { fields: { level: 3, mode: 'a' } } });

    // Resolving needs the operator token, and so do reads: none, or a wrong one, is 401 FLEET_AUTH_004.
    for (const token of [null, 'not-the-operator-token']) {
      const refused = await http('POST', `/conflicts/${item!.id}/resolve`, { take: b.id }, token);
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe('FLEET_AUTH_004');
      for (const path of ['/conflicts?status=pending', `/conflicts/${item!.id}`, '/conflicts/999999']) {
        const read = await http('GET', path, undefined, token);
        expect({ path, status: read.status, code: read.body.error?.code }).toEqual({ path, status: 401, code: 'FLEET_AUTH_004' });
        expect(read.body.error.message).toMatch(/^operator token missing or wrong: conflict (list|show) refused: send `Authorization: Bearer <token>` with the value of the service's FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN/);
        expect(read.body.items ?? read.body.item).toBeUndefined();
      }
    }
    expect((await http('GET', `/conflicts/${item!.id}`)).body.item.status).toBe('pending');
    // The probes stay open: no token, 200.
    for (const probe of ['/health/live', '/health/ready']) expect((await fetch(`${h.http}${probe}`)).status).toBe(200);
    const resolved = await http('POST', `/conflicts/${item!.id}/resolve`, { take: b.id });
    expect(resolved.status).toBe(200);
    expect(resolved.body.item).toMatchObject({ status: 'resolved', resolvedBy: 'operator', outcome: { kind: 'resolution', fields: { level: 3 }, unset: [] } });
    expect(resolved.body.change).toMatchObject({ origin: 'server', op: 'put', fields: { level: 3 } });
    // The resolution is a change like any other: version-vector applies it, the flag clears.
    await eventually(async () => (await readRecordState(h.ds, ref))?.state.view.conflicted === false, 10_000, 'resolution applied');
    expect(visibleFields((await readRecordState(h.ds, ref))!.state)).toEqual({ level: 3, mode: 'a' });

    const again = await http('POST', `/conflicts/${item!.id}/resolve`, { take: b.id });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('FLEET_CONFLICT_002');

    expect((await http('GET', '/conflicts/999999')).body.error.code).toBe('FLEET_CONFLICT_001');
    const bad = await http('POST', `/conflicts/${item!.id}/resolve`, { take: 'nobody', extra: 1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('FLEET_DECODE_002');
  });

  it('takes JSON bodies as large as the field caps allow (three 60 KiB values, ~180 KiB), where the HTTP default stopped at 100 KiB', async () => {
    const big = (c: string) => c.repeat(60 * 1024);
    const r = await http('PUT', '/records/fleet/settings/large-body', { fields: { a: big('a'), b: big('b'), c: big('c') } });
    expect(r.status).toBe(200);
    expect(r.body.change.fields.c).toHaveLength(60 * 1024);
  });

  it('an item superseded by newer concurrent writes cannot be resolved', async () => {
    const { ref, a } = await conflicted('http2');
    const oldId = await pendingIdOf(ref);
    // a writes again, still without having seen b: a newer conflict of the record
    await h.push(a.id, [a.write(ref, { op: 'put', fields: { level: 4 } })]);
    await h.quiesce();
    await eventually(async () => (await pendingIdOf(ref)) !== oldId, 10_000, 'newer pending item');
    const r = await http('POST', `/conflicts/${oldId}/resolve`, { fields: { level: 9 } });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('FLEET_CONFLICT_003');
    expect((await http('GET', `/conflicts/${oldId}`)).body.item.status).toBe('superseded');
    // fields that leave a contested field undecided are refused, and the item stays pending
    const partial = await http('POST', `/conflicts/${await pendingIdOf(ref)}/resolve`, { fields: { mode: 'x' } });
    expect(partial.body.error.code).toBe('FLEET_RESOLVE_001');
    expect(partial.body.error.message).toMatch(/undecided: level/);
    expect((await http('GET', `/conflicts/${await pendingIdOf(ref)}`)).body.item.status).toBe('pending');
    // the newer one resolves, with explicit fields
    const ok = await http('POST', `/conflicts/${await pendingIdOf(ref)}/resolve`, { fields: { level: 9 }, unset: ['mode'] });
    expect(ok.status).toBe(200);
    await eventually(async () => {
      const s = (await readRecordState(h.ds, ref))?.state;
      return s !== undefined && !s.view.conflicted && JSON.stringify(visibleFields(s)) === JSON.stringify({ level: 9 });
    }, 10_000, 'explicit resolution applied');
  });
});

describe('manual queue over NATS request/reply', () => {
  const auth = (token: string | null) => (token === null ? {} : { headers: { [Headers.Authorization]: `Bearer ${token}` } });
  const ask = async (verb: 'list' | 'show' | 'resolve', body: unknown, token: string | null = HARNESS_OPERATOR_TOKEN) =>
    (await h.bus.request(h.s.conflictsApi(verb), encodeJson({ protocol: PROTOCOL_VERSION, ...(body as object) }), { timeoutMs: 10_000, ...auth(token) })).data;
  const statusOf = async (token: string | null) => (await h.bus.request(h.s.statusApi('conflict-resolver'), encodeJson({ protocol: PROTOCOL_VERSION }), { timeoutMs: 10_000, ...auth(token) })).data;

  it('lists, shows, resolves, and refuses to resolve twice or a superseded item', async () => {
    const { ref, a } = await conflicted('nats1');
    const list = decodeConflictsListReply(await ask('list', { status: 'pending' }));
    expect(list.ok).toBe(true);
    const item = list.ok ? list.value.items.find((i) => i.ref.key === 'nats1') : undefined;
    expect(item).toBeDefined();
    const shown = decodeConflictShowReply(await ask('show', { id: item!.id }));
    expect(shown.ok && shown.value.item.status).toBe('pending');

    const refused = decodeConflictResolveReply(await ask('resolve', { id: item!.id, choice: { take: a.id } }, null));
    expect(refused.ok ? 'ok' : refused.error.code).toBe('FLEET_AUTH_004');
    // Reads need the token too: none or a wrong one is an error reply FLEET_AUTH_004 that names the variable.
    for (const token of [null, 'not-the-operator-token']) {
      const l = decodeConflictsListReply(await ask('list', { status: 'pending' }, token));
      expect(l.ok ? 'ok' : l.error.code).toBe('FLEET_AUTH_004');
      if (!l.ok) expect(l.error.message).toContain('FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN');
      const sh = decodeConflictShowReply(await ask('show', { id: item!.id }, token));
      expect(sh.ok ? 'ok' : sh.error.code).toBe('FLEET_AUTH_004');
    }
    const st = decodeStatusReply(await statusOf(null));
    expect(st.ok ? 'ok' : st.error.code).toBe('FLEET_AUTH_004');
    const stOk = decodeStatusReply(await statusOf(HARNESS_OPERATOR_TOKEN));
    expect(stOk.ok && stOk.value.facts.pendingConflicts).toBeGreaterThanOrEqual(1);
    const resolved = decodeConflictResolveReply(await ask('resolve', { id: item!.id, choice: { take: a.id } }));
    expect(resolved.ok).toBe(true);
    if (resolved.ok) expect(resolved.value.change.fields).toEqual({ level: 2 });
    const again = decodeConflictResolveReply(await ask('resolve', { id: item!.id, choice: { take: a.id } }));
    expect(again.ok ? 'ok' : again.error.code).toBe('FLEET_CONFLICT_002');

    const { ref: ref2, a: a2 } = await conflicted('nats2');
    const oldId = await pendingIdOf(ref2);
    await h.push(a2.id, [a2.write(ref2, { op: 'delete' })]);
    await h.quiesce();
    const sup = decodeConflictResolveReply(await ask('resolve', { id: oldId, choice: { deleted: true } }));
    expect(sup.ok ? 'ok' : sup.error.code).toBe('FLEET_CONFLICT_003');
    const malformed = decodeConflictShowReply(await ask('show', { id: -1 }));
    expect(malformed.ok ? 'ok' : malformed.error.code).toBe('FLEET_DECODE_002');
    void ref;
  });
});

describe('operator writes of server-owned records', () => {
  it('PUT and DELETE /records/:scope/:collection/:key are server changes, applied like any other', async () => {
    const refused = await http('PUT', '/records/fleet/config/ntp', { fields: { servers: ['x'] } }, null);
    expect(refused.status).toBe(401);
    expect((await http('DELETE', '/records/fleet/config/ntp', undefined, 'not-the-operator-token')).status).toBe(401);
    const put = await http('PUT', '/records/fleet/config/ntp', { fields: { servers: ['a', 'b'] } });
    expect(put.status).toBe(200);
    expect(put.body.change).toMatchObject({ origin: 'server', scope: 'fleet', op: 'put', vv: { server: 1 } });
    const put2 = await http('PUT', '/records/fleet/config/ntp', { fields: { servers: ['c'] } });
    expect(put2.body.change.vv).toEqual({ server: 2 });
    await h.quiesce();
    expect(visibleFields((await readRecordState(h.ds, { scope: 'fleet', collection: 'config', key: 'ntp' }))!.state)).toEqual({ servers: ['c'] });
    const del = await http('DELETE', '/records/fleet/config/ntp');
    expect(del.body.change).toMatchObject({ op: 'delete', vv: { server: 3 } });
    const bad = await http('PUT', '/records/nowhere/config/ntp', { fields: { a: 1 } });
    expect(bad.status).toBe(400);
  });

  it('operators write host records too (PUT, DELETE, POST .../increment): server changes like any other', async () => {
    const ref = { scope: 'host.op-1', collection: 'config', key: 'ntp' };
    const put = await http('PUT', '/records/host.op-1/config/ntp', { fields: { a: 1 } });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ announced: true, change: { origin: 'server', scope: 'host.op-1', op: 'put', vv: { server: 1 } } });
    await h.quiesce();
    expect(visibleFields((await readRecordState(h.ds, ref))!.state)).toEqual({ a: 1 });
    const inc1 = await http('POST', '/records/host.op-1/config/n/increment', { field: 'n', by: 2 });
    const inc2 = await http('POST', '/records/host.op-1/config/n/increment', { field: 'n', by: 3 });
    expect([inc1.status, inc2.status]).toEqual([200, 200]);
    expect(inc2.body.change.fields).toEqual({ n: { inc: { server: 5 }, dec: {} } });
    const badInc = await http('POST', '/records/host.op-1/config/n/increment', { field: 'n', by: 0.5 });
    expect(badInc.status).toBe(400);
    const del = await http('DELETE', '/records/host.op-1/config/ntp');
    expect(del.body.change).toMatchObject({ op: 'delete', vv: { server: 2 } });
    await h.quiesce();
    expect((await readRecordState(h.ds, ref))!.state.view.status).toBe('deleted');
  });
});
