import { isFleetError } from '@fleet/errors';
import { loadAgentConfig } from './config';
import { agentVerifyTargets } from './sync-runner';

describe('agent run: what a verification checks', () => {
  it('every collection the store holds in each configured scope, plus the named ones in every scope; each pair once, in order', () => {
    const held = [
      { scope: 'fleet', collection: 'settings' },
      { scope: 'group.old', collection: 'apps' }, // a group left: not pulled, not verified
      { scope: 'host.a1', collection: 'inventory' },
      { scope: 'host.a1', collection: 'settings' },
    ];
    expect(agentVerifyTargets(['host.a1', 'fleet'], held, ['settings', 'certs'])).toEqual([
      { scope: 'fleet', collection: 'certs' },
      { scope: 'fleet', collection: 'settings' },
      { scope: 'host.a1', collection: 'certs' },
      { scope: 'host.a1', collection: 'inventory' },
      { scope: 'host.a1', collection: 'settings' },
    ]);
    expect(agentVerifyTargets(['host.a1', 'fleet'], [])).toEqual([]);
    expect(agentVerifyTargets(['host.a1', 'fleet'], [], ['certs'])).toEqual([
      { scope: 'fleet', collection: 'certs' },
      { scope: 'host.a1', collection: 'certs' },
    ]);
  });

  it('FLEET_AGENT_VERIFY_COLLECTIONS: comma-separated collection names, checked at start', () => {
    const base = { FLEET_AGENT_ID: 'a1', FLEET_AGENT_DATA_DIR: '/tmp/unused' };
    expect(loadAgentConfig(base).verifyCollections).toEqual([]);
    expect(loadAgentConfig({ ...base, FLEET_AGENT_VERIFY_COLLECTIONS: ' certs, settings,,certs ' }).verifyCollections).toEqual(['certs', 'settings']);
    let error: unknown;
    try {
      loadAgentConfig({ ...base, FLEET_AGENT_VERIFY_COLLECTIONS: 'certs,not a name' });
    } catch (e) {
      error = e;
    }
    expect(isFleetError(error, 'FLEET_CONFIG_001')).toBe(true);
    expect((error as Error).message).toMatch(/FLEET_AGENT_VERIFY_COLLECTIONS: "not a name" is not a collection name/);
  });
});
