/**
 * The four server services as real child processes (`node -r ./scripts/register.js
 * apps/<svc>/src/main.ts`), configured only through the environment, exactly as a user deploying
 * them would: their own fresh database, their own subject namespace, distinct HTTP and metrics
 * ports. Each can be SIGKILLed, SIGTERMed and restarted on the same ports.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, writeFileSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { DEFAULT_DATABASE_URL } from '@fleet/server-store';
import type { StrategyConfigJson } from '@fleet/config';
import { eventually, freePort } from './util';

export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/** The operator token the harness's services run with, and the harness's operator sends (every operator request needs it). */
export const HARNESS_OPERATOR_TOKEN = 'fleet-harness-operator-token';

/** The coordinator's signing key pair of the harness: change-log signs with it, the harness's agents check. */
export const HARNESS_COORDINATOR_KEYS = (() => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
})();

export type ServiceName = 'change-log' | 'version-vector' | 'conflict-resolver' | 'delta-calculator';
export const SERVICE_NAMES: readonly ServiceName[] = ['change-log', 'version-vector', 'conflict-resolver', 'delta-calculator'];

/** Each app's variable prefix (see its `config.ts`). */
const PREFIX: Record<ServiceName, string> = {
  'change-log': 'FLEET_CHANGELOG_',
  'version-vector': 'FLEET_VERSIONVECTOR_',
  'conflict-resolver': 'FLEET_CONFLICTRESOLVER_',
  'delta-calculator': 'FLEET_DELTA_',
};

/** Every service is ready when its PostgreSQL pool and NATS connection answer. */
const READY_PATH = '/health/ready';

export interface ServiceSpec {
  readonly name: ServiceName;
  readonly databaseUrl: string;
  readonly natsUrl: string;
  readonly namespace: string;
  readonly strategies: StrategyConfigJson;
  readonly logDir: string;
  /** Extra variables (e.g. shorter ack waits for fault tests). */
  readonly extra?: Readonly<Record<string, string>>;
}

export class ServiceProcess {
  private proc: ChildProcess | undefined;
  private exitedP: Promise<void> = Promise.resolve();
  private log: WriteStream | undefined;
  private tail = '';
  starts = 0;

  private constructor(
    readonly spec: ServiceSpec,
    readonly httpPort: number,
    readonly metricsPort: number,
  ) {}

  static async create(spec: ServiceSpec): Promise<ServiceProcess> {
    return new ServiceProcess(spec, await freePort(), await freePort());
  }

  get name(): ServiceName {
    return this.spec.name;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get logFile(): string {
    return join(this.spec.logDir, `${this.spec.name}.log`);
  }

  /** The environment a deployment would set: the app's own prefix, nothing shared implicitly. */
  env(): Record<string, string> {
    const p = PREFIX[this.name];
    const e: Record<string, string> = {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      NO_COLOR: '1',
      HOSTNAME: `${this.name}-${this.httpPort}`,
      [`${p}DATABASE_URL`]: this.spec.databaseUrl,
      [`${p}NATS_URL`]: this.spec.natsUrl,
      [`${p}NAMESPACE`]: this.spec.namespace,
      [`${p}HTTP_PORT`]: String(this.httpPort),
      [`${p}LOG_LEVEL`]: 'warn',
    };
    e[`${p}METRICS_PORT`] = String(this.metricsPort);
    if (this.name === 'delta-calculator') e['FLEET_DELTA_PROJECT_EVERY'] = '250ms';
    // Every service that computes views (all but the change log) runs with the deployment's strategies.
    if (this.name !== 'change-log') e[`${p}STRATEGIES`] = JSON.stringify(this.spec.strategies);
    // The operator token (a deployment keeps it in a Secret): every service's operator requests, reads
    // as well as changes (conflicts, records, critical operations, dead letters, groups, status, verify).
    e[`${p}OPERATOR_TOKEN`] = HARNESS_OPERATOR_TOKEN;
    if (this.name === 'change-log') {
      const keyFile = join(this.spec.logDir, 'coordinator.key');
      if (!existsSync(keyFile)) writeFileSync(keyFile, HARNESS_COORDINATOR_KEYS.privateKey, { mode: 0o600 });
      e[`${p}SIGNING_KEY_FILE`] = keyFile;
    }
    if (this.name === 'conflict-resolver') {
      e[`${p}NODE_ID`] = `server-cr-${this.httpPort}`;
      e[`${p}SWEEP_INTERVAL`] = '2s';
      e[`${p}SWEEP_AGE`] = '3s';
    }
    return { ...e, ...this.spec.extra };
  }

  /** Starts the process and waits until its health endpoint answers 200. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.running) return;
    this.log ??= createWriteStream(this.logFile, { flags: 'a' });
    this.log.write(`\n===== start ${new Date().toISOString()}\n`);
    // FLEET_SERVICE_NODE_ARGS: node options for every service (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`,
    // which NODE_OPTIONS does not take); a profile is written when the service exits.
    const nodeArgs = (process.env['FLEET_SERVICE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    const proc = spawn(process.execPath, [...nodeArgs, '-r', './scripts/register.js', `apps/${this.name}/src/main.ts`], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: this.env() });
    this.proc = proc;
    this.starts++;
    const onData = (d: Buffer): void => {
      this.log?.write(d);
      this.tail = (this.tail + d.toString()).slice(-4000);
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    this.exitedP = new Promise((r) => proc.once('exit', () => r()));
    const early = this.exitedP.then(() => {
      throw new Error(`${this.name} exited during start (code ${String(proc.exitCode)}, signal ${String(proc.signalCode)}); log ${this.logFile}:\n${this.tail}`);
    });
    await Promise.race([eventually(() => this.ready(), timeoutMs, `${this.name} ready on :${this.httpPort}`), early]);
  }

  async ready(): Promise<boolean> {
    const r = await fetch(`http://127.0.0.1:${this.httpPort}${READY_PATH}`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    return r?.status === 200;
  }

  /** SIGKILL: a crash, no drain. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.proc?.kill('SIGKILL');
    await this.exitedP;
  }

  /** SIGTERM: drain and exit; SIGKILL after `timeoutMs`. Returns the exit code. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (!this.running) return this.proc?.exitCode ?? null;
    const p = this.proc as ChildProcess;
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    await this.exitedP;
    clearTimeout(t);
    return p.exitCode;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  /** Sum of a Prometheus series on this service's /metrics (0 when absent or unreachable). */
  async metric(series: string): Promise<number> {
    const text = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.text())
      .catch(() => '');
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(`${series}{`) || line.startsWith(`${series} `)) sum += Number(line.split(' ').pop());
    return sum;
  }

  closeLog(): void {
    this.log?.end();
    this.log = undefined;
  }
}

export interface Database {
  readonly url: string;
  readonly name: string;
  drop(): Promise<void>;
}

/** Runs `fn` on a PostgreSQL connection of its own, closed afterwards whatever happens. */
export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A new empty database on the server of `baseUrl` (default DATABASE_URL or the project's default). */
export async function createDatabase(prefix: string, baseUrl = process.env['DATABASE_URL'] ?? DEFAULT_DATABASE_URL): Promise<Database> {
  const base = new URL(baseUrl);
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  const admin = new URL(base);
  admin.pathname = '/postgres';
  const run = (sql: string): Promise<void> => withClient(admin.toString(), async (c) => void (await c.query(sql)));
  await run(`create database "${name}"`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), name, drop: () => run(`drop database if exists "${name}" with (force)`) };
}

/** The four services of one deployment, started in dependency order (change-log provisions the streams the others read). */
export class ServerStack {
  readonly services: Map<ServiceName, ServiceProcess>;

  private constructor(services: ServiceProcess[]) {
    this.services = new Map(services.map((s) => [s.name, s]));
  }

  static async create(base: Omit<ServiceSpec, 'name'>, extra: Partial<Record<ServiceName, Readonly<Record<string, string>>>> = {}): Promise<ServerStack> {
    const list: ServiceProcess[] = [];
    for (const name of SERVICE_NAMES) {
      const e = extra[name];
      list.push(await ServiceProcess.create({ ...base, name, ...(e === undefined ? {} : { extra: e }) }));
    }
    return new ServerStack(list);
  }

  get(name: ServiceName): ServiceProcess {
    return this.services.get(name) as ServiceProcess;
  }

  /** Base URL of the conflict-resolver's HTTP API (operator API: /conflicts, /records). */
  get operatorUrl(): string {
    return `http://127.0.0.1:${this.get('conflict-resolver').httpPort}`;
  }

  /** Base URL of the delta-calculator's HTTP API (PUT /agents/:id/groups). */
  get deltaUrl(): string {
    return `http://127.0.0.1:${this.get('delta-calculator').httpPort}`;
  }

  async start(): Promise<void> {
    // change-log first: it migrates the database and provisions the push and log streams.
    await this.get('change-log').start();
    await Promise.all(SERVICE_NAMES.filter((n) => n !== 'change-log').map((n) => this.get(n).start()));
  }

  async stop(): Promise<Record<ServiceName, number | null>> {
    const out = {} as Record<ServiceName, number | null>;
    await Promise.all(SERVICE_NAMES.map(async (n) => (out[n] = await this.get(n).stop())));
    for (const s of this.services.values()) s.closeLog();
    return out;
  }

  async kill(): Promise<void> {
    await Promise.all([...this.services.values()].map((s) => s.kill()));
    for (const s of this.services.values()) s.closeLog();
  }
}
