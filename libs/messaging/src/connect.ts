import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import type { NodeConnectionOptions } from '@nats-io/transport-node';
import { FleetError } from '@fleet/errors';

export interface NatsConnectOptions {
  /** `nats://host:port` URLs (or `host:port`); several for a cluster. */
  readonly servers: string | readonly string[];
  /** Client name shown by the server (`nats server report connections`): the service or agent id. */
  readonly name: string;
  /**
   * A `.creds` file (user JWT + nkey seed; each agent has its own: docs/nats-credentials.md). Read at
   * every (re)connect, so credentials replaced on disk are used from the next reconnect.
   */
  readonly credentialsFile?: string;
  /** Replies to this connection's requests come back under `<prefix>.`; an agent's permissions allow only its own. */
  readonly inboxPrefix?: string;
  /** TLS files (PEM); unset ones are not used. Any of them set: the connection must be TLS (docs/nats-credentials.md, "TLS"). */
  readonly tls?: NatsTlsFiles;
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  /** Wait between reconnect attempts (jitter is added on top). Default 1 s. */
  readonly reconnectTimeWaitMs?: number;
  /** Ping interval; 2 missed pings mark the connection stale and start a reconnect. Default 10 s. */
  readonly pingIntervalMs?: number;
  /**
   * Keep retrying the FIRST connect too, instead of failing. True by default: a service started
   * before NATS (Kubernetes starts them in any order) must come up once NATS does. An agent that
   * boots offline uses it too: it works from SQLite and syncs when the server is reachable.
   */
  readonly waitOnFirstConnect?: boolean;
  /** Request/JetStream API timeout. Default 5 s. */
  readonly timeoutMs?: number;
}

/**
 * TLS to NATS: `caFile`, the CA that signed the servers' certificates (a private CA; without it the
 * system's CAs are trusted); `certFile` and `keyFile`, this client's certificate and key, when the
 * servers verify clients (mutual TLS). A `tls://` URL alone asks for TLS with the system's CAs.
 */
export interface NatsTlsFiles {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

/**
 * A validated configuration's NATS files (libs/config `natsCredsFileOption`, `natsTlsOptions`) as
 * connect options: the one mapping services, the agent and fleetctl use.
 */
export function natsFilesOf(
  c: { readonly natsCaFile?: string | undefined; readonly natsCertFile?: string | undefined; readonly natsKeyFile?: string | undefined },
  credentialsFile: string | undefined,
): Pick<NatsConnectOptions, 'credentialsFile' | 'tls'> {
  return { ...(credentialsFile === undefined ? {} : { credentialsFile }), tls: { caFile: c.natsCaFile, certFile: c.natsCertFile, keyFile: c.natsKeyFile } };
}

/** Fails now, naming the file, rather than at every connect attempt. */
function checkReadable(what: string, path: string): void {
  try {
    readFileSync(path);
  } catch (e) {
    throw new FleetError('FLEET_CONFIG_001', `${what} ${path}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/**
 * The credentials and TLS files can be read, and a client certificate comes with its key: else
 * FLEET_CONFIG_001 naming the file. `connectNats` checks first; a process that connects in the
 * background (the agent: it keeps working offline) checks at start, so a wrong path stops it there.
 */
export function checkNatsFiles(o: Pick<NatsConnectOptions, 'credentialsFile' | 'tls'>): void {
  if (o.credentialsFile !== undefined) checkReadable('NATS credentials file', o.credentialsFile);
  const { caFile, certFile, keyFile } = o.tls ?? {};
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new FleetError('FLEET_CONFIG_001', `NATS TLS: a client certificate needs its key and a key its certificate (${certFile === undefined ? 'certificate' : 'key'} file not set)`);
  }
  if (caFile !== undefined) checkReadable('NATS TLS CA file', caFile);
  if (certFile !== undefined) checkReadable('NATS TLS certificate file', certFile);
  if (keyFile !== undefined) checkReadable('NATS TLS key file', keyFile);
}

/**
 * The one way services and the agent connect to NATS: reconnect forever (with jittered backoff),
 * since an agent may be offline for days and a service must survive a NATS restart; JetStream
 * consumers resume on their own after a reconnect (see consumer.ts).
 */
export async function connectNats(options: NatsConnectOptions): Promise<NatsConnection> {
  const opts: NodeConnectionOptions = {
    servers: typeof options.servers === 'string' ? options.servers : [...options.servers],
    name: options.name,
    maxReconnectAttempts: -1,
    reconnect: true,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 1000,
    reconnectJitter: 500,
    pingInterval: options.pingIntervalMs ?? 10_000,
    maxPingOut: 2,
    waitOnFirstConnect: options.waitOnFirstConnect ?? true,
    timeout: options.timeoutMs ?? 5000,
    // Keep trying after the server refuses the credentials twice: the file is read again at every
    // attempt, so a host whose credentials are replaced (or re-admitted) reconnects without a restart.
    ignoreAuthErrorAbort: true,
  };
  checkNatsFiles(options);
  const creds = options.credentialsFile;
  if (creds !== undefined) opts.authenticator = credsAuthenticator(() => new Uint8Array(readFileSync(creds)));
  const { caFile, certFile, keyFile } = options.tls ?? {};
  if (caFile !== undefined || certFile !== undefined) {
    opts.tls = { ...(caFile === undefined ? {} : { caFile }), ...(certFile === undefined ? {} : { certFile }), ...(keyFile === undefined ? {} : { keyFile }) };
  }
  if (options.inboxPrefix !== undefined) opts.inboxPrefix = options.inboxPrefix;
  if (options.user !== undefined) opts.user = options.user;
  if (options.pass !== undefined) opts.pass = options.pass;
  if (options.token !== undefined) opts.token = options.token;
  try {
    return await connect(opts);
  } catch (e) {
    throw new FleetError('FLEET_INFRA_001', `cannot connect to NATS at ${String(options.servers)}`, { cause: e });
  }
}
