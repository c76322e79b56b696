import fc from 'fast-check';
import { agentInboxPrefix, agentNatsPermissions, AGENT_SUBJECT_KINDS, replyRefusal, serviceNatsPermissions, subjects } from './index';

describe('subjects', () => {
  const s = subjects('t1');
  it('builds and parses push subjects', () => {
    expect(s.push('agent-1')).toBe('t1.push.agent-1');
    expect(s.agentOfPush('t1.push.agent-1')).toBe('agent-1');
    expect(s.agentOfPush('t1.push.a.b')).toBeUndefined();
    expect(s.agentOfPush('other.push.agent-1')).toBeUndefined();
  });
  it('refuses tokens that would change the subject tree', () => {
    expect(() => s.push('a.b')).toThrow(/invalid agent id/);
    expect(() => s.push('*')).toThrow();
    expect(() => subjects('a b')).toThrow(/namespace/);
  });
  it('names streams per namespace', () => {
    expect(subjects('t-2').streams.push).toBe('T_2_PUSH');
  });
});

/** NATS subject matching (`*` one token, `>` the rest), for checking permission lists. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const t = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

describe('agentNatsPermissions', () => {
  const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/).filter((x) => x !== 'server');

  it("allows every subject an agent uses, for itself", () => {
    const s = subjects('sync');
    const p = agentNatsPermissions('sync', 'host-1');
    for (const subject of [s.push('host-1'), s.pull('host-1'), s.pullKeys('host-1'), s.origin('host-1'), s.merkle('host-1'), s.tpcStatus('host-1')]) {
      expect((p.pub.allow ?? []).some((a) => matches(a, subject))).toBe(true);
    }
    for (const subject of [s.notify('host-1'), s.tpcAgent('host-1'), `${agentInboxPrefix('host-1')}.abc.1`]) {
      expect((p.sub.allow ?? []).some((a) => matches(a, subject))).toBe(true);
    }
    expect(p.allowResponses).toBe(true);
    // Every kind of agent subject is covered by one side or the other.
    for (const kind of AGENT_SUBJECT_KINDS) expect([...(p.pub.allow ?? []), ...(p.sub.allow ?? [])].some((a) => a.startsWith(`sync.${kind}.`))).toBe(true);
  });

  it("allows nothing of another agent's: its subjects, its replies, the shared inbox", () => {
    fc.assert(
      fc.property(id, id, (a, b) => {
        fc.pre(a !== b);
        const s = subjects('ns1');
        const p = agentNatsPermissions('ns1', a);
        const others = [s.push(b), s.pull(b), s.pullKeys(b), s.origin(b), s.merkle(b), s.tpcStatus(b), s.notify(b), s.tpcAgent(b), `${agentInboxPrefix(b)}.x.1`, '_INBOX.x.1', s.pushAll, s.appended];
        for (const allow of [...(p.pub.allow ?? []), ...(p.sub.allow ?? [])]) for (const o of others) expect(matches(allow, o)).toBe(false);
      }),
    );
  });
});

describe('serviceNatsPermissions', () => {
  const s = subjects('sync');
  const allowed = (p: { allow?: readonly string[]; deny?: readonly string[] }, subject: string) =>
    (p.allow === undefined || p.allow.some((a) => matches(a, subject))) && !(p.deny ?? []).some((d) => matches(d, subject));

  it('lets only the coordinator speak to hosts for critical operations', () => {
    const coordinator = serviceNatsPermissions('sync', 'coordinator');
    const service = serviceNatsPermissions('sync', 'service');
    expect(allowed(coordinator.pub, s.tpcAgent('host-1'))).toBe(true);
    expect(allowed(coordinator.sub, s.tpcStatus('host-1'))).toBe(true);
    expect(allowed(service.pub, s.tpcAgent('host-1'))).toBe(false);
    expect(allowed(service.sub, s.tpcStatus('host-1'))).toBe(false);
    expect(allowed(service.sub, s.tpcAgent('host-1'))).toBe(false);
    // Everything else a service does stays open.
    for (const subject of [s.appended, s.notify('host-1'), s.pull('host-1'), s.classified('conflict'), s.resolved, s.deadLetter('x'), '$JS.API.STREAM.INFO.X', '_INBOX.abc']) {
      expect(allowed(service.pub, subject) && allowed(service.sub, subject)).toBe(true);
    }
  });

  it('gives fleetctl operator requests and their replies only', () => {
    const op = serviceNatsPermissions('sync', 'operator');
    expect(allowed(op.pub, s.statusApi('change-log'))).toBe(true);
    expect(allowed(op.pub, s.conflictsApi('resolve'))).toBe(true);
    expect(allowed(op.sub, '_INBOX_fleetctl.abc.1')).toBe(true);
    expect(allowed(op.sub, '_INBOX.abc.1')).toBe(false); // the services' replies and JetStream deliveries
    for (const subject of [s.push('host-1'), s.tpcAgent('host-1'), s.appended, '$JS.API.STREAM.INFO.X']) expect(allowed(op.pub, subject)).toBe(false);
    expect(allowed(op.sub, s.notify('host-1'))).toBe(false);
  });
});

describe('replyRefusal', () => {
  const s = subjects('sync');

  it('answers only to an inbox', () => {
    expect(replyRefusal(s.statusApi('change-log'), '_INBOX.abc.1', { agent: false, strict: true })).toBeUndefined();
    expect(replyRefusal(s.statusApi('change-log'), '_INBOX_host-1.abc.1', { agent: false, strict: true })).toBeUndefined();
    for (const reply of ['$JS.API.STREAM.PURGE.SYNC_LOG', s.push('host-2'), '_INBOX', '_INBOX.', 'x._INBOX.abc', '_INBOX.a b', '_INBOX.*', '_INBOX.>']) {
      expect(replyRefusal(s.statusApi('change-log'), reply, { agent: false, strict: false })).toMatch(/is not an inbox/);
    }
  });

  it('judges the reply inside a gateway reply, and accepts the reply subjects the server makes across an import', () => {
    expect(replyRefusal(s.pull('host-1'), '_GR_.east.NABC._INBOX_host-1.tok.7', { agent: true, strict: true })).toBeUndefined();
    expect(replyRefusal(s.pull('host-1'), '_GR_.east.NABC.$JS.API.STREAM.PURGE.X', { agent: true, strict: true })).toMatch(/is not an inbox/);
    expect(replyRefusal(s.pull('host-1'), '_R_.abc.def', { agent: true, strict: true })).toBeUndefined();
  });

  it("answers an agent's request only in its own inbox; the shared one only without authentication", () => {
    expect(replyRefusal(s.pull('host-1'), '_INBOX_host-1.tok.7', { agent: true, strict: true })).toBeUndefined();
    expect(replyRefusal(s.pull('host-1'), '_INBOX.tok.7', { agent: true, strict: false })).toBeUndefined();
    expect(replyRefusal(s.pull('host-1'), '_INBOX.tok.7', { agent: true, strict: true })).toMatch(/not in the inbox of "host-1"/);
    expect(replyRefusal(s.tpcStatus('host-1'), '_INBOX_host-2.tok.7', { agent: true, strict: false })).toMatch(/not in the inbox of "host-1"/);
    expect(replyRefusal(s.merkle('host-1'), '_INBOX_host-10.tok.7', { agent: true, strict: true })).toMatch(/not in the inbox/);
  });
});
