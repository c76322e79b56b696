/**
 * NATS credentials for the fleet (docs/nats-credentials.md): NATS's decentralized JWT authentication,
 * minted with the NATS project's own libraries (`@nats-io/jwt`, `@nats-io/nkeys`).
 *
 * An authority directory holds the operator, the system account and the fleet account (key seeds and
 * JWTs), `nats-auth.conf` for nats-server (operator mode, the accounts preloaded in a memory resolver),
 * and the credentials it issued: `service.creds` for the four server services and fleetctl (no
 * restrictions: they run in the cluster) and `agents/<id>.creds`, one per host, with exactly
 * contracts' `agentNatsPermissions` (its own subjects and inbox, nothing of another agent's).
 * Retiring a host revokes its user key in the fleet account's JWT (`revokeAgent`); nats-server applies it
 * on a reload (`nats-server --signal reload`, or a restart) and closes that host's connections.
 *
 * Seeds are secrets: files holding one are written 0600 and never overwritten (a second `init` refuses).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Algorithms, createAccount, createOperator, createUser, encodeAccount, encodeOperator, encodeUser, fmtCreds, fromSeed } from '@nats-io/jwt';
import type { Account, KeyPair, Permissions } from '@nats-io/jwt';
import { agentNatsPermissions, isAgentId, type NatsPermissions } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';

const FLEET_ACCOUNT = 'fleet';
const SYSTEM_ACCOUNT = 'SYS';
const enc = new TextEncoder();
const dec = new TextDecoder();

/** What the authority directory holds (file names). */
export const AUTHORITY_FILES = {
  operatorSeed: 'operator.nk',
  operatorJwt: 'operator.jwt',
  systemSeed: 'system.nk',
  systemJwt: 'system.jwt',
  accountSeed: 'fleet.nk',
  accountJwt: 'fleet.jwt',
  serverConfig: 'nats-auth.conf',
  serviceCreds: 'service.creds',
  agents: 'agents',
} as const;

interface Authority {
  readonly dir: string;
  readonly operator: KeyPair;
  readonly system: KeyPair;
  readonly account: KeyPair;
  /** The fleet account's revocations (user public key -> unix seconds), from its current JWT. */
  readonly revocations: Record<string, number>;
}

/** The fleet account: JetStream enabled without limits of its own (the server's and the streams' apply). */
function fleetAccountClaims(revocations: Record<string, number>): Partial<Account> {
  return {
    limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    ...(Object.keys(revocations).length === 0 ? {} : { revocations }),
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

function loadAuthority(dir: string): Authority {
  const account = readSeed(dir, AUTHORITY_FILES.accountSeed);
  const jwt = readFileSync(join(dir, AUTHORITY_FILES.accountJwt), 'utf8').trim();
  const nats = jwtPayload(jwt)['nats'] as { revocations?: Record<string, number> } | undefined;
  return { dir, operator: readSeed(dir, AUTHORITY_FILES.operatorSeed), system: readSeed(dir, AUTHORITY_FILES.systemSeed), account, revocations: { ...(nats?.revocations ?? {}) } };
}

/** nats-server's part of the configuration: operator mode, both accounts preloaded (include it from the server's config). */
function serverConfigText(operatorJwt: string, systemJwt: string, accountJwt: string, systemPub: string, accountPub: string): string {
  return [
    '# NATS authorization of the fleet: written by `fleetctl nats` (docs/nats-credentials.md). Include it',
    '# from nats-server.conf; after `fleetctl nats revoke`, reload the server (nats-server --signal reload).',
    `operator: ${operatorJwt}`,
    `system_account: ${systemPub}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${systemPub}: ${systemJwt}`,
    `  ${accountPub}: ${accountJwt}`,
    '}',
    '',
  ].join('\n');
}

async function writeAccount(a: Authority): Promise<void> {
  const accountJwt = await encodeAccount(FLEET_ACCOUNT, a.account, fleetAccountClaims(a.revocations), { signer: a.operator, algorithm: Algorithms.v2 });
  writeFileSync(join(a.dir, AUTHORITY_FILES.accountJwt), `${accountJwt}\n`);
  const read = (f: string) => readFileSync(join(a.dir, f), 'utf8').trim();
  writeFileSync(
    join(a.dir, AUTHORITY_FILES.serverConfig),
    serverConfigText(read(AUTHORITY_FILES.operatorJwt), read(AUTHORITY_FILES.systemJwt), accountJwt, a.system.getPublicKey(), a.account.getPublicKey()),
  );
}

async function userCreds(a: Authority, name: string, permissions: Partial<Permissions> | undefined): Promise<{ creds: string; publicKey: string }> {
  const user = createUser();
  const jwt = await encodeUser(name, user, a.account, permissions ?? {}, { algorithm: Algorithms.v2 });
  return { creds: dec.decode(fmtCreds(jwt, user)), publicKey: user.getPublicKey() };
}

/** contracts' permissions as a user JWT states them (`resp`: one reply per request received). */
export function jwtPermissions(p: NatsPermissions): Partial<Permissions> {
  return { pub: { allow: [...p.pub.allow] }, sub: { allow: [...p.sub.allow] }, ...(p.allowResponses ? { resp: { max: 1, ttl: 0 } } : {}) };
}

/**
 * Makes a new authority in `dir` (created if missing): operator, system and fleet accounts, the server's
 * `nats-auth.conf`, and `service.creds`. Refuses when `dir` already holds one (seeds are never replaced).
 */
export async function initAuthority(dir: string): Promise<{ files: string[] }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(join(dir, AUTHORITY_FILES.operatorSeed))) {
    throw new FleetError('FLEET_CONFIG_001', `${dir} already holds a NATS authority (${AUTHORITY_FILES.operatorSeed}); its keys are never replaced`);
  }
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const operatorJwt = await encodeOperator('fleet-sync', operator, { system_account: system.getPublicKey() }, { algorithm: Algorithms.v2 });
  const systemJwt = await encodeAccount(SYSTEM_ACCOUNT, system, {}, { signer: operator, algorithm: Algorithms.v2 });
  writeSecret(join(dir, AUTHORITY_FILES.operatorSeed), seedText(operator));
  writeSecret(join(dir, AUTHORITY_FILES.systemSeed), seedText(system));
  writeSecret(join(dir, AUTHORITY_FILES.accountSeed), seedText(account));
  writeFileSync(join(dir, AUTHORITY_FILES.operatorJwt), `${operatorJwt}\n`);
  writeFileSync(join(dir, AUTHORITY_FILES.systemJwt), `${systemJwt}\n`);
  const a: Authority = { dir, operator, system, account, revocations: {} };
  await writeAccount(a);
  mkdirSync(join(dir, AUTHORITY_FILES.agents), { recursive: true, mode: 0o700 });
  writeSecret(join(dir, AUTHORITY_FILES.serviceCreds), (await userCreds(a, 'fleet-services', undefined)).creds);
  return { files: Object.values(AUTHORITY_FILES).map((f) => join(dir, f)) };
}

/**
 * Issues `agents/<agentId>.creds`: a user of the fleet account allowed exactly `agentNatsPermissions(ns,
 * agentId)`. Issuing again replaces the file with a new key; the old one stays valid until revoked.
 */
export async function issueAgentCreds(dir: string, ns: string, agentId: string): Promise<{ file: string; publicKey: string }> {
  if (!isAgentId(agentId)) throw new FleetError('FLEET_CONFIG_001', `agent id ${JSON.stringify(agentId)} is not an agent id ([A-Za-z0-9_-], 1-128, not "server")`);
  const a = loadAuthority(dir);
  const { creds, publicKey } = await userCreds(a, `agent-${agentId}`, jwtPermissions(agentNatsPermissions(ns, agentId)));
  const agents = join(dir, AUTHORITY_FILES.agents);
  mkdirSync(agents, { recursive: true, mode: 0o700 });
  const file = join(agents, `${agentId}.creds`);
  writeFileSync(file, creds, { mode: 0o600 });
  chmodSync(file, 0o600);
  // Every key ever issued to the agent, so that a revocation covers them all.
  writeFileSync(join(agents, `${agentId}.keys`), `${publicKey}\n`, { flag: 'a', mode: 0o600 });
  return { file, publicKey };
}

/**
 * Revokes every key issued to `agentId` (now) in the fleet account's JWT and rewrites `nats-auth.conf`;
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
  await writeAccount(a);
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
 * - `init`: make the authority; prints what to do with its files;
 * - `agent <id> [<id>...]`: issue (or re-issue) each host's credentials, for the namespace in use;
 * - `revoke <id> [<id>...]`: revoke every key issued to each host, then reload nats-server;
 * - `agents`: the hosts credentials were issued to, and whether they are revoked.
 */
export async function natsCommand(verb: string | undefined, args: readonly string[], o: { readonly dir: string; readonly namespace: string; readonly out: (line: string) => void }): Promise<number> {
  const { dir, namespace, out } = o;
  switch (verb) {
    case 'init': {
      await initAuthority(dir);
      out(`NATS authority made in ${dir} (keep it private: it holds the operator's and the fleet account's seeds)`);
      out(`  ${join(dir, AUTHORITY_FILES.serverConfig)}   include it from nats-server.conf (operator mode, accounts preloaded)`);
      out(`  ${join(dir, AUTHORITY_FILES.serviceCreds)}   the services' and fleetctl's credentials (FLEET_NATS_CREDS_FILE, FLEET_OPERATOR_CREDS_FILE)`);
      out(`next: fleetctl nats agent <agent id> for each host (namespace ${namespace})`);
      return 0;
    }
    case 'agent': {
      if (args.length === 0) throw new FleetError('FLEET_CONFIG_001', 'nats agent: name at least one agent id');
      for (const id of args) {
        const { file, publicKey } = await issueAgentCreds(dir, namespace, id);
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
