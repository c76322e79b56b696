import type { LocalStore } from '@fleet/agent-store/src/local-store';
import type { SyncStore } from './ports';

// Compile-time: the agent's real store satisfies the sync manager's port as is (`npx tsc` checks it).
export const asSyncStore = (store: LocalStore): SyncStore => store;

describe('SyncStore port', () => {
  it('is a structural subset of LocalStore (checked by the type checker)', () => {
    expect(typeof asSyncStore).toBe('function');
  });
});
