import { FleetError } from '@fleet/errors';

/**
 * The sync-health score of one agent, and of the fleet: pure functions, no I/O, no clock. The
 * inputs are what the seed's `SyncHealthMonitor.check_sync_health` gathers (lag since the last
 * successful sync, queue size, failed operations, conflict rate over 24 h, consistency
 * violations); the caller reads them (agent: its SQLite outbox and scheduler state; server: the
 * change log and the agent's cursor) and this file only weighs them.
 *
 * The score starts at 100 and loses a penalty per signal. Each penalty is 0 at or below its
 * target, grows linearly to its weight at its limit, and stays there. The weights add up to 100:
 *
 * | signal | target (no penalty) | limit (full penalty) | weight | why this weight |
 * |---|---|---|---|---|
 * | sync lag (the worse of: since the last successful sync, the oldest unsent change's wait) | 5 min | 24 h | 30 | staleness is what operators feel first; a day-old host is as stale as it gets for "recent" |
 * | pending operations | 100 | 10 000 | 20 | a backlog means data not yet on the server; coalescing keeps it bounded, so 10k is a lot |
 * | failed operations (pushes failed in a row) | 0 | 20 | 15 | a few failures are retries doing their job; 20 in a row is a broken path |
 * | conflict rate | 1 % | 20 % | 15 | conflicts are resolved deterministically, but a high rate means writers fight over records |
 * | consistency violations | 0 | 10 | 20 | the first violation costs 10 at once: it means verified convergence failed |
 *
 * Status: `healthy` at 80 or more, `degraded` from 50, `unhealthy` below 50; and three caps
 * regardless of the score: any consistency violation caps the status at `degraded` (data differs
 * and must be repaired), 20 failed pushes in a row make it at least `degraded` (a broken push path),
 * and a sync lag (either direction) at or above 24 h makes it `unhealthy`.
 *
 * Every penalty and cap is monotone in its input, so a worse input never gives a better score or
 * a better status (the property tests check it).
 */

export interface SyncHealthInput {
  /** Seconds since the last successful sync; `Infinity` for an agent that never synced. */
  readonly syncLagSeconds: number;
  /**
   * Seconds the oldest change not yet acknowledged by the server has waited: the push direction's lag
   * (0, or absent, when nothing waits: an idle host is not behind). The lag signal takes the worse of the two.
   */
  readonly pushLagSeconds?: number;
  /** Changes waiting to be pushed (the outbox after coalescing; changes waiting for a retry are in it). */
  readonly pendingOperations: number;
  /** Push attempts that failed in a row (a failed pull shows as lag: no pull gets through). */
  readonly failedOperations: number;
  /** Conflicts / total operations over the window (the seed uses 24 h); 0..1, higher is clamped. */
  readonly conflictRate: number;
  /** Merkle buckets that differed after sync claimed convergence. */
  readonly consistencyViolations: number;
}

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

export interface SyncHealth {
  /** 0..100, an integer; 100 is perfect. */
  readonly score: number;
  readonly status: HealthStatus;
  /** One line per signal that cost points or capped the status, worst first. Empty when perfect. */
  readonly reasons: readonly string[];
}

interface Signal {
  readonly name: 'syncLag' | 'pendingOperations' | 'failedOperations' | 'conflictRate' | 'consistencyViolations';
  /** The signal's value (monotone in the input fields it reads). */
  readonly value: (input: SyncHealthInput) => number;
  readonly target: number;
  readonly limit: number;
  readonly weight: number;
  /** A penalty paid in full as soon as the signal exceeds its target (a step, still monotone). */
  readonly floor?: number;
  readonly describe: (value: number, penalty: number, input: SyncHealthInput) => string;
}

const DAY = 86_400;

/** The push direction is the one behind: its lag is what the lag signal and the 24 h cap name. */
const pushBehind = (i: SyncHealthInput): boolean => (i.pushLagSeconds ?? 0) > i.syncLagSeconds;
const lagOf = (i: SyncHealthInput): number => Math.max(i.syncLagSeconds, i.pushLagSeconds ?? 0);

export const HEALTH_SIGNALS: readonly Signal[] = [
  {
    name: 'syncLag',
    value: lagOf,
    target: 300,
    limit: DAY,
    weight: 30,
    describe: (v, p, i) => (pushBehind(i) ? `oldest unsent change waiting ${fmt(v)}s, over the 300s target (-${fmt(p)})` : `sync lag ${fmt(v)}s over the 300s target (-${fmt(p)})`),
  },
  { name: 'pendingOperations', value: (i) => i.pendingOperations, target: 100, limit: 10_000, weight: 20, describe: (v, p) => `${fmt(v)} changes pending push, over the 100 target (-${fmt(p)})` },
  { name: 'failedOperations', value: (i) => i.failedOperations, target: 0, limit: 20, weight: 15, describe: (v, p) => `${fmt(v)} failed pushes in a row (-${fmt(p)})` },
  { name: 'conflictRate', value: (i) => i.conflictRate, target: 0.01, limit: 0.2, weight: 15, describe: (v, p) => `conflict rate ${fmt(v * 100)}% over the 1% target (-${fmt(p)})` },
  { name: 'consistencyViolations', value: (i) => i.consistencyViolations, target: 0, limit: 10, weight: 20, floor: 10, describe: (v, p) => `${fmt(v)} consistency violations (-${fmt(p)})` },
];

/** `degradedFailures`: failed pushes in a row from which the status is at least degraded (the failed-operations limit). */
export const HEALTH_THRESHOLDS = { healthy: 80, degraded: 50, unhealthyLagSeconds: DAY, degradedFailures: 20 } as const;

const RANK: Readonly<Record<HealthStatus, number>> = { healthy: 0, degraded: 1, unhealthy: 2 };

/** Orders statuses: higher is worse. */
export function statusRank(s: HealthStatus): number {
  return RANK[s];
}

function worse(a: HealthStatus, b: HealthStatus): HealthStatus {
  return RANK[a] >= RANK[b] ? a : b;
}

function fmt(n: number): string {
  return Number.isFinite(n) ? String(Math.round(n * 100) / 100) : String(n);
}

function penalty(s: Signal, value: number): number {
  if (value <= s.target) return 0;
  const floor = s.floor ?? 0;
  const fraction = Math.min(1, (value - s.target) / (s.limit - s.target));
  return floor + (s.weight - floor) * fraction;
}

function statusOfScore(score: number): HealthStatus {
  if (score >= HEALTH_THRESHOLDS.healthy) return 'healthy';
  if (score >= HEALTH_THRESHOLDS.degraded) return 'degraded';
  return 'unhealthy';
}

const INPUT_FIELDS = ['syncLagSeconds', 'pushLagSeconds', 'pendingOperations', 'failedOperations', 'conflictRate', 'consistencyViolations'] as const;

function validate(input: SyncHealthInput): void {
  for (const field of INPUT_FIELDS) {
    const v: unknown = input[field];
    if (v === undefined && field === 'pushLagSeconds') continue;
    // Infinity is allowed (an agent that never synced has an infinite lag); NaN and negatives are bugs.
    if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
      throw new FleetError('FLEET_OBS_001', `${field} = ${String(v)}`, { details: { field } });
    }
  }
}

/** The sync-health score of one agent (see the table above). Throws FLEET_OBS_001 on NaN or negative input. */
export function syncHealthScore(input: SyncHealthInput): SyncHealth {
  validate(input);
  const costs: { penalty: number; reason: string }[] = [];
  for (const s of HEALTH_SIGNALS) {
    const v = s.value(input);
    const p = penalty(s, v);
    if (p > 0) costs.push({ penalty: p, reason: s.describe(v, p, input) });
  }
  const total = costs.reduce((sum, c) => sum + c.penalty, 0);
  // Math.round is monotone, so rounding keeps "worse input, never a better score".
  const score = Math.max(0, Math.min(100, Math.round(100 - total)));
  costs.sort((a, b) => b.penalty - a.penalty);
  const reasons = costs.map((c) => c.reason);

  let status = statusOfScore(score);
  if (input.consistencyViolations > 0 && status === 'healthy') {
    status = 'degraded';
    reasons.push('consistency violations cap the status at degraded');
  }
  if (input.failedOperations >= HEALTH_THRESHOLDS.degradedFailures && status === 'healthy') {
    status = 'degraded';
    reasons.push(`${fmt(input.failedOperations)} failed pushes in a row (>= ${HEALTH_THRESHOLDS.degradedFailures}): degraded at least`);
  }
  const lag = lagOf(input);
  if (lag >= HEALTH_THRESHOLDS.unhealthyLagSeconds && status !== 'unhealthy') {
    status = 'unhealthy';
    reasons.push(pushBehind(input) ? `oldest unsent change waiting ${fmt(lag)}s (>= 24h): unhealthy` : `no successful sync for ${fmt(lag)}s (>= 24h): unhealthy`);
  }
  return { score, status, reasons };
}

export interface FleetHealth extends SyncHealth {
  readonly agents: number;
  readonly byStatus: Readonly<Record<HealthStatus, number>>;
}

export interface FleetHealthOptions {
  /** Fraction of unhealthy agents above which the fleet is unhealthy. Default 0.10. */
  readonly unhealthyFraction?: number;
  /** Fraction of non-healthy (degraded or unhealthy) agents above which the fleet is degraded. Default 0.05. */
  readonly degradedFraction?: number;
}

/**
 * The fleet's health from its agents' scores. The fleet score is the mean agent score (how good
 * sync is on average); the status is not taken from the mean, because a mean hides a few dead
 * agents among thousands: the fleet is `unhealthy` when more than 10 % of agents are unhealthy,
 * `degraded` when more than 5 % are not healthy (or when the mean score alone says so), else
 * `healthy`. An empty fleet is healthy with score 100. Monotone: lowering any agent's score or
 * worsening its status never improves the fleet's.
 */
export function fleetHealth(perAgent: readonly Pick<SyncHealth, 'score' | 'status'>[], options: FleetHealthOptions = {}): FleetHealth {
  const unhealthyFraction = options.unhealthyFraction ?? 0.1;
  const degradedFraction = options.degradedFraction ?? 0.05;
  const byStatus: Record<HealthStatus, number> = { healthy: 0, degraded: 0, unhealthy: 0 };
  let sum = 0;
  for (const a of perAgent) {
    if (Number.isNaN(a.score) || a.score < 0 || a.score > 100) {
      throw new FleetError('FLEET_OBS_001', `agent score ${String(a.score)} is outside 0..100`);
    }
    byStatus[a.status] += 1;
    sum += a.score;
  }
  const agents = perAgent.length;
  if (agents === 0) return { score: 100, status: 'healthy', reasons: [], agents, byStatus };

  const score = Math.round(sum / agents);
  const reasons: string[] = [];
  const unhealthy = byStatus.unhealthy / agents;
  const notHealthy = (byStatus.unhealthy + byStatus.degraded) / agents;
  let status = statusOfScore(score);
  if (status !== 'healthy') reasons.push(`mean agent score ${score}`);
  if (unhealthy > unhealthyFraction) {
    status = 'unhealthy';
    reasons.push(`${fmt(unhealthy * 100)}% of agents unhealthy (> ${fmt(unhealthyFraction * 100)}%)`);
  } else if (notHealthy > degradedFraction) {
    status = worse(status, 'degraded');
    reasons.push(`${fmt(notHealthy * 100)}% of agents not healthy (> ${fmt(degradedFraction * 100)}%)`);
  }
  return { score, status, reasons, agents, byStatus };
}

/** An agent's push side as its latest pull reported it (`PullRequest.health`, protocol 2), with when it arrived. */
export interface PushReport {
  /** When the server received it (ms since the epoch, the server's clock). */
  readonly at: number;
  /** Unsent changes queued in its outbox. */
  readonly outbox: number;
  /** How long the oldest of them had waited when it reported (ms, measured on the agent's clock). */
  readonly oldestUnsentAgeMs: number;
  /** Of those, the changes a push already failed to deliver. */
  readonly retryQueue: number;
  /** Push attempts failed in a row. */
  readonly failedPushes: number;
}

/**
 * What the server knows of one agent (delta-calculator's `agent_pulls`, change-log's `origin_progress`);
 * times in ms since the epoch, null when it never happened.
 */
export interface ServerAgentFacts {
  /** The latest pull page that reached the end of the agent's scopes (nothing more to pull as of its read). */
  readonly caughtUpAt: number | null;
  /** Its first recorded pull: an agent still on its first (long) pull is out of date since then, not forever. */
  readonly firstPulledAt: number | null;
  /** Buckets its latest Merkle exchange found differing; null when it never verified. */
  readonly verifyDiffs: number | null;
  /** Its latest pull page of any kind (with `push`: a report older than it is stale). */
  readonly pulledAt?: number | null;
  /** Its latest push-side report; null or absent when it never sent one (an agent of protocol 1). */
  readonly push?: PushReport | null;
}

/**
 * The report the score uses: the latest one, unless a later pull carried none (the agent went back to a
 * build that does not report, or its store could not tell): figures that are no longer renewed are left out.
 */
export function currentPushReport(f: Pick<ServerAgentFacts, 'pulledAt' | 'push'>): PushReport | undefined {
  const r = f.push ?? undefined;
  if (r === undefined) return undefined;
  return f.pulledAt === undefined || f.pulledAt === null || r.at >= f.pulledAt ? r : undefined;
}

/**
 * The sync-health input the SERVER can vouch for (docs/observability.md, "Server-side score"):
 * - `syncLagSeconds`: since the latest pull that left the agent caught up (or, if it never caught up,
 *   since its first pull; `Infinity` when it never pulled). Pulls are the agent's heartbeat: the sync
 *   manager pulls on every nudge and on its schedule, idle or not. The time since the last push is not a
 *   lag (an idle host pushes nothing and is healthy), so it is shown beside the score, not scored;
 * - `pushLagSeconds`, `pendingOperations`, `failedOperations`: from the agent's latest push-side report
 *   (its pulls carry it: `currentPushReport`): the oldest unsent change's wait, the outbox, the pushes
 *   failed in a row. The wait is as of the report (the agent reports with every pull, and an agent that
 *   stopped pulling is scored by its pull lag). 0 without a report (an agent of protocol 1: the host's
 *   own metrics and `agent status` show its backlog);
 * - `consistencyViolations`: buckets its latest Merkle exchange found differing;
 * - `conflictRate`: 0, conflict rates per agent are not kept.
 * So the server-side score ranges 15..100; the caps (a lag of 24 h either way is unhealthy, 20 failed
 * pushes in a row or a violation make it degraded at least) apply.
 */
export function serverSyncHealthInput(f: ServerAgentFacts, nowMs: number): SyncHealthInput {
  const since = f.caughtUpAt ?? f.firstPulledAt;
  const push = currentPushReport(f);
  return {
    syncLagSeconds: since === null ? Number.POSITIVE_INFINITY : Math.max(0, (nowMs - since) / 1000),
    pushLagSeconds: push === undefined || push.outbox === 0 ? 0 : push.oldestUnsentAgeMs / 1000,
    pendingOperations: push?.outbox ?? 0,
    failedOperations: push?.failedPushes ?? 0,
    conflictRate: 0,
    consistencyViolations: f.verifyDiffs ?? 0,
  };
}

/** `syncHealthScore` of `serverSyncHealthInput`. */
export function serverSyncHealth(f: ServerAgentFacts, nowMs: number): SyncHealth {
  return syncHealthScore(serverSyncHealthInput(f, nowMs));
}

/** The `n` worst agents: lowest score first, then worst status, then id (a stable order for operators). */
export function worstAgents<T extends { readonly agentId: string; readonly health: Pick<SyncHealth, 'score' | 'status'> }>(agents: readonly T[], n: number): T[] {
  return [...agents]
    .sort((a, b) => a.health.score - b.health.score || statusRank(b.health.status) - statusRank(a.health.status) || (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0))
    .slice(0, n);
}
