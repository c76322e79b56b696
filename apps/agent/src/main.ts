/**
 * The agent's command line: `node -r ./scripts/register.js apps/agent/src/main.ts <command>`.
 * Wiring only: the store is libs/agent-store, the network half (push, pull, merge, reconnection,
 * verification) libs/agent-sync. `agent run` syncs until SIGTERM and keeps turning direct SQL
 * writes into changes; it writes its connection state to `<data dir>/agent.status.json`, which
 * `agent status` (another process) reads.
 *
 * Exit codes (sysexits.h): 0 ok, 64 usage, 78 configuration, 73 data directory not writable,
 * 74 disk or quota full, 65 bad backup or incompatible store, 75 temporarily refused (outbox
 * full, held after restore, the store in use: restore or a second run beside `agent run`), 1 other
 * FleetError, 70 internal error. Errors print one line with the
 * code, never a stack.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { restoreSqliteStore, SqliteLocalStore } from '@fleet/agent-store';
import type { CriticalEntry } from '@fleet/agent-store';
import { describeConfig, runCommandLine } from '@fleet/config';
import type { CommandLineIo } from '@fleet/config';
import { tpcVerifier } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import type { ErrorCode } from '@fleet/errors';
import { checkNatsFiles, natsFilesOf } from '@fleet/messaging';
import type { Fields } from '@fleet/sync-core';
import { agentConfig, loadAgentConfig } from './config';
import type { AgentConfig } from './config';
import { startSync } from './sync-runner';
import { AgentMetrics } from './telemetry';

export type Io = CommandLineIo;

const USAGE = `usage: agent <command> [options]

commands:
  put <scope> <collection> <key> <json>   replace a record's fields (a JSON object)
  patch <scope> <collection> <key> <json> [--unset f1,f2]
  delete <scope> <collection> <key>
  get <scope> <collection> <key>           print the record (JSON)
  list <scope> <collection> [--prefix p] [--limit n]
  status                                   outbox, cursor, last sync, conflicts, connection
  critical                                 certificates and credentials held (committed critical operations), and any in doubt
  backup [--full]                          consistent online backup (incremental unless --full or no chain yet)
  restore <dir>                            rebuild the store from a backup chain directory (refused while agent run runs)
  run                                      sync with the server until SIGTERM (one per data directory)

options: --json (status as JSON), --help`;

const EXIT: Partial<Record<ErrorCode, number>> = {
  FLEET_AGENT_008: 64,
  FLEET_CONFIG_001: 78,
  FLEET_AGENT_001: 73,
  FLEET_AGENT_002: 74,
  FLEET_AGENT_006: 65,
  FLEET_AGENT_007: 65,
  FLEET_AGENT_003: 75,
  FLEET_AGENT_004: 75,
  FLEET_AGENT_010: 75,
};

function usage(why: string): never {
  throw new FleetError('FLEET_AGENT_008', `${why} (agent --help for usage)`);
}

function parseFields(text: string | undefined): Fields {
  if (text === undefined) usage('missing <json>');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    usage(`<json> is not valid JSON: ${text.length > 60 ? `${text.slice(0, 57)}...` : text}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) usage('<json> must be a JSON object of fields');
  return v as Fields;
}

function refArgs(args: readonly string[]): { scope: string; collection: string; key: string } {
  const [scope, collection, key] = args;
  if (scope === undefined || collection === undefined || key === undefined) usage('expected <scope> <collection> <key>');
  return { scope, collection, key };
}

/** `owner`: `agent run`, the one process that syncs the store (a second one, or a restore, is refused meanwhile). */
function openStore(config: AgentConfig, owner?: string): SqliteLocalStore {
  return SqliteLocalStore.open({
    ...(owner === undefined ? {} : { owner }),
    dataDir: config.dataDir,
    agentId: config.agentId,
    outboxMax: config.outboxMax,
    backupRoot: config.backupDir,
    strategies: config.strategyConfig,
    ...(config.dbMaxMb !== undefined ? { maxDbBytes: config.dbMaxMb * 1024 * 1024 } : {}),
  });
}

function statusOf(store: SqliteLocalStore): Record<string, unknown> {
  const o = store.outboxStats();
  const s = store.syncState();
  return {
    agentId: store.agentId,
    connection: runningState(store),
    outbox: { size: o.size, max: o.max, oldestAt: o.oldestAt === null ? null : new Date(o.oldestAt).toISOString(), oldestAgeMs: o.oldestAgeMs, failures: o.failures, lastError: o.lastError, inFlight: o.inFlight },
    captured: { pending: o.capturedPending, rejected: o.capturedRejected },
    cursor: s.cursor,
    lastSyncAt: s.lastSyncAt === null ? null : new Date(s.lastSyncAt).toISOString(),
    lastPullAt: s.lastPullAt === null ? null : new Date(s.lastPullAt).toISOString(),
    needsVerification: s.needsVerification,
    conflicts: store.conflictCount(),
    critical: { held: store.criticalEntries().length, inDoubt: store.criticalInDoubt().map((t) => t.txid) },
    clock: store.clock(),
  };
}

/** What `agent critical` prints of an entry: a credential's hash is not shown, a certificate's PEM is shortened to its expiry. */
function redact(e: CriticalEntry): Record<string, unknown> {
  if (e.kind === 'credential') return { user: (e.value as { user: string }).user, hash: '(set)' };
  return { notAfter: (e.value as { notAfter: string }).notAfter };
}

function printStatus(st: Record<string, unknown>, io: Io): void {
  const o = st['outbox'] as Record<string, unknown>;
  const c = st['captured'] as Record<string, unknown>;
  io.out(`agent        ${String(st['agentId'])}`);
  io.out(`connection   ${String(st['connection'])}`);
  io.out(`outbox       ${String(o['size'])} / ${String(o['max'])} unsent, oldest ${o['oldestAt'] === null ? '-' : `${String(o['oldestAt'])} (${Math.round(Number(o['oldestAgeMs']) / 1000)} s ago)`}, ${String(o['failures'])} failed, last error ${o['lastError'] === null ? '-' : String(o['lastError'])}`);
  io.out(`captured     ${String(c['pending'])} pending, ${String(c['rejected'])} rejected`);
  io.out(`cursor       ${st['cursor'] === null ? 'unknown' : JSON.stringify(st['cursor'])}${st['needsVerification'] === true ? ' (restored: needs verification, local writes held)' : ''}`);
  io.out(`last sync    ${st['lastSyncAt'] === null ? 'never' : String(st['lastSyncAt'])}`);
  io.out(`conflicts    ${String(st['conflicts'])}`);
  const k = st['critical'] as { held: number; inDoubt: string[] };
  io.out(`critical     ${k.held} held${k.inDoubt.length === 0 ? '' : `, ${k.inDoubt.length} in doubt (asked of the coordinator while agent run is up): ${k.inDoubt.join(', ')}`}`);
}

/** The coordinator's public key file, checked: a missing or wrong file is a configuration error (exit 78). */
function readCoordinatorKey(file: string): string {
  const fail = (why: unknown): never => {
    throw new FleetError('FLEET_CONFIG_001', `FLEET_AGENT_COORDINATOR_KEY_FILE ${file}: ${why instanceof Error ? why.message : String(why)}`);
  };
  let pem = '';
  try {
    pem = readFileSync(file, 'utf8');
    tpcVerifier(pem);
  } catch (e) {
    fail(e);
  }
  return pem;
}

/** Where a running agent publishes its connection state for `agent status` (another process). */
function statusFile(store: SqliteLocalStore): string {
  return join(store.path, '..', 'agent.status.json');
}

function runningState(store: SqliteLocalStore): string {
  try {
    const st = JSON.parse(readFileSync(statusFile(store), 'utf8')) as { state: string; pid: number; at: string };
    let alive = true;
    try {
      process.kill(st.pid, 0);
    } catch {
      alive = false;
    }
    return alive ? `${st.state} (agent run, pid ${st.pid}, since ${st.at})` : `not running (last: ${st.state} at ${st.at})`;
  } catch {
    return 'not running';
  }
}

/** How often `agent run` samples its gauges (outbox, lag, retry). */
const METRICS_SAMPLE_MS = 5000;

/**
 * `agent run`: the sync manager over the local store, plus captured direct SQL writes turned into
 * changes every interval. Stops cleanly on SIGTERM/SIGINT: the batch or page in flight finishes
 * (a published batch is still marked sent, an applied page keeps its cursor), then the store closes.
 */
async function run(config: AgentConfig, io: Io): Promise<void> {
  // The connection is made in the background (the agent works offline): a wrong path must stop it here.
  const natsFiles = natsFilesOf(config, config.credentialsFile);
  checkNatsFiles(natsFiles);
  const store = openStore(config, 'agent run');
  const file = statusFile(store);
  const publish = (state: string): void => {
    // Written whole then renamed, so a reader never sees half a file.
    writeFileSync(`${file}.tmp`, JSON.stringify({ state, pid: process.pid, at: new Date().toISOString() }));
    renameSync(`${file}.tmp`, file);
  };
  publish('connecting');
  // Loaded here, not at the top: the other commands need no OpenTelemetry.
  const { startTelemetry } = await import('@fleet/observability');
  const telemetry = startTelemetry({
    serviceName: 'agent',
    serviceInstanceId: config.agentId,
    prometheusPort: config.metricsPort,
    prometheusHost: config.metricsHost,
    preventServerStart: config.metricsPort === 0,
    ...(config.otlpEndpoint === undefined ? {} : { otlpEndpoint: config.otlpEndpoint }),
    instrumentNest: false,
  });
  if (config.metricsPort !== 0) {
    try {
      await telemetry.metricsReady;
    } catch (e) {
      await telemetry.shutdown();
      store.close();
      throw new FleetError('FLEET_CONFIG_001', `FLEET_AGENT_METRICS_PORT: cannot serve metrics on ${config.metricsHost}:${config.metricsPort}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const meter = new AgentMetrics(telemetry.metrics, store);
  const sync = startSync(store, {
    servers: config.natsUrl,
    namespace: config.namespace,
    scopes: config.scopes,
    verifyCollections: config.verifyCollections,
    strategy: config.strategyConfig,
    ...natsFiles,
    ...(config.coordinatorKeyFile === undefined ? {} : { coordinatorKey: readCoordinatorKey(config.coordinatorKeyFile) }),
    wire: (direction, message, bytes) => meter.wire(direction, message, bytes),
    onReport: (r) => {
      meter.report(r);
      if (r.type === 'transition') publish(r.to);
      else if (r.type === 'synced') io.out(`synced (${r.kind}): ${r.status.changesPushed} pushed, ${r.status.changesPulled} pulled, ${r.status.conflictsDetected} conflicts`);
      else if (r.type === 'origin-settled' && r.shift > 0) io.out(`the log holds changes of ${config.agentId} up to ${r.lastLogged}: ${r.renumbered} queued change(s) renumbered from ${r.ownFrom} (was the clock behind when this store was created?)`);
      else if (r.type === 'verify-report') {
        const v = r.report;
        if (v.missingHere + v.missingThere + v.differing + v.unrepaired.length > 0) {
          io.out(`verify ${v.target.scope}/${v.target.collection}: ${v.missingHere} missing here, ${v.missingThere} missing on the server, ${v.differing} differing; ${v.fetched} fetched, ${v.repushed} re-pushed${v.replaced + v.dropped === 0 ? '' : `, ${v.replaced} replaced, ${v.dropped} dropped`}${v.unrepaired.length === 0 ? '' : `, ${v.unrepaired.length} unrepaired: ${v.unrepaired.slice(0, 10).join(', ')}${v.unrepaired.length > 10 ? ', ...' : ''}`}`);
        }
      } else if (r.type === 'verified') io.out(`verified: ${r.violations} violation(s), ${r.repaired} re-pushed`);
      else if (r.type === 'failed') io.err(`${r.op} failed (attempt ${r.attempt}): ${r.error}${r.retryInMs === undefined ? '' : `, retry in ${r.retryInMs} ms`}`);
    },
    onCritical: (r) => {
      if (r.type === 'voted') io.out(`critical ${r.txid}: voted ${r.vote.vote}${r.vote.vote === 'no' ? ` (${r.vote.reason})` : ''}`);
      else if (r.type === 'decided') io.out(`critical ${r.txid}: ${r.state}${r.via === 'status' ? ' (asked after being in doubt)' : ''}`);
      else if (r.txid === undefined || !isFleetError(r.error) || r.error.code !== 'FLEET_INFRA_001') io.err(`critical${r.txid === undefined ? '' : ` ${r.txid}`}: ${r.error instanceof Error ? r.error.message : String(r.error)}`);
    },
  });
  io.out(`agent ${config.agentId}: store ${store.path} open; syncing ${config.scopes.join(', ')} via ${config.natsUrl.join(',')} (namespace ${config.namespace})`);
  let failure: unknown;
  // Decided critical operations older than FLEET_AGENT_CRITICAL_RETENTION: pruned at start and hourly,
  // 10 batches at most each time (never one in doubt; docs/critical-operations.md, "Retention").
  const pruneCritical = (): void => {
    try {
      let pruned = 0;
      for (let i = 0; i < 10; i++) {
        const n = store.criticalPrune(config.criticalRetention, 1000);
        pruned += n;
        if (n < 1000) break;
      }
      if (pruned > 0) io.out(`critical: pruned ${pruned} decided transaction(s) older than ${config.criticalRetention} ms`);
    } catch (e) {
      io.err(`critical: pruning decided transactions failed (retried in an hour): ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  pruneCritical();
  const pruner: NodeJS.Timeout = setInterval(pruneCritical, 3_600_000);
  const timer: NodeJS.Timeout = setInterval(() => {
    try {
      const r = store.processCaptured();
      if (r.processed + r.rejected > 0) io.out(`captured: ${r.processed} processed, ${r.rejected} rejected, ${r.remaining} remaining`);
      sync.manager.pushNow(); // changes queued by another process (agent put) are not seen by this one's watch
    } catch (e) {
      if (isFleetError(e) && e.retryable) {
        io.err(`agent: ${e.code} ${e.message} (will retry)`);
        return;
      }
      failure = e;
      void sync.stop();
    }
  }, config.captureInterval);
  const sampler: NodeJS.Timeout = setInterval(() => {
    try {
      meter.sample();
    } catch {
      // A store busy or closing: the next sample tells.
    }
  }, METRICS_SAMPLE_MS);
  meter.sample();
  await sync.done;
  clearInterval(timer);
  clearInterval(pruner);
  clearInterval(sampler);
  publish('stopped');
  await telemetry.shutdown();
  store.close();
  io.out(`agent ${config.agentId}: stopped, store closed`);
  if (failure !== undefined) throw failure;
}

/** Runs one command; returns the exit code. Never throws. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...argv],
        allowPositionals: true,
        options: { full: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, unset: { type: 'string' }, prefix: { type: 'string' }, limit: { type: 'string' } },
      });
    } catch (e) {
      usage(e instanceof Error ? e.message : String(e));
    }
    const { values, positionals } = parsed;
    const [command, ...args] = positionals;
    if (values.help === true || command === undefined || command === 'help') {
      io.out(USAGE);
      io.out('\nconfiguration (environment):\n');
      io.out(describeConfig(agentConfig));
      return command === undefined && values.help !== true ? 64 : 0;
    }
    const known = ['put', 'patch', 'delete', 'get', 'list', 'status', 'critical', 'backup', 'restore', 'run'];
    if (!known.includes(command)) usage(`unknown command ${JSON.stringify(command)}`);
    const config = loadAgentConfig(env);
    if (command === 'restore') {
      const dir = args[0];
      if (dir === undefined) usage('expected <dir>');
      const r = restoreSqliteStore(dir, config.dataDir, { agentId: config.agentId });
      io.out(`restored ${r.path} from ${r.applied.length} backup(s) of chain ${r.fullId}${r.previousMovedTo === null ? '' : `; previous store kept at ${r.previousMovedTo}`}`);
      io.out('the store needs verification with the server: the cursor is unknown and local writes are held until the sync manager has verified');
      return 0;
    }
    if (command === 'run') {
      await run(config, io);
      return 0;
    }
    const store = openStore(config);
    try {
      switch (command) {
        case 'put':
        case 'patch': {
          const ref = refArgs(args);
          const fields = parseFields(args[3]);
          const unset = values.unset === undefined ? [] : values.unset.split(',').map((s) => s.trim()).filter((s) => s !== '');
          const change = command === 'put' ? store.put(ref, fields) : store.patch(ref, fields, unset);
          io.out(change === null ? 'unchanged' : `queued ${change.changeId} (seq ${change.originSeq})`);
          return 0;
        }
        case 'delete': {
          const change = store.delete(refArgs(args));
          io.out(change === null ? 'unchanged (not live)' : `queued ${change.changeId} (seq ${change.originSeq})`);
          return 0;
        }
        case 'get': {
          const rec = store.get(refArgs(args));
          if (rec === null) {
            io.err('not found');
            return 1;
          }
          io.out(JSON.stringify(rec, null, 2));
          return 0;
        }
        case 'list': {
          const [scope, collection] = args;
          if (scope === undefined || collection === undefined) usage('expected <scope> <collection>');
          const limit = values.limit === undefined ? 100 : Number(values.limit);
          if (!Number.isSafeInteger(limit) || limit < 0) usage('--limit must be a non-negative integer');
          for (const r of store.query(scope, collection, { limit, ...(values.prefix !== undefined ? { prefix: values.prefix } : {}) })) io.out(`${r.ref.key}\t${JSON.stringify(r.fields)}`);
          return 0;
        }
        case 'status': {
          const st = statusOf(store);
          if (values.json === true) io.out(JSON.stringify(st, null, 2));
          else printStatus(st, io);
          return 0;
        }
        case 'critical': {
          const entries = store.criticalEntries();
          const inDoubt = store.criticalInDoubt();
          if (values.json === true) {
            io.out(JSON.stringify({ entries: entries.map((e) => ({ ...e, value: redact(e) })), inDoubt }, null, 2));
            return 0;
          }
          for (const e of entries) io.out(`${e.kind}\t${e.name}\t${JSON.stringify(redact(e))}\ttx ${e.txid}\t${new Date(e.updatedAt).toISOString()}`);
          for (const t of inDoubt) io.out(`in doubt\t${t.kind} ${t.name}\ttx ${t.txid}\tprepared ${new Date(t.preparedAt).toISOString()}`);
          if (entries.length + inDoubt.length === 0) io.out('no critical operation held');
          return 0;
        }
        case 'backup': {
          const b = store.backup(values.full === true ? { full: true } : {});
          io.out(`${b.kind} backup ${b.id}: ${b.file} (${b.records} records, ${b.outbox} queued changes); restore with: agent restore ${b.dir}`);
          return 0;
        }
        default:
          return usage(`unknown command ${JSON.stringify(command)}`);
      }
    } finally {
      store.close();
    }
  } catch (e) {
    if (isFleetError(e)) {
      io.err(`agent: ${e.code} ${e.message}`);
      return EXIT[e.code] ?? 1;
    }
    io.err(`agent: FLEET_INTERNAL_001 internal error: ${e instanceof Error ? e.message : String(e)}`);
    return 70;
  }
}

if (require.main === module) runCommandLine(main);
