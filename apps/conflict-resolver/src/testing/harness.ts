/**
 * Test and bench support (not part of the service): the three server services in-process on the
 * real NATS and PostgreSQL, one database and namespace per harness, and simulated agents that make
 * their changes with sync-core exactly as the agent does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { loadConfig } from '@fleet/config';
import { encodeJson, subjects, type Subjects } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, freePort, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { openServerDataSource, PostgresChangeLog, readRecordState } from '@fleet/server-store';
import { createTestDatabase, testUuidV7, type TestDatabase } from '@fleet/server-store/src/testing';
import {
  applyChange,
  applyChanges,
  emptyRecord,
  encodeHlc,
  makeLocalChange,
  type Change,
  type LocalEdit,
  type LoggedChange,
  type RecordRef,
  type RecordState,
  type StrategyConfig,
} from '@fleet/sync-core';
// eslint-disable-next-line @nx/enforce-module-boundaries -- tests drive the real change-log path (its processor) in-process
import { PushBatchProcessor } from '../../../change-log/src/push-batch.processor';
// eslint-disable-next-line @nx/enforce-module-boundaries -- the version-vector service, in-process
import { createVersionVectorApp } from '../../../version-vector/src/bootstrap';
// eslint-disable-next-line @nx/enforce-module-boundaries -- its configuration schema
import { versionVectorConfig } from '../../../version-vector/src/config';
import { createConflictResolverApp } from '../bootstrap';
import { conflictResolverConfig } from '../config';
import { publishAppended } from '../resolver.service';

export interface Harness {
  readonly s: Subjects;
  readonly db: TestDatabase;
  readonly ds: DataSource;
  readonly bus: Messaging;
  readonly processor: PushBatchProcessor;
  readonly vv: INestApplication[];
  readonly resolvers: INestApplication[];
  /** Base URL of the first resolver's HTTP API. */
  readonly http: string;
  /** Through the change-log's push path (PushBatchProcessor): the origin must own the record's host scope. */
  push(agentId: string, changes: readonly Change[]): Promise<void>;
  /**
   * Through the change log's append and event path without the push boundary (whose authority
   * check refuses a host record written by another agent): for scenarios with several origins on
   * one record.
   */
  append(changes: readonly Change[]): Promise<void>;
  /** Appends to the change log WITHOUT announcing anything (a lost `log.appended` publish). */
  appendSilently(changes: readonly Change[]): Promise<LoggedChange[]>;
  /** Every logged change of a record, in seq order. */
  logOf(ref: RecordRef): Promise<LoggedChange[]>;
  /** Until no conflict is open and every record's projection has applied its last logged change. */
  quiesce(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  readonly replicas?: number;
  readonly batchMessages?: number;
  readonly resolverBatch?: number;
  readonly sweepInterval?: string;
  /** version-vector's log sweep interval (default 1s). */
  readonly logSweepInterval?: string;
  /**
   * Run the replicas as child processes (`main.ts` of each service, as deployed) instead of in this
   * process: `vv` and `resolvers` are then empty and `http` is the first resolver's URL.
   */
  readonly processes?: boolean;
}

const ROOT = join(__dirname, '..', '..', '..', '..');

/** The operator token the harness's resolvers are given (FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN). */
export const HARNESS_OPERATOR_TOKEN = 'conflict-resolver-harness-token';

/** Starts a service's main.ts as a child process with `env`; resolves when its /health/ready answers 200. */
async function spawnService(main: string, env: Record<string, string>, port: number): Promise<ChildProcess> {
  // The parent's V8 / profiling flags (`--cpu-prof`, `--max-semi-space-size=...`) apply to the services too.
  const flags = process.execArgv.filter((a) => a.startsWith('--'));
  const child = spawn(process.execPath, [...flags, '-r', join(ROOT, 'scripts', 'register.js'), join(ROOT, main)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'], // ipc: the service exits with this process (runService)
  });
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`${main} exited with ${child.exitCode}`);
      return (await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined))?.status === 200;
    },
    60_000,
    `${main} ready`,
  );
  return child;
}

async function stopService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

export async function startHarness(strategies: StrategyConfig, opts: HarnessOptions = {}): Promise<Harness> {
  const s = testNamespace('cr');
  const db = await createTestDatabase('fleet_conflicts');
  const ds = await openServerDataSource({ url: db.url, poolSize: 4 });
  const bus = await Messaging.connect({ servers: [SHARED_NATS], name: 'harness' }, s);
  const common = {
    DATABASE_URL: db.url,
    FLEET_NATS_URL: SHARED_NATS,
    FLEET_NAMESPACE: s.ns,
    FLEET_HTTP_PORT: '0',
    FLEET_METRICS_PORT: '0',
    FLEET_LOG_LEVEL: 'warn',
  };
  const replicas = opts.replicas ?? 1;
  const vv: INestApplication[] = [];
  const resolvers: INestApplication[] = [];
  const children: ChildProcess[] = [];
  const vvEnv = {
    FLEET_VERSIONVECTOR_BATCH_MESSAGES: String(opts.batchMessages ?? 20),
    FLEET_VERSIONVECTOR_BATCH_LINGER: '2ms',
    FLEET_VERSIONVECTOR_SWEEP_INTERVAL: opts.logSweepInterval ?? '1s',
  };
  const resolverEnv = (i: number) => ({
    FLEET_CONFLICTRESOLVER_NODE_ID: `server-r${i}`,
    FLEET_CONFLICTRESOLVER_BATCH_MESSAGES: String(opts.resolverBatch ?? 20),
    FLEET_CONFLICTRESOLVER_BATCH_LINGER: '2ms',
    FLEET_CONFLICTRESOLVER_SWEEP_INTERVAL: opts.sweepInterval ?? '2s',
    FLEET_CONFLICTRESOLVER_SWEEP_AGE: '2s',
    FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN: HARNESS_OPERATOR_TOKEN,
  });
  let http = '';
  for (let i = 0; i < replicas; i++) {
    if (opts.processes === true) {
      const env = { ...common, FLEET_STRATEGIES: JSON.stringify(strategies) };
      const vvPort = await freePort();
      children.push(await spawnService('apps/version-vector/src/main.ts', { ...env, ...vvEnv, FLEET_HTTP_PORT: String(vvPort) }, vvPort));
      const crPort = await freePort();
      children.push(await spawnService('apps/conflict-resolver/src/main.ts', { ...env, ...resolverEnv(i), FLEET_HTTP_PORT: String(crPort) }, crPort));
      if (http === '') http = `http://127.0.0.1:${crPort}`;
      continue;
    }
    vv.push(await createVersionVectorApp(loadConfig(versionVectorConfig, { ...common, ...vvEnv }), strategies));
    resolvers.push(await createConflictResolverApp(loadConfig(conflictResolverConfig, { ...common, ...resolverEnv(i) }), strategies));
  }
  if (resolvers[0] !== undefined) http = `http://127.0.0.1:${(resolvers[0].getHttpServer().address() as { port: number }).port}`;
  const processor = new PushBatchProcessor(new PostgresChangeLog(ds), { publish: (subject, payload, o) => bus.publish(subject, payload, o) }, s);
  const logOf = async (ref: RecordRef): Promise<LoggedChange[]> => {
    const rows = (await ds.query(
      `select seq, change_id, origin, origin_seq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol
         from change_log where scope = $1 and collection = $2 and key = $3 order by seq`,
      [ref.scope, ref.collection, ref.key],
    )) as Record<string, unknown>[];
    return rows.map((r) => ({
      seq: Number(r['seq']),
      changeId: r['change_id'] as string,
      origin: r['origin'] as string,
      originSeq: Number(r['origin_seq']),
      scope: r['scope'] as string,
      collection: r['collection'] as string,
      key: r['key'] as string,
      op: r['op'] as 'put' | 'delete',
      fields: r['fields'] as LoggedChange['fields'],
      ...(r['unset'] === null ? {} : { unset: r['unset'] as string[] }),
      hlc: r['hlc'] as string,
      vv: r['vv'] as LoggedChange['vv'],
      hash: r['hash'] as string,
      protocol: r['protocol'] as number,
    }));
  };
  return {
    s,
    db,
    ds,
    bus,
    processor,
    vv,
    resolvers,
    http,
    async push(agentId, changes) {
      for (let i = 0; i < changes.length; i += 500) {
        const batch = { protocol: 1, batchId: testUuidV7(), agentId, changes: changes.slice(i, i + 500) };
        await processor.process({
          subject: s.push(agentId),
          data: encodeJson(batch),
          deadLetter: async (_p, e) => {
            throw e;
          },
        });
      }
    },
    async append(changes) {
      const log = new PostgresChangeLog(ds);
      for (let i = 0; i < changes.length; i += 500) {
        const r = await log.appendBatch(changes.slice(i, i + 500));
        if (r.rejected.length > 0) throw r.rejected[0]?.error;
        await publishAppended(bus, s, [...r.appended, ...r.duplicates]);
      }
    },
    async appendSilently(changes) {
      const r = await new PostgresChangeLog(ds).appendBatch(changes);
      if (r.rejected.length > 0) throw r.rejected[0]?.error;
      return [...r.appended];
    },
    logOf,
    async quiesce(timeoutMs = 30_000) {
      await eventually(
        async () => {
          const [open] = (await ds.query(`select count(*)::int as n from conflicts where status = 'open'`)) as { n: number }[];
          const [lag] = (await ds.query(
            `select count(*)::int as n from (select scope, collection, key, max(seq) as m from change_log group by 1, 2, 3) l
               left join records r using (scope, collection, key) where r.last_seq is distinct from l.m`,
          )) as { n: number }[];
          return open?.n === 0 && lag?.n === 0;
        },
        timeoutMs,
        'quiescence (no open conflict, projection at the log head)',
      );
    },
    async close() {
      for (const a of [...resolvers, ...vv]) await a.close().catch(() => undefined);
      await Promise.all(children.map(stopService));
      const jsm = await bus.jsm();
      await deleteNamespaceStreams(jsm, s).catch(() => undefined);
      await bus.drain();
      await ds.destroy();
      await db.drop();
    },
  };
}

/** A simulated agent: its replica of the records it holds, its origin counter and clock. */
export class Agent {
  private seq = 0;
  private readonly states = new Map<string, RecordState>();

  constructor(
    readonly id: string,
    private readonly config: StrategyConfig,
    private wallMs = 1_767_225_600_000,
  ) {}

  state(ref: RecordRef): RecordState {
    return this.states.get(`${ref.scope}/${ref.collection}/${ref.key}`) ?? emptyRecord(ref);
  }

  /** A local write: the change to push (its clock ticks one ms per write, from `wallMs`). */
  write(ref: RecordRef, edit: LocalEdit, atMs?: number): Change {
    if (atMs !== undefined) this.wallMs = atMs;
    this.wallMs += 1;
    const { change, state } = makeLocalChange(this.state(ref), edit, { origin: this.id, originSeq: ++this.seq, changeId: testUuidV7(), hlc: encodeHlc({ wallMs: this.wallMs, counter: 0, node: this.id }), protocol: 1 }, this.config);
    this.states.set(`${ref.scope}/${ref.collection}/${ref.key}`, state);
    return change;
  }

  /** Receives changes (a pull). */
  receive(changes: readonly Change[]): void {
    for (const c of changes) this.states.set(`${c.scope}/${c.collection}/${c.key}`, applyChange(this.state(c), c, this.config).state);
  }
}

export { applyChanges, readRecordState, eventually, subjects };
