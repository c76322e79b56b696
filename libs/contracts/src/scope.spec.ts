import { isFleetError } from '@fleet/errors';
import {
  assertOriginMatches,
  assertScopeWritableBy,
  assertScopesReadableBy,
  groupScope,
  hostScope,
  isAgentId,
  isGroupScope,
  isHostScope,
  isScope,
  isServerScope,
  parseScope,
  scopeOwner,
} from './index';

const code = (fn: () => void): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    return isFleetError(e) ? e.code : `not a FleetError: ${String(e)}`;
  }
};

describe('scopes', () => {
  it('parses the three kinds and nothing else', () => {
    expect(parseScope('fleet')).toEqual({ kind: 'fleet' });
    expect(parseScope('group.eu-west')).toEqual({ kind: 'group', name: 'eu-west' });
    expect(parseScope('host.agent-1')).toEqual({ kind: 'host', agentId: 'agent-1' });
    for (const bad of ['', 'fleet.x', 'group.', 'group.a.b', 'host.', 'host.server', 'host.a b', 'Fleet', 'site.x']) expect(isScope(bad)).toBe(false);
  });
  it('builds scopes and refuses bad parts', () => {
    expect(hostScope('a1')).toBe('host.a1');
    expect(groupScope('g')).toBe('group.g');
    expect(() => hostScope('server')).toThrow(TypeError);
    expect(() => groupScope('a.b')).toThrow(TypeError);
  });
  it('knows owners', () => {
    expect(scopeOwner('host.a1')).toBe('a1');
    expect(scopeOwner('fleet')).toBe('server');
    expect(scopeOwner('group.g')).toBe('server');
    expect(() => scopeOwner('nope')).toThrow(TypeError);
    expect(isHostScope('host.a1')).toBe(true);
    expect(isHostScope('host.a1', 'a2')).toBe(false);
    expect(isServerScope('group.g')).toBe(true);
    expect(isGroupScope('fleet')).toBe(false);
    expect(isAgentId('server')).toBe(false);
  });
  it('checks authority', () => {
    const c = { changeId: 'c', origin: 'a1', scope: 'host.a1' };
    expect(code(() => assertOriginMatches(c, 'a1'))).toBeUndefined();
    expect(code(() => assertOriginMatches(c, 'a2'))).toBe('FLEET_AUTH_001');
    expect(code(() => assertOriginMatches({ ...c, origin: 'server' }, 'server'))).toBe('FLEET_AUTH_001');
    expect(code(() => assertScopeWritableBy(c, 'a1'))).toBeUndefined();
    expect(code(() => assertScopeWritableBy({ ...c, scope: 'fleet' }, 'a1'))).toBe('FLEET_AUTH_003');
    expect(code(() => assertScopeWritableBy(c, 'a2'))).toBe('FLEET_AUTH_003');
    expect(code(() => assertScopesReadableBy(['fleet', 'group.g', 'host.a1'], 'a1'))).toBeUndefined();
    expect(code(() => assertScopesReadableBy(['host.a2'], 'a1'))).toBe('FLEET_AUTH_002');
  });
});
