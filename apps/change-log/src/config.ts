/**
 * The change-log's configuration: every option declared once (variable, schema, default,
 * description). `loadConfig(changeLogConfig)` validates the environment at boot and names every bad
 * variable; `describeConfig(changeLogConfig)` is the `--help` text and the table in
 * docs/change-log.md. Variables are `FLEET_CHANGELOG_<NAME>`, then the shared fallback named in
 * the table (the ConfigMap in k8s/config sets those).
 */
import {
  databaseUrlOption,
  defineConfig,
  envDuration,
  envInt,
  envString,
  logLevelOption,
  namespaceOption,
  natsUrlOption,
  operatorTokenOption,
  serviceOptions,
} from '@fleet/config';
import type { ConfigOf } from '@fleet/config';

export const changeLogConfig = defineConfig({
  prefix: 'FLEET_CHANGELOG_',
  options: {
    natsUrl: natsUrlOption(),
    databaseUrl: databaseUrlOption(),
    namespace: namespaceOption(),
    logLevel: logLevelOption(),
    ...serviceOptions({ httpPort: '3000', dbPool: '4', dbPoolDescription: 'PostgreSQL pool size (appends are serialised: a few connections suffice)' }),
    batchMessages: {
      env: 'BATCH_MESSAGES',
      schema: envInt({ min: 1, max: 100 }),
      default: '20',
      description: 'push messages appended in one transaction (each acked after the commit); 1 = one transaction per push',
    },
    batchConcurrency: {
      env: 'BATCH_CONCURRENCY',
      schema: envInt({ min: 1, max: 8 }),
      default: '2',
      description: 'groups of push messages in flight at once: while one group waits on its commit, the next is decoded (appends stay serialised by the append lock); 1 = one group at a time',
    },
    batchLinger: {
      env: 'BATCH_LINGER',
      schema: envDuration({ min: 0, max: 1000 }),
      default: '5ms',
      description: 'how long to wait for more push messages after the first before appending',
    },
    ackWait: {
      env: 'ACK_WAIT',
      schema: envDuration({ min: 1000, max: 600_000 }),
      default: '10s',
      description: 'JetStream ack wait of the push consumer: an unacked push is redelivered (maybe to another replica) after it; also how late a push delivered into a connection that NATS lost (a NATS restart, a killed replica) is appended',
    },
    maxDeliver: {
      env: 'MAX_DELIVER',
      schema: envInt({ min: -1, max: 100 }).refine((n) => n === -1 || n >= 2, { error: 'expected -1 (unlimited) or 2..100' }),
      default: '-1',
      description: 'deliveries of a transiently failing push before it is dead-lettered (FLEET_MSG_001); -1 (the default): never, since every push was acknowledged to its agent and must be appended once the failure clears',
    },
    lockTimeout: {
      env: 'LOCK_TIMEOUT',
      schema: envDuration({ min: 100, max: 600_000 }),
      default: '30s',
      description: 'how long an append waits for the append lock before failing (retryable)',
    },
    voteTimeout: {
      env: 'VOTE_TIMEOUT',
      schema: envDuration({ min: 100, max: 120_000 }),
      default: '10s',
      description: 'critical operations (two-phase commit): how long participants have to vote when the request names no `voteTimeoutMs`; a host that has not voted by then aborts the transaction',
    },
    operatorToken: operatorTokenOption(
      'critical operations (begin, list, show: NATS `admin.critical.*`, HTTP `/critical`), dead letters (list, show, replay, discard), agents (list, show), verify and status (`admin.*`)',
    ),
    signingKeyFile: {
      env: 'SIGNING_KEY_FILE',
      schema: envString({ min: 1 }),
      optional: true,
      description: 'critical operations: an Ed25519 private key (PEM file) that signs every prepare, decision and status answer to hosts; hosts given its public key (FLEET_AGENT_COORDINATOR_KEY_FILE) act on nothing else',
    },
    criticalRetry: {
      env: 'CRITICAL_RETRY',
      schema: envDuration({ min: 100, max: 600_000 }),
      default: '5s',
      description: 'critical operations: how often the coordinator recovers (aborts transactions left undecided past their deadline, repeats the decision to participants that have not acknowledged it)',
    },
    criticalRetention: {
      env: 'CRITICAL_RETENTION',
      schema: envDuration({ min: 3_600_000, max: 10 * 365 * 86_400_000 }),
      default: '30d',
      description:
        'critical operations: how long a finished transaction (committed or aborted, acknowledged by every participant) stays in the decision log before recovery prunes it; what each host holds (`critical_state`) is kept',
    },
    failpoints: {
      env: 'FAILPOINTS',
      schema: envString({ pattern: /^[a-z0-9.-]+=[a-z]+(\(\d+\))?(,[a-z0-9.-]+=[a-z]+(\(\d+\))?)*$/, patternHint: 'expected name=action[,name=action]' }),
      optional: true,
      description: 'TEST ONLY: fault injection, e.g. `change-log.after-commit=kill` (see docs/change-log.md); never set in production',
      fallback: ['FLEET_FAILPOINTS'],
    },
  },
});

export type ChangeLogConfig = ConfigOf<typeof changeLogConfig>;
