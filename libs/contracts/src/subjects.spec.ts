import { subjects } from './index';

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
