/**
 * conflict-resolver's configuration: every option declared once. Variables are
 * `FLEET_CONFLICTRESOLVER_<NAME>`, then the shared fallback named in the table (`--help`).
 */
import { databaseUrlOption, defineConfig, envDuration, envInt, envString, logLevelOption, namespaceOption, natsUrlOption, operatorTokenOption, strategyConfigOptions, serviceOptions } from '@fleet/config';
import type { ConfigOf } from '@fleet/config';

export const conflictResolverConfig = defineConfig({
  prefix: 'FLEET_CONFLICTRESOLVER_',
  options: {
    natsUrl: natsUrlOption(),
    databaseUrl: databaseUrlOption(),
    namespace: namespaceOption(),
    logLevel: logLevelOption(),
    ...serviceOptions({ httpPort: '3000', dbPool: '4' }),
    ...strategyConfigOptions(),
    operatorToken: operatorTokenOption(
      'the conflict log (list, show, resolve: HTTP `/conflicts`, NATS `admin.conflicts.*`), record writes (`PUT`/`DELETE`/`POST /records/...`) and status (`admin.status.conflict-resolver`)',
    ),
    batchMessages: {
      env: 'BATCH_MESSAGES',
      schema: envInt({ min: 1, max: 1000 }),
      default: '20',
      description: 'conflict events handled together (each lists the conflicts of one version-vector transaction); acked after their transactions commit',
    },
    txnConflicts: {
      env: 'TXN_CONFLICTS',
      schema: envInt({ min: 1, max: 4000 }),
      default: '1000',
      description:
        "conflicts decided in one transaction (one append lock, one multi-row append, one publish); each record is one advisory lock in PostgreSQL's shared lock table (max_locks_per_transaction x max_connections, 6,400 by default), so keep replicas x this well under it",
    },
    batchLinger: {
      env: 'BATCH_LINGER',
      schema: envDuration({ min: 0, max: 1000 }),
      default: '5ms',
      description: 'how long to wait for more conflict events after the first',
    },
    ackWait: {
      env: 'ACK_WAIT',
      schema: envDuration({ min: 1000, max: 600_000 }),
      default: '30s',
      description: 'JetStream ack wait of the conflict-events consumer',
    },
    maxDeliver: {
      env: 'MAX_DELIVER',
      schema: envInt({ min: 2, max: 100 }),
      default: '10',
      description: 'deliveries of a transiently failing event before it is dead-lettered (FLEET_MSG_001)',
    },
    node: {
      env: 'NODE_ID',
      schema: envString({ min: 1, max: 100, pattern: /^[\x21-\x7e]+$/, patternHint: 'expected printable ASCII without spaces' }),
      optional: true,
      description: "this replica's HLC node id for server changes (default: server-<HOSTNAME or pid>); unique per replica",
    },
    sweepInterval: {
      env: 'SWEEP_INTERVAL',
      schema: envDuration({ min: 0, max: 3_600_000 }),
      default: '15s',
      description: 'how often open conflicts whose event was lost are picked up again (0: never)',
    },
    captureSlot: {
      env: 'CAPTURE_SLOT',
      schema: envString({ max: 63, pattern: /^[a-z0-9_]+$/, patternHint: 'expected a replication slot name: [a-z0-9_], at most 63' }),
      optional: true,
      description:
        'capture SQL writes to the server_records table into the change log (docs/server-writes.md) through this logical replication slot, made if missing; needs wal_level=logical; every replica uses the same name (one streams, the others stand by); unset: no capture',
    },
    capturePartRecords: {
      env: 'CAPTURE_PART_RECORDS',
      schema: envInt({ min: 1, max: 4000 }),
      default: '500',
      description: 'records of one captured SQL transaction appended together (one ServerWriter transaction, one advisory lock per record); a larger transaction is appended in parts, each exactly once',
    },
    captureRetry: {
      env: 'CAPTURE_RETRY',
      schema: envDuration({ min: 100, max: 600_000 }),
      default: '5s',
      description: 'wait before the capture connects again after a failure, or while another replica holds the slot',
    },
    sweepAge: {
      env: 'SWEEP_AGE',
      schema: envDuration({ min: 1000, max: 3_600_000 }),
      default: '30s',
      description: 'an open conflict older than this is swept',
    },
  },
});

export type ConflictResolverConfig = ConfigOf<typeof conflictResolverConfig>;
