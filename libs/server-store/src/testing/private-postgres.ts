/**
 * A private PostgreSQL cluster on a spare port, for tests that must configure PostgreSQL
 * (`max_prepared_transactions` for two-phase commit: the shared server's is 0) or crash and restart it.
 * `initdb` into a temporary directory (as the `postgres` user when run as root: PostgreSQL refuses to
 * run as root), `pg_ctl start`, trust authentication on 127.0.0.1 only. Uses the newest installed
 * PostgreSQL (`/usr/lib/postgresql/<v>/bin`, which `npm run setup` installs on a fresh machine).
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@fleet/messaging/src/test-support';

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))) : [];
  versions.sort((a, b) => Number(a) - Number(b));
  const v = versions[versions.length - 1];
  if (v === undefined) throw new Error(`no PostgreSQL server binaries under ${root} (npm run setup installs them)`);
  return join(root, v, 'bin');
}

export class PrivatePostgres {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly bin: string,
    private readonly asPostgres: boolean,
  ) {}

  /** `settings`: extra `-c name=value` server settings. */
  static async start(settings: Readonly<Record<string, string | number>> = {}): Promise<PrivatePostgres> {
    const bin = binDir();
    const asPostgres = process.getuid?.() === 0;
    const dir = mkdtempSync(join(tmpdir(), 'fleet-pg-'));
    if (asPostgres) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(dir, uid, gid);
    }
    const pg = new PrivatePostgres(await freePort(), dir, bin, asPostgres);
    pg.run('initdb', ['-D', pg.data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
    const opts = { listen_addresses: '127.0.0.1', port: pg.port, unix_socket_directories: dir, fsync: 'off', ...settings };
    pg.options = Object.entries(opts).map(([k, v]) => `-c ${k}=${String(v)}`).join(' ');
    pg.ctl('start');
    return pg;
  }

  private options = '';

  private get data(): string {
    return join(this.dir, 'data');
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** A database of its own in this cluster; returns its URL. */
  createDatabase(name: string): string {
    this.run('psql', ['-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', 'postgres', '-qAtc', `create database "${name}"`]);
    return `postgres://postgres@127.0.0.1:${this.port}/${name}`;
  }

  /** A crash: `pg_ctl stop -m immediate` (no checkpoint, recovery from WAL at the next start), then start. */
  crashAndRestart(): void {
    this.run('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', 'stop']);
    this.ctl('start');
  }

  stop(): void {
    try {
      this.run('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', 'stop']);
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  private ctl(verb: 'start'): void {
    this.run('pg_ctl', ['-D', this.data, '-l', join(this.dir, 'log'), '-o', this.options, '-w', '-t', '60', verb]);
  }

  private run(tool: string, args: readonly string[]): string {
    const path = join(this.bin, tool);
    const [cmd, argv] = this.asPostgres ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, [...args]];
    return execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  }
}
