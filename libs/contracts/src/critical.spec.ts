import { isFleetError } from '@fleet/errors';
import { encodeJson } from './codec';
import { decodeCriticalBeginRequest, decodeTpcAgentRequest, decodeTpcStatusReply, MAX_CRITICAL_AGENTS } from './critical';
import { subjects } from './subjects';
import { TEST_PEM as PEM } from './testing/critical';

const cert = { kind: 'certificate', name: 'web', value: { pem: PEM, notAfter: '2030-01-01T00:00:00Z' } };
const begin = (over: Record<string, unknown>) => encodeJson({ protocol: 1, operation: cert, agents: ['h1'], ...over });

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (isFleetError(e)) return `${e.code} ${e.message}`;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('critical operation messages', () => {
  it('decodes a certificate and a credential operation', () => {
    expect(decodeCriticalBeginRequest(begin({})).operation).toEqual(cert);
    const cred = { kind: 'credential', name: 'root', value: { user: 'root', hash: '$6$rounds=5000$salt$abc/def.' } };
    expect(decodeCriticalBeginRequest(begin({ operation: cred, voteTimeoutMs: 500 }))).toMatchObject({ operation: cred, voteTimeoutMs: 500 });
  });

  it('refuses a clear-text password, a non-PEM certificate, a bad expiry, with the path', () => {
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ operation: { kind: 'credential', name: 'root', value: { user: 'root', hash: 'hunter2' } } })))).toMatch(/^FLEET_DECODE_002 .*operation\.value\.hash: expected a crypt\(3\) hash/);
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ operation: { ...cert, value: { pem: 'not a cert', notAfter: '2030-01-01T00:00:00Z' } } })))).toContain('operation.value.pem: expected one PEM certificate');
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ operation: { ...cert, value: { pem: PEM, notAfter: 'tomorrow' } } })))).toContain('operation.value.notAfter');
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ operation: { ...cert, extra: 1 } })))).toContain('FLEET_DECODE_002');
  });

  it('refuses empty, duplicate, oversized and reserved agent lists, and vote timeouts out of bounds', () => {
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ agents: [] })))).toContain('agents: expected at least one agent');
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ agents: ['h1', 'h1'] })))).toContain('agents must be distinct');
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ agents: ['server'] })))).toContain('agents[0]');
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ agents: Array.from({ length: MAX_CRITICAL_AGENTS + 1 }, (_, i) => `h${i}`) })))).toContain(`at most ${MAX_CRITICAL_AGENTS} agents`);
    expect(reasonOf(() => decodeCriticalBeginRequest(begin({ voteTimeoutMs: 10 })))).toContain('voteTimeoutMs');
  });

  it('decodes the coordinator -> agent requests and an error reply to a status request', () => {
    const txid = '0190a000-0000-7000-8000-000000000001';
    expect(decodeTpcAgentRequest(encodeJson({ protocol: 1, t: 'decision', txid, decision: 'commit' }))).toEqual({ protocol: 1, t: 'decision', txid, decision: 'commit' });
    expect(reasonOf(() => decodeTpcAgentRequest(encodeJson({ protocol: 1, t: 'decision', txid, decision: 'maybe' })))).toContain('decision');
    const err = decodeTpcStatusReply(encodeJson({ error: { code: 'FLEET_TPC_001', message: 'no such critical transaction', retryable: false } }));
    expect(err).toEqual({ ok: false, error: { code: 'FLEET_TPC_001', message: 'no such critical transaction', retryable: false } });
  });

  it('builds the participant subjects and reads the agent id back from a status subject', () => {
    const s = subjects('ns');
    expect(s.tpcAgent('h1')).toBe('ns.tpc.agent.h1');
    expect(s.agentOfTpcStatus(s.tpcStatus('h-2'))).toBe('h-2');
    expect(s.agentOfTpcStatus('ns.tpc.status.a.b')).toBeUndefined();
    expect(s.agentOfTpcStatus('ns.push.h1')).toBeUndefined();
  });
});
