/**
 * fleetctl `status`, `agents`, `verify` and `replay` (docs/operations.md): each asks the service that
 * owns the data over its NATS operator API and prints the answer (or, with `--json`, the replies).
 */
import {
  decodeAgentGroupsReply,
  decodeAgentShowReply,
  decodeAgentSyncReply,
  decodeFleetHealthReply,
  decodeAgentsListReply,
  decodeDeadLettersActionReply,
  decodeDeadLetterShowReply,
  decodeDeadLettersListReply,
  decodeStatusReply,
  decodeVerifyReply,
  HEALTH_REPORT_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  SERVER_SERVICES,
} from '@fleet/contracts';
import type { AgentProgress, AgentSync, DeadLetterActionResult, FleetHealthResponse, DeadLetterItem, Reply, ServerService, StatusResponse, VerifyCheck, VerifyResponse } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import { ask, codeOf, durationOption, nonNegativeInt, operatorAuth, positiveInt, stringOption, table, usage, valueOf } from './cli';
import type { Ctx, Options } from './cli';

/** Exit codes of status and verify (beside main.ts's): unhealthy or different is 1, a service not answering or not ready 69, a service refusing the operator token 77. */
export const EXIT_UNHEALTHY = 1;
export const EXIT_UNAVAILABLE = 69;
export const EXIT_REFUSED = 77;

const describeError = (e: unknown): string => (isFleetError(e) ? `${typeof e.details?.['remoteCode'] === 'string' ? e.details['remoteCode'] : e.code} ${e.message}` : e instanceof Error ? e.message : String(e));

/**
 * A sync-health question asked at protocol 2, whose answer carries each agent's push side (`push`), and
 * asked again at 1 when the service is older and refuses 2 (FLEET_DECODE_003): it then answers without it.
 */
export async function askWithPush<T>(send: (protocol: number) => Promise<Uint8Array>, decode: (bytes: Uint8Array) => Reply<T>): Promise<T> {
  const first = decode(await send(HEALTH_REPORT_PROTOCOL_VERSION));
  return valueOf(!first.ok && first.error.code === 'FLEET_DECODE_003' ? decode(await send(PROTOCOL_VERSION)) : first);
}

/** An agent's push side as its pulls last reported it (`not reported`: an agent of protocol 1, or an older delta-calculator). */
function pushText(a: AgentSync): string {
  const p = a.push;
  if (p === undefined || p === null) return 'not reported';
  const waiting = p.outbox === 0 ? 'outbox empty' : `outbox ${p.outbox} (oldest unsent ${seconds(p.oldestUnsentAgeMs / 1000)}, ${p.retryQueue} waiting for a retry)`;
  return `${waiting}, ${p.failedPushes} failed push(es) in a row${p.stale ? ', stale: later pulls reported none, not scored' : ''}`;
}

// --- status -------------------------------------------------------------------------------------------

type Answer = { service: ServerService; ok: true; status: StatusResponse } | { service: ServerService; ok: false; error: string; code: string | undefined };

function seconds(s: number | null): string {
  if (s === null) return '-';
  return s < 120 ? `${Math.round(s * 10) / 10}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export async function status(c: Ctx, args: readonly string[], v: Options): Promise<number> {
  if (args.length > 0) usage(`status takes no argument (got ${JSON.stringify(args[0])})`);
  const maxLagAgeMs = durationOption('--max-lag-age', stringOption(v, 'max-lag-age'), { min: 0, max: 7 * 86_400_000 }) ?? 60_000;
  const maxDeadLetters = nonNegativeInt('--max-dead-letters', stringOption(v, 'max-dead-letters')) ?? 0;
  const minScore = nonNegativeInt('--min-health-score', stringOption(v, 'min-health-score'));
  if (minScore !== undefined && minScore > 100) usage('--min-health-score is between 0 and 100');
  const worst = nonNegativeInt('--worst', stringOption(v, 'worst')) ?? 5;
  if (worst > 100) usage('--worst is at most 100');
  const action = 'read the fleet status';
  operatorAuth(c, action); // no token configured: refused here (77), before asking anyone
  // A status must not hang for a minute on one stuck replica: at most 10 s per service, asked at once.
  const timeoutMs = Math.min(c.config.timeout, 10_000);
  const [answers, health] = await Promise.all([
    Promise.all(
      SERVER_SERVICES.map(async (service): Promise<Answer> => {
        try {
          return { service, ok: true, status: valueOf(decodeStatusReply(await ask(c, c.s.statusApi(service), {}, action, timeoutMs))) };
        } catch (e) {
          return { service, ok: false, error: describeError(e), code: codeOf(e) };
        }
      }),
    ),
    // The fleet's sync-health score (delta-calculator, from the agents' pulls and verifications).
    // valueOf in its own step: an error reply (a refused token, say) lands in the handler below.
    askWithPush((protocol) => ask(c, c.s.fleetHealthApi, { protocol, worst }, action, timeoutMs), decodeFleetHealthReply)
      .then(
        (value) => ({ ok: true as const, value }),
        (e: unknown) => ({ ok: false as const, error: describeError(e), code: codeOf(e) }),
      ),
  ]);

  // A service that refuses the token answered: it is up, but says nothing until the token is right.
  const refused: string[] = [];
  const unavailable: string[] = [];
  const unhealthy: string[] = [];
  const rows: string[][] = [['SERVICE', 'STATE', 'INSTANCE', 'DETAIL']];
  for (const a of answers) {
    if (!a.ok) {
      if (a.code === 'FLEET_AUTH_004') {
        refused.push(`${a.service} refused the operator token: set FLEET_OPERATOR_TOKEN to the token the services are configured with`);
        rows.push([a.service, 'REFUSED', '-', a.error]);
        continue;
      }
      unavailable.push(`${a.service} does not answer (${a.error})`);
      rows.push([a.service, 'DOWN', '-', a.error]);
      continue;
    }
    const st = a.status;
    const f = st.facts;
    const down = st.ready.checks.filter((ch) => ch.status === 'down').map((ch) => `${ch.name}: ${ch.error ?? 'down'}`);
    if (st.ready.status !== 'ready') unavailable.push(`${a.service} not ready${st.ready.draining ? ' (draining)' : ''}${down.length > 0 ? `: ${down.join('; ')}` : ''}`);
    if (st.factsError !== undefined) unavailable.push(`${a.service} cannot read its figures: ${st.factsError.code} ${st.factsError.message}`);
    const detail: string[] = [];
    if (f.headSeq !== undefined) detail.push(`log head seq ${f.headSeq}`);
    if (f.agents !== undefined) detail.push(`${f.agents} agent(s)`);
    if (f.openCriticalOperations !== undefined) detail.push(`${f.openCriticalOperations} critical operation(s) in progress`);
    if (f.projection !== undefined) {
      const p = f.projection;
      detail.push(`${p.name}: cursor ${p.cursor} of head ${p.headSeq}, lag ${p.lag} change(s)${p.lag > 0 ? `, oldest waiting ${seconds(p.oldestPendingSeconds)}` : ''}`);
      if (p.oldestPendingSeconds !== null && p.oldestPendingSeconds * 1000 > maxLagAgeMs) {
        unhealthy.push(`${a.service}: the ${p.name} projection is ${p.lag} change(s) behind the log, the oldest waiting ${seconds(p.oldestPendingSeconds)} (over ${seconds(maxLagAgeMs / 1000)})`);
      }
    }
    if (f.logHorizon !== undefined && f.logHorizon > 0) detail.push(`log compacted up to seq ${f.logHorizon}`);
    if (f.pendingConflicts !== undefined) detail.push(`${f.pendingConflicts} conflict(s) waiting for an operator`);
    if (st.factsError !== undefined) detail.push(`figures unavailable: ${st.factsError.code}`);
    rows.push([a.service, st.ready.status === 'ready' ? (down.length > 0 ? 'DEGRADED' : 'ready') : 'NOT READY', st.instance, detail.join('; ')]);
  }
  const dl = answers.find((a) => a.ok && a.service === 'change-log');
  const deadLetters = dl?.ok === true ? dl.status.facts.deadLetters : undefined;
  if (deadLetters !== undefined && deadLetters.messages > maxDeadLetters) {
    unhealthy.push(`${deadLetters.messages} dead letter(s) (over ${maxDeadLetters}): fleetctl replay list`);
  }
  // The score is judged only when asked (--min-health-score): without it a delta-calculator that cannot
  // score (an older one during an upgrade) leaves the score unknown, not the fleet unavailable.
  if (!health.ok) {
    if (health.code === 'FLEET_AUTH_004') {
      if (!refused.some((r) => r.startsWith('delta-calculator '))) refused.push(`delta-calculator refused the operator token for the fleet's sync health: set FLEET_OPERATOR_TOKEN to the token the services are configured with`);
    } else if (minScore !== undefined) unavailable.push(`delta-calculator cannot score the fleet's sync health (${health.error})`);
  } else if (minScore !== undefined && health.value.score < minScore) {
    unhealthy.push(`fleet sync-health score ${health.value.score} is below ${minScore} (${health.value.byStatus.unhealthy} unhealthy, ${health.value.byStatus.degraded} degraded of ${health.value.agents} agent(s)): fleetctl agents show <id>`);
  }
  const verdict = refused.length > 0 ? 'REFUSED' : unavailable.length > 0 ? 'UNAVAILABLE' : unhealthy.length > 0 ? 'UNHEALTHY' : 'HEALTHY';
  const code = refused.length > 0 ? EXIT_REFUSED : unavailable.length > 0 ? EXIT_UNAVAILABLE : unhealthy.length > 0 ? EXIT_UNHEALTHY : 0;
  const problems = [...refused, ...unavailable, ...unhealthy];

  if (c.json) {
    c.io.out(
      JSON.stringify(
        { verdict: verdict.toLowerCase(), problems, services: answers.map((a) => (a.ok ? a.status : { service: a.service, error: a.error })), health: health.ok ? health.value : { error: health.error } },
        null,
        2,
      ),
    );
    return code;
  }
  for (const l of table(rows)) c.io.out(l);
  const silent = (errorCode: string | undefined): string => (errorCode === 'FLEET_AUTH_004' ? 'refused the operator token' : 'did not answer');
  const changeLog = answers.find((a) => a.service === 'change-log');
  if (deadLetters === undefined) c.io.out(`dead letters: unknown (change-log ${silent(changeLog !== undefined && !changeLog.ok ? changeLog.code : undefined)})`);
  else {
    const by = Object.entries(deadLetters.bySubject).map(([subj, n]) => `${subj} ${n}`);
    c.io.out(`dead letters: ${deadLetters.messages}${deadLetters.messages > 0 ? ` (${by.join(', ')}; oldest ${deadLetters.oldestAt ?? '-'})` : ''}`);
  }
  if (health.ok) printFleetHealth(c, health.value);
  else c.io.out(`sync health: unknown (delta-calculator ${silent(health.code)})`);
  c.io.out(`${verdict}${problems.map((p) => `\n  - ${p}`).join('')}`);
  return code;
}

function printFleetHealth(c: Ctx, h: FleetHealthResponse): void {
  c.io.out(`sync health: ${h.score} ${h.status} (${h.agents} agent(s): ${h.byStatus.healthy} healthy, ${h.byStatus.degraded} degraded, ${h.byStatus.unhealthy} unhealthy)${h.reasons.length > 0 ? `: ${h.reasons.join('; ')}` : ''}`);
  const shown = h.worst.filter((a) => a.health.score < 100 || a.health.status !== 'healthy');
  if (shown.length === 0) return;
  c.io.out('worst agents:');
  for (const a of shown) {
    // The push side only when something waits or fails (an idle host's empty outbox says nothing).
    const push = a.push !== undefined && a.push !== null && (a.push.outbox > 0 || a.push.failedPushes > 0) ? `  ${pushText(a)}` : '';
    c.io.out(`  ${a.agentId}  ${a.health.score} ${a.health.status}  last pull ${a.lastPullAt ?? 'never'}${push}${a.health.reasons.length > 0 ? `  ${a.health.reasons[0]}` : ''}`);
  }
}

// --- agents -------------------------------------------------------------------------------------------

/** Pulls, verifications and the sync-health score from delta-calculator; undefined (and a warning) when it does not answer. */
async function syncOf(c: Ctx, agentIds: readonly string[]): Promise<Record<string, AgentSync> | undefined> {
  if (agentIds.length === 0) return {};
  try {
    return (await askWithPush((protocol) => ask(c, c.s.agentSyncApi, { protocol, agentIds }, 'read pulls and sync health'), decodeAgentSyncReply)).agents;
  } catch (e) {
    if (codeOf(e) === 'FLEET_AUTH_004') throw e; // refused, not unavailable: exit 77 like every refusal
    c.io.err(`fleetctl: warning: pulls and sync health unavailable (delta-calculator: ${describeError(e)})`);
    return undefined;
  }
}

const scoreText = (a: AgentSync | undefined): string => (a === undefined ? '-' : `${a.health.score} ${a.health.status}`);

/** OUTBOX, OLDEST UNSENT, FAILED PUSHES of `agents list`: `?` when delta-calculator did not answer, `-` when the agent reported none (a stale report is marked `*`). */
function pushCells(a: AgentSync | null | undefined): string[] {
  if (a === undefined) return ['?', '?', '?'];
  const p = a?.push;
  if (p === undefined || p === null) return ['-', '-', '-'];
  const mark = p.stale ? '*' : '';
  return [`${p.outbox}${mark}`, p.outbox === 0 ? '-' : `${seconds(p.oldestUnsentAgeMs / 1000)}${mark}`, `${p.failedPushes}${mark}`];
}

/** Group memberships from delta-calculator; undefined (and a warning) when it does not answer: the rest of the listing still stands. */
async function groupsOf(c: Ctx, agentIds: readonly string[]): Promise<Record<string, string[]> | undefined> {
  if (agentIds.length === 0) return {};
  try {
    return valueOf(decodeAgentGroupsReply(await ask(c, c.s.agentGroupsApi, { agentIds }, 'read group memberships'))).groups;
  } catch (e) {
    if (codeOf(e) === 'FLEET_AUTH_004') throw e; // refused, not unavailable: exit 77 like every refusal
    c.io.err(`fleetctl: warning: group memberships unavailable (delta-calculator: ${describeError(e)})`);
    return undefined;
  }
}

export async function agents(c: Ctx, verb: string | undefined, args: readonly string[], v: Options): Promise<number> {
  if (verb === 'show') {
    const agentId = args[0] ?? usage('expected <agent id>');
    const progress = valueOf(decodeAgentShowReply(await ask(c, c.s.agentsApi('show'), { agentId }, 'show an agent')));
    const [groups, sync] = await Promise.all([groupsOf(c, [agentId]), syncOf(c, [agentId])]);
    const memberOf = groups?.[agentId];
    const pulls = sync?.[agentId];
    if (progress.agent === null && (memberOf === undefined || memberOf.length === 0) && pulls === undefined) {
      throw new FleetError('FLEET_OPS_001', `no agent ${JSON.stringify(agentId)}: the change log holds none of its changes${groups === undefined ? '' : ' and it has no group membership'}${sync === undefined ? '' : ', and it never pulled'}`);
    }
    const view = { agentId, log: progress.agent, groups: memberOf ?? null, sync: pulls ?? null };
    if (c.json) return c.io.out(JSON.stringify(view, null, 2)), 0;
    c.io.out(`agent ${agentId}`);
    if (progress.agent === null) c.io.out('  log: none of its changes (never pushed anything the log kept)');
    else {
      const a = progress.agent;
      c.io.out(`  last origin seq: ${a.lastOriginSeq}\n  changes logged: ${a.changes}\n  last log seq: ${a.lastSeq}\n  last change appended: ${a.lastAppendedAt}\n  last hlc: ${a.lastHlc}`);
    }
    c.io.out(`  groups: ${memberOf === undefined ? 'unknown (delta-calculator did not answer)' : memberOf.length === 0 ? '-' : memberOf.join(', ')}`);
    if (sync === undefined) c.io.out('  pulls: unknown (delta-calculator did not answer)');
    else if (pulls === undefined || pulls.lastPullAt === null) c.io.out('  pulls: none recorded');
    else {
      c.io.out(`  last pull: ${pulls.lastPullAt} (cursor ${pulls.pullFrom ?? '-'} -> ${pulls.pullTo ?? '-'}, log head ${pulls.headSeqAtPull ?? '-'}, behind ${pulls.behind ?? '-'} change(s))`);
      c.io.out(`  last caught up: ${pulls.caughtUpAt ?? 'never'}\n  first pull: ${pulls.firstPullAt ?? '-'}\n  pulls: ${pulls.pulls}`);
    }
    if (pulls !== undefined) {
      c.io.out(`  last verification: ${pulls.lastVerifiedAt === null ? 'never' : `${pulls.lastVerifiedAt}, ${pulls.verifyDifferences ?? 0} differing bucket(s)`}`);
      c.io.out(`  last push: ${pulls.lastPushAt ?? 'never'}`);
      c.io.out(`  push side: ${pushText(pulls)}${pulls.push === undefined || pulls.push === null ? '' : ` (reported ${pulls.push.reportedAt})`}`);
      c.io.out(`  sync health: ${pulls.health.score} ${pulls.health.status}${pulls.health.reasons.map((r) => `\n    - ${r}`).join('')}`);
    }
    return 0;
  }
  if (verb !== undefined && verb !== 'list') return usage(`unknown agents command ${JSON.stringify(verb)}`);
  if (args.length > 0) usage(`agents list takes no argument (got ${JSON.stringify(args[0])})`);
  const after = stringOption(v, 'after');
  const limit = positiveInt('--limit', stringOption(v, 'limit'));
  const page = valueOf(decodeAgentsListReply(await ask(c, c.s.agentsApi('list'), { ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }) }, 'list agents')));
  const ids = page.agents.map((a) => a.agentId);
  const [groups, sync] = await Promise.all([groupsOf(c, ids), syncOf(c, ids)]);
  if (c.json) {
    c.io.out(JSON.stringify({ agents: page.agents.map((a) => ({ ...a, groups: groups?.[a.agentId] ?? null, sync: sync?.[a.agentId] ?? null })), hasMore: page.hasMore, nextCursor: page.nextCursor }, null, 2));
    return 0;
  }
  if (page.agents.length === 0) c.io.out('no agents');
  else {
    const row = (a: AgentProgress): string[] => {
      const p = sync?.[a.agentId];
      return [
        a.agentId,
        String(a.lastOriginSeq),
        String(a.changes),
        String(a.lastSeq),
        a.lastAppendedAt,
        sync === undefined ? '?' : (p?.lastPullAt ?? '-'),
        sync === undefined ? '?' : p?.behind === null || p === undefined ? '-' : String(p.behind),
        ...pushCells(sync === undefined ? undefined : (p ?? null)),
        sync === undefined ? '?' : scoreText(p),
        groups === undefined ? '?' : (groups[a.agentId] ?? []).join(',') || '-',
      ];
    };
    const head = ['AGENT', 'LAST ORIGIN SEQ', 'CHANGES', 'LAST SEQ', 'LAST APPENDED', 'LAST PULL', 'BEHIND', 'OUTBOX', 'OLDEST UNSENT', 'FAILED PUSHES', 'SCORE', 'GROUPS'];
    for (const l of table([head, ...page.agents.map(row)])) c.io.out(l);
  }
  if (page.hasMore && page.nextCursor !== null) c.io.out(`more: fleetctl agents --after ${page.nextCursor}${limit === undefined ? '' : ` --limit ${limit}`}`);
  return 0;
}

// --- verify -------------------------------------------------------------------------------------------

const VERIFIED = [
  ['change-log', 'origins'],
  ['version-vector', 'records'],
  ['delta-calculator', 'record_states'],
] as const;

function printCheck(c: Ctx, service: string, ch: VerifyCheck): void {
  const what = ch.name === 'origins' ? `${ch.checked} origin(s)` : `${ch.checked} record(s)`;
  if (ch.skipped !== undefined) {
    c.io.out(`${ch.name} (${service}): SKIPPED: ${ch.skipped}`);
    return;
  }
  c.io.out(`${ch.name} (${service}): ${what} against ${ch.changesRead} logged change(s), cursor ${ch.cursor} of head ${ch.headSeq}: ${ch.differences === 0 ? 'OK' : `${ch.differences} DIFFERENCE(S)`}`);
  for (const d of ch.diffs) c.io.out(`  ${d.ref !== undefined ? `${d.ref.scope}/${d.ref.collection}/${d.ref.key}` : `origin ${d.origin ?? '?'}`}: ${d.why}`);
  if (ch.diffs.length < ch.differences) c.io.out(`  ... and ${ch.differences - ch.diffs.length} more (--max-diffs)`);
}

export async function verify(c: Ctx, args: readonly string[], v: Options): Promise<number> {
  if (args.length > 0) usage(`verify takes no argument (got ${JSON.stringify(args[0])})`);
  const maxDiffs = positiveInt('--max-diffs', stringOption(v, 'max-diffs'));
  if (maxDiffs !== undefined && maxDiffs > 1000) usage('--max-diffs is at most 1000');
  const body = maxDiffs === undefined ? {} : { maxDiffs };
  // One request per service at once; a service that does not answer fails the verify (exit 69).
  const replies: VerifyResponse[] = await Promise.all(VERIFIED.map(async ([service]) => valueOf(decodeVerifyReply(await ask(c, c.s.verifyApi(service), body, 'verify the projections')))));
  const verdict = verifyVerdict(replies.flatMap((r) => r.checks));
  if (c.json) c.io.out(JSON.stringify({ ok: verdict.ok, differences: verdict.differences, skipped: verdict.skipped, services: replies }, null, 2));
  else {
    for (const r of replies) for (const ch of r.checks) printCheck(c, r.service, ch);
    c.io.out(verdict.line);
  }
  return verdict.ok ? 0 : EXIT_UNHEALTHY;
}

/** The verdict of the checks: ok only when nothing differs and something was checked (every check skipped, the log compacted, verified nothing). */
export function verifyVerdict(checks: readonly Pick<VerifyCheck, 'name' | 'differences' | 'skipped'>[]): { ok: boolean; differences: number; skipped: string[]; line: string } {
  const differences = checks.reduce((n, ch) => n + ch.differences, 0);
  const skipped = checks.filter((ch) => ch.skipped !== undefined).map((ch) => ch.name);
  const nothingChecked = skipped.length === checks.length;
  const line =
    differences > 0
      ? `INCONSISTENT: ${differences} difference(s)`
      : nothingChecked
        ? `NOT VERIFIED: every check was skipped${skipped.length > 0 ? ` (${skipped.join(', ')})` : ''}`
        : `CONSISTENT: every projection equals the change log's fold${skipped.length > 0 ? ` (not checked: ${skipped.join(', ')})` : ''}`;
  return { ok: differences === 0 && !nothingChecked, differences, skipped, line };
}

// --- replay (dead letters) ----------------------------------------------------------------------------

function seqsOf(args: readonly string[]): number[] {
  const seqs = args.flatMap((a) => a.split(',')).filter((a) => a !== '').map((a) => positiveInt('<seq>', a) as number);
  if (seqs.length === 0) usage('name the dead letters by their sequence (fleetctl replay list shows them)');
  if (seqs.length > 100) usage('at most 100 dead letters at once');
  if (new Set(seqs).size !== seqs.length) usage('a sequence is named twice');
  return seqs;
}

function printDeadLetter(c: Ctx, d: DeadLetterItem): void {
  c.io.out(
    `${d.seq}\t${d.storedAt}\t${d.code ?? '-'}\t${d.originalSubject ?? '-'}${d.part === null ? '' : ` (part ${d.part})`}\t${d.reason ?? '-'}${d.notReplayable === undefined ? '' : `\t[not replayable: ${d.notReplayable}]`}`,
  );
}

function printResult(c: Ctx, r: DeadLetterActionResult): void {
  if (r.outcome === 'replayed') c.io.out(`${r.seq}\treplayed to ${r.subject} (${r.stream} seq ${r.streamSeq}${r.duplicate ? ', a duplicate of an earlier replay' : ''}); removed from the dead letters`);
  else if (r.outcome === 'discarded') c.io.out(`${r.seq}\tdiscarded`);
  else c.io.out(`${r.seq}\tFAILED ${r.error.code} ${r.error.message}`);
}

export async function replay(c: Ctx, verb: string | undefined, args: readonly string[], v: Options): Promise<number> {
  if (verb === 'list') {
    if (args.length > 0) usage(`replay list takes no argument (got ${JSON.stringify(args[0])})`);
    const after = nonNegativeInt('--after', stringOption(v, 'after'));
    const limit = positiveInt('--limit', stringOption(v, 'limit'));
    if (limit !== undefined && limit > 100) usage('--limit is at most 100');
    const page = valueOf(decodeDeadLettersListReply(await ask(c, c.s.deadLettersApi('list'), { ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }) }, 'list dead letters')));
    if (c.json) return c.io.out(JSON.stringify(page, null, 2)), 0;
    for (const d of page.items) printDeadLetter(c, d);
    if (page.items.length === 0) c.io.out('no dead letters');
    c.io.out(`${page.total} dead letter(s) in all${page.hasMore ? `; more: fleetctl replay list --after ${page.nextCursor}` : ''}`);
    return 0;
  }
  if (verb === 'show') {
    const seq = positiveInt('<seq>', args[0]) ?? usage('expected <seq>');
    const r = valueOf(decodeDeadLetterShowReply(await ask(c, c.s.deadLettersApi('show'), { seq }, 'show a dead letter')));
    c.io.out(JSON.stringify(r, null, 2));
    if (r.truncated !== undefined) c.io.err(`fleetctl: dead letter ${seq}: body cut to its first ${r.truncated.shownBytes} of ${r.truncated.bytes} bytes to fit under NATS max_payload`);
    return 0;
  }
  const discard = verb === 'discard';
  if (!discard && verb !== undefined && !/^[\d,]+$/.test(verb)) return usage(`unknown replay command ${JSON.stringify(verb)}`);
  const seqs = seqsOf(discard ? args : [...(verb === undefined ? [] : [verb]), ...args]);
  const reply = valueOf(decodeDeadLettersActionReply(await ask(c, c.s.deadLettersApi(discard ? 'discard' : 'replay'), { seqs }, `${discard ? 'discard' : 'replay'} dead letters`)));
  if (c.json) c.io.out(JSON.stringify(reply, null, 2));
  else for (const r of reply.results) printResult(c, r);
  const failed = reply.results.filter((r) => r.outcome === 'failed');
  return failed.length === 0 ? 0 : 1;
}
