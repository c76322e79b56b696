/**
 * Test support (not part of the service): runs the change-log as a real child process,
 * `node -r ./scripts/register.js apps/change-log/src/main.ts`, configured by environment, so that
 * fault tests can SIGKILL it, SIGTERM it, and run two of them at once.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { eventually, freePort } from '@fleet/messaging/src/test-support';

const ROOT = join(__dirname, '..', '..', '..', '..');

export interface ServiceEnv {
  readonly databaseUrl: string;
  readonly natsUrl: string;
  readonly namespace: string;
  /** Any other FLEET_CHANGELOG_* / FLEET_* variables. */
  readonly extra?: Readonly<Record<string, string>>;
  /** Extra node options before the script (e.g. `--cpu-prof`, which NODE_OPTIONS does not accept). */
  readonly nodeArgs?: readonly string[];
}

export class ServiceProcess {
  private output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    private readonly proc: ChildProcess,
    readonly httpPort: number,
    readonly metricsPort: number,
    readonly name: string,
  ) {
    proc.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts the service and waits until /health/ready answers 200. */
  static async start(name: string, env: ServiceEnv): Promise<ServiceProcess> {
    const [httpPort, metricsPort] = [await freePort(), await freePort()];
    const proc = spawn(process.execPath, [...(env.nodeArgs ?? []), '-r', './scripts/register.js', 'apps/change-log/src/main.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'], // ipc: the service exits with this process (runService)
      env: {
        PATH: process.env['PATH'] ?? '',
        HOSTNAME: name,
        NO_COLOR: '1',
        FLEET_CHANGELOG_DATABASE_URL: env.databaseUrl,
        FLEET_CHANGELOG_NATS_URL: env.natsUrl,
        FLEET_CHANGELOG_NAMESPACE: env.namespace,
        FLEET_CHANGELOG_HTTP_PORT: String(httpPort),
        FLEET_CHANGELOG_METRICS_PORT: String(metricsPort),
        ...env.extra,
      },
    });
    const p = new ServiceProcess(proc, httpPort, metricsPort, name);
    const exitedEarly = p.exited.then((r) => {
      throw new Error(`${name} exited during start (${JSON.stringify(r)}):\n${p.log}`);
    });
    await Promise.race([eventually(() => p.ready(), 30_000, `${name} ready`), exitedEarly]);
    return p;
  }

  /**
   * Runs the service with exactly `env` (plus PATH) until it exits by itself, as for a start that
   * must be refused (bad configuration); no port is chosen for it. SIGKILLed after `timeoutMs`.
   */
  static async runToExit(env: Readonly<Record<string, string>>, timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
    const proc = spawn(process.execPath, ['-r', './scripts/register.js', 'apps/change-log/src/main.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '', NO_COLOR: '1', ...env },
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('close', (c, s) => resolve({ code: c, signal: s })));
    clearTimeout(timer);
    return { code, signal, stdout, stderr };
  }

  get log(): string {
    return this.output;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async ready(): Promise<boolean> {
    const r = await fetch(`http://127.0.0.1:${this.httpPort}/health/ready`).catch(() => undefined);
    return r?.status === 200;
  }

  /** The value of a Prometheus counter (summed over its series), 0 when absent. */
  async metric(series: string): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(`${series}{`) || line.startsWith(`${series} `)) sum += Number(line.split(' ').pop());
    return sum;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.proc.kill(sig);
  }

  /** SIGKILL and wait (cleanup, never graceful). */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}
