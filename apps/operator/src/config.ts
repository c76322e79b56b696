/**
 * The operator command line's configuration (prefix `FLEET_OPERATOR_`), validated with libs/config.
 * `fleetctl --help` prints the table from `describeConfig(operatorConfig)`.
 */
import { defineConfig, envDuration, envString, namespaceOption, natsCredsFileOption, natsTlsOptions, natsUrlOption } from '@fleet/config';
import type { ConfigOf } from '@fleet/config';

export const operatorConfig = defineConfig({
  prefix: 'FLEET_OPERATOR_',
  options: {
    natsUrl: natsUrlOption(),
    namespace: namespaceOption(),
    // Falling back to the shared variables: fleetctl run inside a service's pod uses that pod's.
    credentialsFile: natsCredsFileOption("the operator's", ['FLEET_NATS_CREDS_FILE']),
    ...natsTlsOptions(true),
    token: {
      env: 'TOKEN',
      schema: envString({ pattern: /^[!-~]{16,256}$/, patternHint: 'expected 16-256 printable characters' }),
      optional: true,
      secret: true,
      description:
        "the operator token (the services' FLEET_OPERATOR_TOKEN, or their FLEET_<SERVICE>_OPERATOR_TOKEN): sent with every command, reads (status, agents, verify, listings) as well as changes; without it every command exits 77",
    },
    natsDir: {
      env: 'NATS_DIR',
      schema: envString({ min: 1 }),
      optional: true,
      description: '`fleetctl nats`: the NATS authority directory (operator and account keys, nats-auth.conf, issued credentials; docs/nats-credentials.md). Keep it private',
    },
    timeout: {
      env: 'TIMEOUT',
      schema: envDuration({ min: 1000, max: 600_000 }),
      default: '60s',
      description: 'how long a request waits for its answer (a critical operation answers once decided: keep it above the vote timeout)',
    },
  },
});

export type OperatorConfig = ConfigOf<typeof operatorConfig>;
