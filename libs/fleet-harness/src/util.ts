import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function eventually<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000, what = 'condition', everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/**
 * A private `nats-server -js` on spare ports, with its own store directory and an HTTP monitoring
 * port (bytes in/out for the report). It can be SIGKILLed and restarted on the same port and store.
 */
export class PrivateNats {
  private proc: ChildProcess | undefined;
  readonly storeDir: string;

  private constructor(
    readonly port: number,
    readonly monitorPort: number,
  ) {
    this.storeDir = mkdtempSync(join(tmpdir(), 'fleet-nats-'));
  }

  static async start(): Promise<PrivateNats> {
    const n = new PrivateNats(await freePort(), await freePort());
    await n.startProcess();
    return n;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async startProcess(): Promise<void> {
    const bin = process.env['NATS_SERVER_BIN'] ?? '/usr/sbin/nats-server';
    this.proc = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), '-sd', this.storeDir], { stdio: 'ignore' });
    await eventually(() => canConnect(this.port), 15_000, `nats-server on ${this.port}`);
  }

  /** SIGKILL, as in a crash. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    this.proc = undefined;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.startProcess();
  }

  /** `/varz` counters: bytes and messages into and out of the server since it started. */
  async varz(): Promise<{ inBytes: number; outBytes: number; inMsgs: number; outMsgs: number } | undefined> {
    const v = (await fetch(`http://127.0.0.1:${this.monitorPort}/varz`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.json())
      .catch(() => undefined)) as { in_bytes: number; out_bytes: number; in_msgs: number; out_msgs: number } | undefined;
    return v === undefined ? undefined : { inBytes: v.in_bytes, outBytes: v.out_bytes, inMsgs: v.in_msgs, outMsgs: v.out_msgs };
  }

  async stop(): Promise<void> {
    await this.kill();
    if (!process.env['FLEET_KEEP_NATS_STORE']) rmSync(this.storeDir, { recursive: true, force: true });
  }
}

/** mulberry32: a small seeded PRNG; every random choice of a scenario comes from one, so a seed replays it. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** A child generator (its own stream), so one component's draws do not shift another's. */
  fork(): Prng {
    return new Prng(Math.floor(this.next() * 4294967296));
  }
  shuffle<T>(xs: readonly T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j] as T, a[i] as T];
    }
    return a;
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}
