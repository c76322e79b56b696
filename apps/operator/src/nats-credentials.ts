/**
 * NATS credentials for the fleet (docs/nats-credentials.md): NATS's decentralized JWT authentication,
 * minted with the NATS project's own libraries (`@nats-io/jwt`, `@nats-io/nkeys`).
 *
 * An authority directory holds the operator, the system account and two accounts (key seeds and JWTs):
 * - `fleet`: the services and fleetctl, with JetStream; users per role (contracts'
 *   `serviceNatsPermissions`): `change-log.creds` (the coordinator of critical operations: everything),
 *   `service.creds` (the other three services: everything but the coordinator's subjects),
 *   `fleetctl.creds` (operator requests only);
 * - `hosts`: the agents, without JetStream; one user per host (`agents/<id>.creds`) allowed exactly
 *   contracts' `agentNatsPermissions`. The two are bridged by imports and exports (contracts'
 *   `agentAccountBridges`): a host's requests and pushes cross as service imports, so the server names
 *   their reply subjects on the fleet side and a host cannot aim a service's answer or JetStream's
 *   acknowledgement at a subject of its choosing (say `$JS.API.STREAM.PURGE.<stream>`).
 * `nats-auth.conf` (for nats-server: operator mode, the accounts preloaded in a memory resolver) and the
 * namespace the authority was made for complete it. Retiring a host revokes its user keys in the hosts
 * account's JWT (`revokeAgent`); nats-server applies it on a reload and closes that host's connections.
 *
 * Seeds are secrets: files holding one are written 0600 and never overwritten (a second `init` refuses).
 */
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Algorithms, createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds, fromSeed } from '@nats-io/jwt';
import type { Account, KeyPair, Permissions } from '@nats-io/jwt';
import { agentAccountBridges, agentNatsPermissions, isAgentId, isSubjectToken, serviceNatsPermissions, type NatsPermissions } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What the authority directory holds (file names). */
export const AUTHORITY_FILES = {
  operatorSeed: 'operator.nk',
  operatorJwt: 'operator.jwt',
  systemSeed: 'system.nk',
  systemJwt: 'system.jwt',
  fleetSeed: 'fleet.nk',
  fleetJwt: 'fleet.jwt',
  hostsSeed: 'hosts.nk',
  hostsJwt: 'hosts.jwt',
  namespace: 'namespace',
  serverConfig: 'nats-auth.conf',
  coordinatorCreds: 'change-log.creds',
  serviceCreds: 'service.creds',
  operatorCreds: 'fleetctl.creds',
  agents: 'agents',
} as const;

interface Authority {
  readonly dir: string;
  readonly ns: string;
  readonly operator: KeyPair;
  readonly system: KeyPair;
  readonly fleet: KeyPair;
  readonly hosts: KeyPair;
  /** The hosts account's revocations (user public key -> unix seconds), from its current JWT. */
  readonly revocations: Record<string, number>;
}

const NO_LIMITS = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 } as const;

/** The fleet account: JetStream without limits of its own (the server's and the streams' apply); the hosts' requests come in, nudges and the coordinator's requests go out. */
function fleetAccountClaims(a: Authority): Partial<Account> {
  const b = agentAccountBridges(a.ns);
  return {
    limits: { ...NO_LIMITS, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    exports: [...b.hostRequests.map((subject) => ({ name: subject, subject, type: 'service' as const })), { name: b.nudges, subject: b.nudges, type: 'stream' as const }],
    imports: [{ name: b.coordinatorRequests, subject: b.coordinatorRequests, account: a.hosts.getPublicKey(), type: 'service' as const }],
  };
}

/** The hosts account: no JetStream (nothing a host publishes can reach a stream's API); the bridges the other way, and the revocations. */
function hostsAccountClaims(a: Authority): Partial<Account> {
  const b = agentAccountBridges(a.ns);
  const fleet = a.fleet.getPublicKey();
  return {
    limits: { ...NO_LIMITS },
    imports: [...b.hostRequests.map((subject) => ({ name: subject, subject, account: fleet, type: 'service' as const })), { name: b.nudges, subject: b.nudges, account: fleet, type: 'stream' as const }],
    exports: [{ name: b.coordinatorRequests, subject: b.coordinatorRequests, type: 'service' as const }],
    ...(Object.keys(a.revocations).length === 0 ? {} : { revocations: a.revocations }),
  };
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600); // whatever the umask
}

function seedText(kp: KeyPair): string {
  return `${dec.decode(kp.getSeed())}\n`;
}

function readSeed(dir: string, file: string): KeyPair {
  const path = join(dir, file);
  try {
    return fromSeed(enc.encode(readFileSync(path, 'utf8').trim()));
  } catch (e) {
    throw new FleetError('FLEET_CONFIG_001', `NATS authority ${dir}: cannot read ${file} (run \`fleetctl nats init --dir ${dir}\` first): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function jwtPayload(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** The authority in `dir`; `ns`, when given, must be the namespace it was made for. */
function loadAuthority(dir: string, ns?: string): Authority {
  const hosts = readSeed(dir, AUTHORITY_FILES.hostsSeed);
  const made = readFileSync(join(dir, AUTHORITY_FILES.namespace), 'utf8').trim();
  if (ns !== undefined && ns !== made) throw new FleetError('FLEET_CONFIG_001', `NATS authority ${dir} was made for namespace ${made}, not ${ns} (its accounts name the subjects)`);
  const jwt = readFileSync(join(dir, AUTHORITY_FILES.hostsJwt), 'utf8').trim();
  const nats = jwtPayload(jwt)['nats'] as { revocations?: Record<string, number> } | undefined;
  return {
    dir,
    ns: made,
    operator: readSeed(dir, AUTHORITY_FILES.operatorSeed),
    system: readSeed(dir, AUTHORITY_FILES.systemSeed),
    fleet: readSeed(dir, AUTHORITY_FILES.fleetSeed),
    hosts,
    revocations: { ...(nats?.revocations ?? {}) },
  };
}

/** nats-server's part of the configuration: operator mode, the accounts preloaded (include it from the server's config). */
function serverConfigText(operatorJwt: string, system: KeyPair, accounts: ReadonlyArray<readonly [KeyPair, string]>): string {
  return [
    '# NATS authorization of the fleet: written by `fleetctl nats` (docs/nats-credentials.md). Include it',
    '# from nats-server.conf; after `fleetctl nats revoke`, reload the server (nats-server --signal reload).',
    `operator: ${operatorJwt}`,
    `system_account: ${system.getPublicKey()}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    ...accounts.map(([kp, jwt]) => `  ${kp.getPublicKey()}: ${jwt}`),
    '}',
    '',
  ].join('\n');
}

/** Writes both accounts' JWTs (the hosts' with its revocations) and `nats-auth.conf`. */
async function writeAccounts(a: Authority): Promise<void> {
  const opts = { signer: a.operator, algorithm: Algorithms.v2 };
  const fleetJwt = await encodeAccount('fleet', a.fleet, fleetAccountClaims(a), opts);
  const hostsJwt = await encodeAccount('hosts', a.hosts, hostsAccountClaims(a), opts);
  writeFileSync(join(a.dir, AUTHORITY_FILES.fleetJwt), `${fleetJwt}\n`);
  writeFileSync(join(a.dir, AUTHORITY_FILES.hostsJwt), `${hostsJwt}\n`);
  const read = (f: string) => readFileSync(join(a.dir, f), 'utf8').trim();
  writeFileSync(
    join(a.dir, AUTHORITY_FILES.serverConfig),
    serverConfigText(read(AUTHORITY_FILES.operatorJwt), a.system, [
      [a.system, read(AUTHORITY_FILES.systemJwt)],
      [a.fleet, fleetJwt],
      [a.hosts, hostsJwt],
    ]),
  );
}

async function userCreds(account: KeyPair, name: string, permissions: Partial<Permissions>): Promise<{ creds: string; publicKey: string }> {
  const user = createUser();
  const jwt = await encodeUser(name, user, account, permissions, { algorithm: Algorithms.v2 });
  return { creds: dec.decode(fmtCreds(jwt, user)), publicKey: user.getPublicKey() };
}

/** contracts' permissions as a user JWT states them (`resp`: one reply per request received). */
export function jwtPermissions(p: NatsPermissions): Partial<Permissions> {
  const side = (x: NatsPermissions['pub']) => ({ ...(x.allow === undefined ? {} : { allow: [...x.allow] }), ...(x.deny === undefined ? {} : { deny: [...x.deny] }) });
  return { pub: side(p.pub), sub: side(p.sub), ...(p.allowResponses ? { resp: { max: 1, ttl: 0 } } : {}) };
}

/**
 * Makes a new authority for namespace `ns` in `dir` (created if missing): operator, system, fleet and
 * hosts accounts, the server's `nats-auth.conf`, and the server side's users. Refuses when `dir`
 * already holds one (seeds are never replaced).
 */
export async function initAuthority(dir: string, ns: string): Promise<{ files: string[] }> {
  if (!isSubjectToken(ns)) throw new FleetError('FLEET_CONFIG_001', `namespace ${JSON.stringify(ns)} is not a NATS subject token`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(join(dir, AUTHORITY_FILES.operatorSeed))) {
    throw new FleetError('FLEET_CONFIG_001', `${dir} already holds a NATS authority (${AUTHORITY_FILES.operatorSeed}); its keys are never replaced`);
  }
  const operator = createOperator();
  const system = createAccount();
  const a: Authority = { dir, ns, operator, system, fleet: createAccount(), hosts: createAccount(), revocations: {} };
  const operatorJwt = await encodeOperator('fleet-sync', operator, { system_account: system.getPublicKey() }, { algorithm: Algorithms.v2 });
  const systemJwt = await encodeAccount('SYS', system, {}, { signer: operator, algorithm: Algorithms.v2 });
  writeSecret(join(dir, AUTHORITY_FILES.operatorSeed), seedText(operator));
  writeSecret(join(dir, AUTHORITY_FILES.systemSeed), seedText(system));
  writeSecret(join(dir, AUTHORITY_FILES.fleetSeed), seedText(a.fleet));
  writeSecret(join(dir, AUTHORITY_FILES.hostsSeed), seedText(a.hosts));
  writeFileSync(join(dir, AUTHORITY_FILES.operatorJwt), `${operatorJwt}\n`);
  writeFileSync(join(dir, AUTHORITY_FILES.systemJwt), `${systemJwt}\n`);
  writeFileSync(join(dir, AUTHORITY_FILES.namespace), `${ns}\n`);
  await writeAccounts(a);
  mkdirSync(join(dir, AUTHORITY_FILES.agents), { recursive: true, mode: 0o700 });
  for (const [file, role] of [
    [AUTHORITY_FILES.coordinatorCreds, 'coordinator'],
    [AUTHORITY_FILES.serviceCreds, 'service'],
    [AUTHORITY_FILES.operatorCreds, 'operator'],
  ] as const) {
    writeSecret(join(dir, file), (await userCreds(a.fleet, `fleet-${role}`, jwtPermissions(serviceNatsPermissions(ns, role)))).creds);
  }
  return { files: Object.values(AUTHORITY_FILES).map((f) => join(dir, f)) };
}

/**
 * Issues `agents/<agentId>.creds`: a user of the hosts account allowed exactly `agentNatsPermissions`
 * for the authority's namespace (`ns`, when given, must be it). Issuing again gives a new key; the old
 * one stays valid until revoked. The key is recorded before the file is written, so `revoke` knows
 * every key that was ever handed out.
 */
export async function issueAgentCreds(dir: string, agentId: string, ns?: string): Promise<{ file: string; publicKey: string }> {
  if (!isAgentId(agentId)) throw new FleetError('FLEET_CONFIG_001', `agent id ${JSON.stringify(agentId)} is not an agent id ([A-Za-z0-9_-], 1-128, not "server")`);
  const a = loadAuthority(dir, ns);
  const { creds, publicKey } = await userCreds(a.hosts, `agent-${agentId}`, jwtPermissions(agentNatsPermissions(a.ns, agentId)));
  const agents = join(dir, AUTHORITY_FILES.agents);
  mkdirSync(agents, { recursive: true, mode: 0o700 });
  appendFileSync(join(agents, `${agentId}.keys`), `${publicKey}\n`, { mode: 0o600 });
  const file = join(agents, `${agentId}.creds`);
  writeFileSync(file, creds, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { file, publicKey };
}

/**
 * Revokes every key issued to `agentId` (now) in the hosts account's JWT and rewrites `nats-auth.conf`;
 * nats-server applies it on its next reload and closes the host's connections. Returns the keys revoked.
 */
export async function revokeAgent(dir: string, agentId: string): Promise<string[]> {
  if (!isAgentId(agentId)) throw new FleetError('FLEET_CONFIG_001', `agent id ${JSON.stringify(agentId)} is not an agent id`);
  const a = loadAuthority(dir);
  const keysFile = join(dir, AUTHORITY_FILES.agents, `${agentId}.keys`);
  if (!existsSync(keysFile)) throw new FleetError('FLEET_CONFIG_001', `no credentials were issued to ${agentId} from ${dir}`);
  const keys = readFileSync(keysFile, 'utf8').split('\n').filter((k) => k !== '');
  const now = Math.floor(Date.now() / 1000);
  for (const k of keys) a.revocations[k] = now;
  await writeAccounts(a);
  return keys;
}

/** The agents credentials were issued to, from the authority directory. */
export function issuedAgents(dir: string): string[] {
  const agents = join(dir, AUTHORITY_FILES.agents);
  return existsSync(agents) ? readdirSync(agents).filter((f) => f.endsWith('.keys')).map((f) => f.slice(0, -'.keys'.length)).sort() : [];
}

/**
 * `fleetctl nats <verb>` (no NATS connection: it works on the authority directory, `--dir`, default
 * FLEET_OPERATOR_NATS_DIR):
 * - `init`: make the authority for the namespace in use (FLEET_OPERATOR_NAMESPACE); prints what to do with its files;
 * - `agent <id> [<id>...]`: issue (or re-issue) each host's credentials, for the authority's namespace;
 * - `revoke <id> [<id>...]`: revoke every key issued to each host, then reload nats-server;
 * - `agents`: the hosts credentials were issued to, and whether they are revoked.
 */
export async function natsCommand(verb: string | undefined, args: readonly string[], o: { readonly dir: string; readonly namespace: string; readonly out: (line: string) => void }): Promise<number> {
  const { dir, namespace, out } = o;
  switch (verb) {
    case 'init': {
      await initAuthority(dir, namespace);
      out(`NATS authority made in ${dir} for namespace ${namespace} (keep it private: it holds the operator's and the accounts' seeds)`);
      out(`  ${join(dir, AUTHORITY_FILES.serverConfig)}   include it from nats-server.conf (operator mode, accounts preloaded)`);
      out(`  ${join(dir, AUTHORITY_FILES.coordinatorCreds)}   change-log's credentials (FLEET_CHANGELOG_CREDS_FILE)`);
      out(`  ${join(dir, AUTHORITY_FILES.serviceCreds)}   the other services' (FLEET_NATS_CREDS_FILE)`);
      out(`  ${join(dir, AUTHORITY_FILES.operatorCreds)}   fleetctl's: operator requests only (FLEET_OPERATOR_CREDS_FILE)`);
      out(`next: fleetctl nats agent <agent id> for each host (namespace ${namespace})`);
      return 0;
    }
    case 'agent': {
      if (args.length === 0) throw new FleetError('FLEET_CONFIG_001', 'nats agent: name at least one agent id');
      for (const id of args) {
        const { file, publicKey } = await issueAgentCreds(dir, id);
        out(`${id}\t${file}\t${publicKey}`);
      }
      return 0;
    }
    case 'revoke': {
      if (args.length === 0) throw new FleetError('FLEET_CONFIG_001', 'nats revoke: name at least one agent id');
      for (const id of args) out(`${id}\trevoked ${(await revokeAgent(dir, id)).join(', ')}`);
      out(`now reload every NATS server with the new ${join(dir, AUTHORITY_FILES.serverConfig)} (nats-server --signal reload): the hosts' connections are closed then`);
      return 0;
    }
    case 'agents': {
      const a = loadAuthority(dir);
      for (const id of issuedAgents(dir)) {
        const keys = readFileSync(join(dir, AUTHORITY_FILES.agents, `${id}.keys`), 'utf8').split('\n').filter((k) => k !== '');
        const revoked = keys.filter((k) => a.revocations[k] !== undefined).length;
        out(`${id}\t${keys.length} key(s) issued\t${revoked === keys.length ? 'revoked' : revoked > 0 ? `${revoked} revoked` : 'active'}`);
      }
      return 0;
    }
    default:
      throw new FleetError('FLEET_CONFIG_001', `nats: expected init, agent, revoke or agents, not ${JSON.stringify(verb ?? '')}`);
  }
}
