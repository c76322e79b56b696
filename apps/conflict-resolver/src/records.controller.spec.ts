import { FleetError } from '@fleet/errors';
import type { ServerWriter } from '@fleet/server-store';
import type { LoggedChange } from '@fleet/sync-core';
import type { ConflictResolverConfig } from './config';
import type { ConflictResolverPublisher } from './publisher';
import { RecordsController } from './records.controller';

const TOKEN = 'records-spec-operator-token';
const AUTH = `Bearer ${TOKEN}`;
const change = { seq: 7, changeId: '0190a000-0000-7000-8000-000000000001', origin: 'server', scope: 'host.a1' } as unknown as LoggedChange;

function controller(publish: () => Promise<void>, seen: unknown[] = []): RecordsController {
  const writer = {
    write: async (_refs: unknown, fn: (ctx: unknown) => void) => {
      fn({ state: () => ({ view: { status: 'live', fields: { n: { inc: { server: 2 }, dec: {} } } } }), edit: (_ref: unknown, e: unknown) => void seen.push(e) });
      return { result: undefined, appended: [change] };
    },
  } as unknown as ServerWriter;
  return new RecordsController(writer, { appended: publish } as unknown as ConflictResolverPublisher, { operatorToken: TOKEN } as ConflictResolverConfig);
}

describe('RecordsController (operator writes)', () => {
  it('refuses a write without the operator token, or with a wrong one, before touching anything (FLEET_AUTH_004)', async () => {
    const seen: unknown[] = [];
    const c = controller(async () => undefined, seen);
    const ok = { status: () => undefined };
    await expect(c.put('host.a1', 'settings', 'ntp', { fields: { level: 1 } }, ok, undefined)).rejects.toMatchObject({ code: 'FLEET_AUTH_004' });
    await expect(c.remove('host.a1', 'settings', 'ntp', ok, 'Bearer not-the-token-at-all')).rejects.toMatchObject({ code: 'FLEET_AUTH_004' });
    await expect(c.increment('host.a1', 'counters', 'n', { field: 'n', by: 1 }, ok, TOKEN)).rejects.toMatchObject({ code: 'FLEET_AUTH_004' });
    expect(seen).toEqual([]);
    const unset = new RecordsController({} as ServerWriter, {} as ConflictResolverPublisher, {} as ConflictResolverConfig);
    await expect(unset.put('host.a1', 'settings', 'ntp', { fields: {} }, ok, AUTH)).rejects.toThrow(/record write is disabled: set FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN/);
  });

  it('writes host scopes; 200 announced once published', async () => {
    const statuses: number[] = [];
    const r = await controller(async () => undefined).put('host.a1', 'settings', 'ntp', { fields: { level: 1 } }, { status: (n) => void statuses.push(n) }, AUTH);
    expect(r).toEqual({ change, announced: true });
    expect(statuses).toEqual([]);
  });

  it('committed but the announcement failed after the retries: 202, announced false, a note', async () => {
    const statuses: number[] = [];
    const r = await controller(async () => {
      throw new FleetError('FLEET_INFRA_001', 'publish to x.log.appended: TimeoutError');
    }).remove('host.a1', 'settings', 'ntp', { status: (n) => void statuses.push(n) }, AUTH);
    expect(statuses).toEqual([202]);
    expect(r.announced).toBe(false);
    expect(r.change).toBe(change);
    expect(r.note).toMatch(/committed/);
  });

  it('increment: counterAdd on the current value, origin server', async () => {
    const seen: unknown[] = [];
    await controller(async () => undefined, seen).increment('host.a1', 'counters', 'restarts', { field: 'n', by: 3 }, { status: () => undefined }, AUTH);
    expect(seen).toEqual([{ op: 'put', fields: { n: { inc: { server: 5 }, dec: {} } } }]);
  });

  it('field names as a change decoder checks them: `__proto__` and empty names refused, prototype-ish names are plain fields', async () => {
    const ok = { status: () => undefined };
    const c = controller(async () => undefined);
    await expect(c.increment('host.a1', 'counters', 'restarts', { field: '__proto__', by: 1 }, ok, AUTH)).rejects.toMatchObject({ code: 'FLEET_DECODE_002' });
    await expect(c.increment('host.a1', 'counters', 'restarts', { field: '', by: 1 }, ok, AUTH)).rejects.toMatchObject({ code: 'FLEET_DECODE_002' });
    await expect(c.put('host.a1', 'settings', 'ntp', { fields: {}, unset: ['__proto__'] }, ok, AUTH)).rejects.toMatchObject({ code: 'FLEET_DECODE_002' });
    await expect(c.put('host.a1', 'settings', 'ntp', { fields: {}, unset: ['a\u0000'] }, ok, AUTH)).rejects.toMatchObject({ code: 'FLEET_DECODE_002' });
    const seen: unknown[] = [];
    // `toString` is not a field of the current record: counting starts at 0, not at Object.prototype.toString.
    await controller(async () => undefined, seen).increment('host.a1', 'counters', 'restarts', { field: 'toString', by: 2 }, ok, AUTH);
    await controller(async () => undefined, seen).put('host.a1', 'settings', 'ntp', { fields: { constructor: 1 }, unset: ['valueOf'] }, ok, AUTH);
    const expected: unknown[] = [
      { op: 'put', fields: { toString: { inc: { server: 2 }, dec: {} } } },
      { op: 'put', fields: { constructor: 1 }, unset: ['valueOf'] },
    ];
    expect(seen).toEqual(expected);
  });

  it('refuses a malformed scope', async () => {
    await expect(controller(async () => undefined).put('nowhere', 'c', 'k', { fields: {} }, { status: () => undefined }, AUTH)).rejects.toMatchObject({ code: 'FLEET_DECODE_002' });
  });
});
