/**
 * `fleetctl`, the operators' command line: the fleet's status, its agents, a consistency check of the
 * projections, the dead letters (fleet.ts), the manual conflict queue (conflict-resolver) and critical
 * operations (change-log's two-phase commit coordinator), over the services' NATS operator APIs.
 * `node -r ./scripts/register.js apps/operator/src/main.ts <command>`; wiring only: requests and
 * replies are the contracts' schemas.
 *
 * Exit codes (sysexits.h): 0 ok (a critical operation committed, the fleet healthy, the projections
 * consistent), 2 a critical operation aborted, 75 decided commit but not every host has acknowledged
 * yet (recovery finishes it), 64 usage, 78 configuration, 69 a service or NATS unreachable (status:
 * or not ready), 77 operator token missing or refused (every command sends it, reads too), 1 any other error the service answered (status: the fleet
 * unhealthy, or its sync-health score below --min-health-score; verify: differences; replay: a dead letter not replayed), 70 an internal error. Errors
 * print one line with the code.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeConfig, envDuration, loadConfig, runCommandLine } from '@fleet/config';
import {
  decodeConflictResolveReply,
  decodeConflictShowReply,
  decodeConflictsListReply,
  decodeCriticalListReply,
  decodeCriticalTxReply,
  OPERATOR_INBOX_PREFIX,
  subjects,
} from '@fleet/contracts';
import type { CriticalOperation, CriticalTxSummary, CriticalTxView } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import type { ErrorCode } from '@fleet/errors';
import { Messaging, natsFilesOf } from '@fleet/messaging';
import { ask, operatorAuth, positiveInt, stringOption, usage, UsageError, valueOf } from './cli';
import type { Ctx, Io, Options } from './cli';
import { operatorConfig } from './config';
import { agents, replay, status, verify } from './fleet';
import { natsCommand } from './nats-credentials';

export type { Io } from './cli';

const USAGE = `usage: fleetctl <command> [options]

commands:
  status [--max-lag-age 60s] [--max-dead-letters 0] [--min-health-score n] [--worst 5]
      every server service: answering and ready, log head, projection lag, manual queue, dead letters,
      the fleet's sync-health score (0..100) and its worst agents;
      exit 0 healthy, 1 unhealthy (a threshold passed: with --min-health-score, a fleet score below n),
      69 a service not answering or not ready
  agents [list] [--limit n] [--after <agent id>]      with last pull, behind and sync-health score
  agents show <agent id>
  verify [--max-diffs n]
      the projections (origins, records, record_states) against the change log, read-only;
      exit 0 consistent, 1 differences
  replay list [--limit n] [--after seq]
  replay show <seq>
  replay <seq> [<seq>...]           re-publish dead letters to their original subject
  replay discard <seq> [<seq>...]   drop dead letters for good
  conflicts list [--status pending|open|resolved|auto-resolved|superseded] [--limit n] [--after id]
  conflicts show <id>
  conflicts resolve <id> --take <origin> | --fields <json> [--unset f1,f2] (together, every contested field) | --deleted
  critical list [--state preparing|committing|aborting|committed|aborted] [--limit n]
  critical show <txid>
  critical certificate <name> --pem-file <file> --not-after <iso date> --agents a,b,... [--vote-timeout 10s]
  critical credential <name> --user <user> --hash <crypt hash> --agents a,b,... [--vote-timeout 10s]
  nats init [--dir <dir>]                 make the NATS authority: operator, accounts, nats-auth.conf, service.creds
  nats agent <agent id>... [--dir <dir>]  issue each host its own credentials (its subjects only)
  nats revoke <agent id>... [--dir <dir>] revoke a host's credentials (then reload nats-server)
  nats agents [--dir <dir>]               the hosts credentials were issued to
      (no NATS connection: works on the authority directory, --dir or FLEET_OPERATOR_NATS_DIR; docs/nats-credentials.md)

Every command but nats needs the operator token (FLEET_OPERATOR_TOKEN), reads as well as changes: without
it, or when a service refuses it, fleetctl exits 77 (FLEET_AUTH_004).

options: --json (print the service's reply as JSON), --help`;

const EXIT: Partial<Record<ErrorCode, number>> = { FLEET_CONFIG_001: 78, FLEET_INFRA_001: 69, FLEET_AUTH_004: 77 };

function agentsOf(v: string | undefined): string[] {
  const ids = (v ?? '').split(',').map((a) => a.trim()).filter((a) => a !== '');
  if (ids.length === 0) usage('--agents: name at least one agent (comma-separated)');
  return ids;
}

function printTx(t: CriticalTxView | CriticalTxSummary, io: Io): void {
  const hosts = 'hosts' in t ? t.hosts : t.participants.length - 1;
  io.out(`${t.txid}\t${t.state}\t${t.kind} ${t.name}\t${hosts} host(s) + server${t.reason === undefined ? '' : `\t${t.reason}`}`);
}

async function conflicts(c: Ctx, verb: string | undefined, args: readonly string[], v: Options): Promise<number> {
  const str = (k: string) => stringOption(v, k);
  if (verb === 'list') {
    const body = {
      ...(str('status') === undefined ? {} : { status: str('status') }),
      ...(str('limit') === undefined ? {} : { limit: positiveInt('--limit', str('limit')) }),
      ...(str('after') === undefined ? {} : { after: positiveInt('--after', str('after')) }),
    };
    const page = valueOf(decodeConflictsListReply(await ask(c, c.s.conflictsApi('list'), body, 'list conflicts')));
    if (c.json) return c.io.out(JSON.stringify(page, null, 2)), 0;
    for (const i of page.items) c.io.out(`${i.id}\t${i.status}\t${i.strategy}\t${i.ref.scope}/${i.ref.collection}/${i.ref.key}\t${i.detectedAt}`);
    if (page.items.length === 0) c.io.out('no conflicts');
    if (page.hasMore) c.io.out(`more: fleetctl conflicts list --after ${page.nextCursor}${str('status') === undefined ? '' : ` --status ${str('status')}`}`);
    return 0;
  }
  const id = positiveInt('<id>', args[0]) ?? usage('expected <id>');
  if (verb === 'show') {
    const r = valueOf(decodeConflictShowReply(await ask(c, c.s.conflictsApi('show'), { id }, 'show a conflict')));
    c.io.out(JSON.stringify(c.json ? r : r.item, null, 2));
    return 0;
  }
  if (verb === 'resolve') {
    const choices = [str('take') !== undefined, str('fields') !== undefined, v['deleted'] === true].filter(Boolean).length;
    if (choices !== 1) usage('resolve takes exactly one of --take <origin>, --fields <json>, --deleted');
    let choice: object;
    if (str('take') !== undefined) choice = { take: str('take') };
    else if (v['deleted'] === true) choice = { deleted: true };
    else {
      let fields: unknown;
      try {
        fields = JSON.parse(str('fields') as string);
      } catch {
        usage('--fields is not valid JSON');
      }
      const unset = str('unset')?.split(',').map((f) => f.trim()).filter((f) => f !== '');
      choice = { fields, ...(unset === undefined ? {} : { unset }) };
    }
    const r = valueOf(decodeConflictResolveReply(await ask(c, c.s.conflictsApi('resolve'), { id, choice }, 'resolve a conflict')));
    if (c.json) return c.io.out(JSON.stringify(r, null, 2)), 0;
    c.io.out(`conflict ${r.item.id} ${r.item.status}: resolution change ${r.change.changeId} logged at seq ${r.change.seq}`);
    if (r.announced === false) c.io.out('note: committed; its announcement failed and is pending (version-vector\'s log sweep projects it). Do not resolve it again.');
    return 0;
  }
  return usage(`unknown conflicts command ${JSON.stringify(verb ?? '')}`);
}

async function critical(c: Ctx, verb: string | undefined, args: readonly string[], v: Options): Promise<number> {
  const str = (k: string) => stringOption(v, k);
  if (verb === 'list') {
    const body = { ...(str('state') === undefined ? {} : { state: str('state') }), ...(str('limit') === undefined ? {} : { limit: positiveInt('--limit', str('limit')) }) };
    const r = valueOf(decodeCriticalListReply(await ask(c, c.s.criticalApi('list'), body, 'list critical operations')));
    if (c.json) return c.io.out(JSON.stringify(r, null, 2)), 0;
    for (const t of r.transactions) printTx(t, c.io);
    if (r.transactions.length === 0) c.io.out('no critical operations');
    return 0;
  }
  if (verb === 'show') {
    const txid = args[0] ?? usage('expected <txid>');
    const r = valueOf(decodeCriticalTxReply(await ask(c, c.s.criticalApi('show'), { txid }, 'show a critical operation')));
    c.io.out(JSON.stringify(c.json ? r : r.transaction, null, 2));
    return 0;
  }
  if (verb !== 'certificate' && verb !== 'credential') return usage(`unknown critical command ${JSON.stringify(verb ?? '')}`);
  const name = args[0] ?? usage('expected <name>');
  let operation: CriticalOperation;
  if (verb === 'certificate') {
    const file = str('pem-file') ?? usage('--pem-file is required');
    const notAfter = str('not-after') ?? usage('--not-after is required');
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (e) {
      usage(`--pem-file ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
    operation = { kind: 'certificate', name, value: { pem, notAfter } };
  } else {
    operation = { kind: 'credential', name, value: { user: str('user') ?? usage('--user is required'), hash: str('hash') ?? usage('--hash is required') } };
  }
  const agents = agentsOf(str('agents'));
  let voteTimeoutMs: number | undefined;
  if (str('vote-timeout') !== undefined) {
    const parsed = envDuration({ min: 100, max: 120_000 }).safeParse(str('vote-timeout'));
    if (!parsed.success) usage('--vote-timeout: expected a duration such as 500ms or 10s, between 100ms and 120s');
    voteTimeoutMs = parsed.data;
  }
  operatorAuth(c, 'begin a critical operation'); // refused here, before the long wait below, when no token is set
  const body = { operation, agents, ...(voteTimeoutMs === undefined ? {} : { voteTimeoutMs }) };
  // `begin` answers once decided and phase 2 was tried: the vote timeout (the service's default is
  // 10 s), then up to 5 s per round of 64 hosts. Wait for that, however short FLEET_OPERATOR_TIMEOUT is.
  const waitMs = Math.max(c.config.timeout, (voteTimeoutMs ?? 10_000) + Math.ceil(agents.length / 64) * 5000 + 15_000);
  let reply: Uint8Array;
  try {
    reply = await ask(c, c.s.criticalApi('begin'), body, 'begin a critical operation', waitMs);
  } catch (e) {
    if (!isFleetError(e) || e.code !== 'FLEET_INFRA_001') throw e;
    throw new FleetError('FLEET_INFRA_001', `${e.message}; if the coordinator received it, the operation may still complete: look for it with fleetctl critical list`, { cause: e });
  }
  const r = valueOf(decodeCriticalTxReply(reply));
  if (c.json) c.io.out(JSON.stringify(r, null, 2));
  else printTx(r.transaction, c.io);
  const state = r.transaction.state;
  return state === 'committed' ? 0 : state === 'aborted' || state === 'aborting' ? 2 : 75;
}

/** Runs one command; returns the exit code. Never throws. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let bus: Messaging | undefined;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...argv],
        allowPositionals: true,
        options: {
          json: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
          status: { type: 'string' },
          state: { type: 'string' },
          limit: { type: 'string' },
          after: { type: 'string' },
          take: { type: 'string' },
          fields: { type: 'string' },
          unset: { type: 'string' },
          deleted: { type: 'boolean' },
          'pem-file': { type: 'string' },
          'not-after': { type: 'string' },
          user: { type: 'string' },
          hash: { type: 'string' },
          agents: { type: 'string' },
          'vote-timeout': { type: 'string' },
          'max-lag-age': { type: 'string' },
          'max-dead-letters': { type: 'string' },
          'min-health-score': { type: 'string' },
          worst: { type: 'string' },
          'max-diffs': { type: 'string' },
          dir: { type: 'string' },
        },
      });
    } catch (e) {
      usage(e instanceof Error ? e.message : String(e));
    }
    const { values, positionals } = parsed;
    const [area, verb, ...args] = positionals;
    if (values.help === true || area === undefined) {
      io.out(USAGE);
      io.out('\nconfiguration (environment):\n');
      io.out(describeConfig(operatorConfig));
      return area === undefined && values.help !== true ? 64 : 0;
    }
    const AREAS = ['status', 'agents', 'verify', 'replay', 'conflicts', 'critical', 'nats'];
    if (!AREAS.includes(area)) usage(`unknown command ${JSON.stringify(area)}`);
    const config = loadConfig(operatorConfig, env);
    if (area === 'nats') {
      // Works on the authority directory only: no NATS connection, no operator token.
      const dir = stringOption(values, 'dir') ?? config.natsDir ?? usage('nats: name the authority directory (--dir or FLEET_OPERATOR_NATS_DIR)');
      return await natsCommand(verb, args, { dir, namespace: config.namespace, out: (line) => io.out(line) });
    }
    const s = subjects(config.namespace);
    bus = await Messaging.connect(
      // A command line fails at once when NATS is not there, rather than wait for it like a service.
      {
        servers: config.natsUrl,
        name: 'fleetctl',
        waitOnFirstConnect: false,
        // Its NATS user reads replies in this inbox only (contracts' serviceNatsPermissions, 'operator').
        inboxPrefix: OPERATOR_INBOX_PREFIX,
        ...natsFilesOf(config, config.credentialsFile),
      },
      s,
    ).catch((e: unknown) => {
      if (isFleetError(e, 'FLEET_CONFIG_001')) throw e; // a credentials or TLS file: configuration (78), not unavailable
      throw new FleetError('FLEET_INFRA_001', `NATS ${config.natsUrl.join(',')}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    });
    const c: Ctx = { bus, s, config, io, json: values.json === true };
    switch (area) {
      case 'status':
        return await status(c, positionals.slice(1), values);
      case 'agents':
        return await agents(c, verb, args, values);
      case 'verify':
        return await verify(c, positionals.slice(1), values);
      case 'replay':
        return await replay(c, verb, args, values);
      case 'conflicts':
        return await conflicts(c, verb, args, values);
      default:
        return await critical(c, verb, args, values);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`fleetctl: ${e.message}`);
      return 64;
    }
    if (isFleetError(e)) {
      const remote = e.details?.['remoteCode'];
      const code = typeof remote === 'string' ? remote : e.code;
      // The service refused the token fleetctl sent: say which one that was.
      const hint = typeof remote === 'string' && remote === 'FLEET_AUTH_004' ? ' (fleetctl sends FLEET_OPERATOR_TOKEN: it must be the token the service is configured with)' : '';
      io.err(`fleetctl: ${code} ${e.message}${hint}`);
      return EXIT[code as ErrorCode] ?? 1;
    }
    io.err(`fleetctl: FLEET_INTERNAL_001 internal error: ${e instanceof Error ? e.message : String(e)}`);
    return 70;
  } finally {
    await bus?.drain().catch(() => undefined);
  }
}

if (require.main === module) runCommandLine(main);
