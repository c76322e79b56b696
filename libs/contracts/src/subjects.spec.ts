import fc from 'fast-check';
import { agentInboxPrefix, agentNatsPermissions, AGENT_SUBJECT_KINDS, subjects } from './index';

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
      expect(p.pub.allow.some((a) => matches(a, subject))).toBe(true);
    }
    for (const subject of [s.notify('host-1'), s.tpcAgent('host-1'), `${agentInboxPrefix('host-1')}.abc.1`]) {
      expect(p.sub.allow.some((a) => matches(a, subject))).toBe(true);
    }
    expect(p.allowResponses).toBe(true);
    // Every kind of agent subject is covered by one side or the other.
    for (const kind of AGENT_SUBJECT_KINDS) expect([...p.pub.allow, ...p.sub.allow].some((a) => a.startsWith(`sync.${kind}.`))).toBe(true);
  });

  it("allows nothing of another agent's: its subjects, its replies, the shared inbox", () => {
    fc.assert(
      fc.property(id, id, (a, b) => {
        fc.pre(a !== b);
        const s = subjects('ns1');
        const p = agentNatsPermissions('ns1', a);
        const others = [s.push(b), s.pull(b), s.pullKeys(b), s.origin(b), s.merkle(b), s.tpcStatus(b), s.notify(b), s.tpcAgent(b), `${agentInboxPrefix(b)}.x.1`, '_INBOX.x.1', s.pushAll, s.appended];
        for (const allow of [...p.pub.allow, ...p.sub.allow]) for (const o of others) expect(matches(allow, o)).toBe(false);
      }),
    );
  });
});
