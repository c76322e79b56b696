/**
 * Helpers for the integration tests of this lib and of the services on it (not exported from
 * index.ts: import them by path). Real NATS only: the shared server on 127.0.0.1:4222, or a private
 * `nats-server -js` on a spare port for tests that kill and restart it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import { subjects, type Subjects } from '@fleet/contracts';

export const SHARED_NATS = process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** A fresh namespace per test file, so files run in parallel on one server. */
export function testNamespace(prefix = 't'): Subjects {
  return subjects(`${prefix}${randomBytes(5).toString('hex')}`);
}

/** Deletes every stream of the namespace (its names all start with the upper-cased namespace). */
export async function deleteNamespaceStreams(jsm: JetStreamManager, s: Subjects): Promise<void> {
  const prefix = `${s.ns.toUpperCase().replace(/-/g, '_')}_`;
  for await (const name of jsm.streams.names()) {
    if (name.startsWith(prefix)) await jsm.streams.delete(name).catch(() => undefined);
  }
}

/** Every message of a stream, in order (small test streams only). */
export async function readStream(jsm: JetStreamManager, stream: string): Promise<StoredMsg[]> {
  const info = await jsm.streams.info(stream);
  const out: StoredMsg[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (m) out.push(m);
  }
  return out;
}

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

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no free port'))));
    });
  });
}

/**
 * A private `nats-server -js` on spare ports, with its own store directory and an HTTP monitoring
 * port, that a test may SIGKILL and restart on the same port and store (`FLEET_KEEP_NATS_STORE=1`
 * keeps the store after `stop()`, to inspect streams and consumers).
 */
export class PrivateNatsServer {
  private proc: ChildProcess | undefined;
  readonly storeDir: string;
  /** With `include`: the server runs from `nats-server.conf` here (JetStream in it too, so that a reload keeps it). */
  private readonly confDir: string | undefined;

  private constructor(
    readonly port: number,
    readonly monitorPort: number,
    include: string | undefined,
  ) {
    this.storeDir = mkdtempSync(join(tmpdir(), 'fleet-nats-'));
    if (include !== undefined) {
      this.confDir = mkdtempSync(join(tmpdir(), 'fleet-nats-conf-'));
      writeFileSync(join(this.confDir, 'included.conf'), include);
      writeFileSync(
        join(this.confDir, 'nats-server.conf'),
        `listen: 127.0.0.1:${port}\nhttp: 127.0.0.1:${monitorPort}\njetstream { store_dir: ${JSON.stringify(this.storeDir)} }\ninclude ./included.conf\n`,
      );
    }
  }

  /** `include`: nats-server configuration to add (e.g. the `nats-auth.conf` of `fleetctl nats init`). */
  static async start(options: { readonly include?: string } = {}): Promise<PrivateNatsServer> {
    const s = new PrivateNatsServer(await freePort(), await freePort(), options.include);
    await s.startProcess();
    return s;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async startProcess(): Promise<void> {
    const bin = process.env['NATS_SERVER_BIN'] ?? '/usr/sbin/nats-server';
    const args =
      this.confDir === undefined
        ? ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-m', String(this.monitorPort), '-sd', this.storeDir]
        : ['-c', join(this.confDir, 'nats-server.conf')];
    this.proc = spawn(bin, args, { stdio: 'ignore' });
    await eventually(() => canConnect(this.port), 15_000, `nats-server on ${this.port}`);
  }

  /** Replaces the included configuration and reloads it (SIGHUP), as an operator does after `fleetctl nats revoke`. */
  reload(include: string): void {
    if (this.confDir === undefined) throw new TypeError('reload: this server was started without an included configuration');
    writeFileSync(join(this.confDir, 'included.conf'), include);
    this.proc?.kill('SIGHUP');
  }

  /** SIGKILL: no clean shutdown, as in a crash. */
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
    if (this.confDir !== undefined) rmSync(this.confDir, { recursive: true, force: true });
  }
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
