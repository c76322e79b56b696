import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '@fleet/config';
import { agentConfig } from './config';

/** k8s/agent/agent.env.example, as systemd's EnvironmentFile reads it (KEY=VALUE, # comments). */
function exampleEnv(): Record<string, string> {
  const text = readFileSync(join(__dirname, '..', '..', '..', 'k8s', 'agent', 'agent.env.example'), 'utf8');
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

describe('k8s/agent/agent.env.example', () => {
  it('names only variables the agent reads, and is a valid agent configuration', () => {
    const env = exampleEnv();
    const known = new Set(Object.values(agentConfig.options).flatMap((o) => [`${agentConfig.prefix}${o.env}`, ...((o as { fallback?: readonly string[] }).fallback ?? [])]));
    expect(Object.keys(env).filter((k) => !known.has(k))).toEqual([]);
    const c = loadConfig(agentConfig, env);
    expect(c).toMatchObject({ agentId: 'host-0001', dataDir: '/var/lib/fleet-sync', metricsPort: 9464, metricsHost: '127.0.0.1', credentialsFile: '/run/credentials/fleet-sync-agent.service/nats.creds' });
  });

  it('is what the systemd unit runs: `agent run`, with the state directory and the credential the example names', () => {
    const unit = readFileSync(join(__dirname, '..', '..', '..', 'k8s', 'agent', 'fleet-sync-agent.service'), 'utf8');
    expect(unit).toMatch(/^ExecStart=.*apps\/agent\/src\/main\.ts run$/m);
    expect(unit).toMatch(/^StateDirectory=fleet-sync$/m);
    expect(unit).toMatch(/^LoadCredential=nats\.creds:/m);
  });
});
