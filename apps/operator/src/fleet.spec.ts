import { decodeAgentSyncReply, encodeJson, errorReply, subjects } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { agents, askWithPush, verifyVerdict } from './fleet';
import { codeOf, type Ctx } from './cli';

const at = '2026-11-28T14:05:40.021Z';

describe('askWithPush: the push side from a delta-calculator of either protocol', () => {
  it('asks at protocol 2 and takes the answer', async () => {
    const asked: number[] = [];
    const r = await askWithPush(async (protocol) => (asked.push(protocol), encodeJson({ protocol, at, agents: {} })), decodeAgentSyncReply);
    expect(asked).toEqual([2]);
    expect(r.protocol).toBe(2);
  });

  it('asks again at 1 when the service speaks only 1 (FLEET_DECODE_003), and takes that answer', async () => {
    const asked: number[] = [];
    const old = async (protocol: number) => {
      asked.push(protocol);
      return encodeJson(protocol === 1 ? { protocol, at, agents: {} } : errorReply(new FleetError('FLEET_DECODE_003', `protocol is ${protocol}, this build speaks 1`)));
    };
    expect((await askWithPush(old, decodeAgentSyncReply)).protocol).toBe(1);
    expect(asked).toEqual([2, 1]);
  });

  it('any other error reply is the answer (not asked again)', async () => {
    const asked: number[] = [];
    const refusing = async (protocol: number) => (asked.push(protocol), encodeJson(errorReply(new FleetError('FLEET_AUTH_004', 'wrong token'))));
    await expect(askWithPush(refusing, decodeAgentSyncReply)).rejects.toMatchObject({ details: { remoteCode: 'FLEET_AUTH_004' } });
    expect(asked).toEqual([2]);
  });
});

describe('verifyVerdict', () => {
  const check = (name: string, differences: number, skipped?: string) => ({ name, differences, ...(skipped === undefined ? {} : { skipped }) });
  it('consistent only when something was checked and nothing differs', () => {
    expect(verifyVerdict([check('origins', 0), check('records', 0)])).toMatchObject({ ok: true, line: "CONSISTENT: every projection equals the change log's fold" });
    expect(verifyVerdict([check('origins', 0), check('records', 0, 'log compacted')])).toMatchObject({ ok: true, line: expect.stringContaining('(not checked: records)') });
    expect(verifyVerdict([check('origins', 0), check('records', 2)])).toMatchObject({ ok: false, differences: 2, line: 'INCONSISTENT: 2 difference(s)' });
  });
  it('every check skipped (the log compacted) is NOT VERIFIED and not ok', () => {
    expect(verifyVerdict([check('origins', 0, 'log compacted'), check('records', 0, 'log compacted'), check('record_states', 0, 'log compacted')])).toEqual({
      ok: false,
      differences: 0,
      skipped: ['origins', 'records', 'record_states'],
      line: 'NOT VERIFIED: every check was skipped (origins, records, record_states)',
    });
  });
});

describe('agents show when only delta-calculator refuses the token', () => {
  it('is a refusal (FLEET_AUTH_004: exit 77), not a warning that its part is unavailable', async () => {
    const s = subjects('op');
    const out: string[] = [];
    const bus = {
      request: async (subject: string) => ({
        // change-log answers; delta-calculator (groups, sync) runs with another token and refuses
        data: subject === s.agentsApi('show') ? encodeJson({ protocol: 1, agent: null }) : encodeJson(errorReply(new FleetError('FLEET_AUTH_004', 'operator token refused'))),
      }),
    };
    const c = { bus, s, config: { token: 'a-token', timeout: 1000 }, io: { out: (l: string) => out.push(l), err: (l: string) => out.push(l) }, json: false } as unknown as Ctx;
    const e = await agents(c, 'show', ['a1'], {}).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(codeOf(e)).toBe('FLEET_AUTH_004');
    expect(out.join('\n')).not.toMatch(/unavailable/);
  });
});
