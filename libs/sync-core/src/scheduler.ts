/**
 * When an agent syncs next, and how long it waits before retrying a failed push. Pure: the caller
 * passes the clock reading and a random source, and keeps the returned state.
 *
 * Adaptive interval (the seed's rules): base 60 s, within [10 s, 3600 s]; x0.8 after a sync that
 * moved changes, x1.2 after an idle one, and x1.5 while the network is slow (latency > 1000 ms).
 * Two departures from the seed, both deliberate:
 * - The seed multiplies the stored interval by 1.5 and never caps it, so a slow link ratchets the
 *   interval up on every sync (even busy ones: 0.8 x 1.5 = 1.2) and past the maximum, and it stays
 *   inflated after the link recovers. Here the stored interval follows only activity; the latency
 *   factor applies to the delay it produces, and that delay is capped too.
 * - Jitter. A fleet that lost its link together (a site outage, a server restart) reconnects
 *   together, and a deterministic schedule keeps it in lockstep for ever: every agent that saw the
 *   same history computes the same interval. Each delay is drawn uniformly within +-10% of the
 *   target (clamped to the bounds, so a bound never becomes a pile-up point), which spreads a wave
 *   of N agents over a fifth of the interval and keeps the average period on target. Full jitter
 *   ([0, target]) would spread more, but halves the mean period and lets agents sync at once; it is
 *   the right choice for retries (`backoffDelay`), not for a cadence operators reason about.
 */
import { FleetError } from '@fleet/errors';

/** Returns a number in [0, 1). Injected so that tests and replays are deterministic. */
export type RandomSource = () => number;

export interface SchedulerConfig {
  readonly baseMs: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Interval factor after a sync that moved changes (< 1: sync sooner). */
  readonly busyFactor: number;
  /** Interval factor after a sync that moved nothing (> 1: back off). */
  readonly idleFactor: number;
  /** Delay factor while the network is slow. */
  readonly slowFactor: number;
  /** Latency above which the network counts as slow. */
  readonly slowLatencyMs: number;
  /** Half-width of the jitter window, as a fraction of the target delay (0.1 = +-10%). */
  readonly jitter: number;
}

export const DEFAULT_SCHEDULER_CONFIG: SchedulerConfig = {
  baseMs: 60_000,
  minMs: 10_000,
  maxMs: 3_600_000,
  busyFactor: 0.8,
  idleFactor: 1.2,
  slowFactor: 1.5,
  slowLatencyMs: 1000,
  jitter: 0.1,
};

/** What the agent keeps between syncs. */
export interface SchedulerState {
  /** The activity-driven interval, in [minMs, maxMs]. */
  readonly intervalMs: number;
  /** Whether the last sync saw a slow network; it stretches the next delay only. */
  readonly slow: boolean;
}

/** The outcome of one sync, as the scheduler needs it. */
export interface SyncOutcome {
  /** Changes pushed plus changes pulled. */
  readonly changes: number;
  /** Measured round-trip latency of the sync, in ms. */
  readonly latencyMs: number;
}

export interface ScheduledSync {
  readonly state: SchedulerState;
  /** The jittered delay, in [minMs, maxMs]. */
  readonly delayMs: number;
  /** `nowMs + delayMs`. */
  readonly atMs: number;
}

function invalid(message: string): FleetError {
  return new FleetError('FLEET_SCHED_001', message);
}

function finiteNonNegative(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0) throw invalid(`${what} must be a finite non-negative number, got ${n}`);
  return n;
}

function draw(random: RandomSource): number {
  const r = random();
  if (!(r >= 0 && r < 1)) throw invalid(`random source returned ${r}, outside [0, 1)`);
  return r;
}

/** Checks a configuration; throws FLEET_CONFIG_001 naming the bad field. */
export function schedulerConfig(overrides: Partial<SchedulerConfig> = {}): SchedulerConfig {
  const c: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG, ...overrides };
  const fail = (field: string, why: string): never => {
    throw new FleetError('FLEET_CONFIG_001', `scheduler ${field} ${why}`);
  };
  if (!(Number.isFinite(c.minMs) && c.minMs > 0)) fail('minMs', 'must be > 0');
  if (!(Number.isFinite(c.maxMs) && c.maxMs >= c.minMs)) fail('maxMs', 'must be >= minMs');
  if (!(c.baseMs >= c.minMs && c.baseMs <= c.maxMs)) fail('baseMs', 'must lie within [minMs, maxMs]');
  if (!(c.busyFactor > 0 && c.busyFactor <= 1)) fail('busyFactor', 'must lie within (0, 1]');
  if (!(Number.isFinite(c.idleFactor) && c.idleFactor >= 1)) fail('idleFactor', 'must be >= 1');
  if (!(Number.isFinite(c.slowFactor) && c.slowFactor >= 1)) fail('slowFactor', 'must be >= 1');
  if (!(c.slowLatencyMs >= 0)) fail('slowLatencyMs', 'must be >= 0');
  if (!(c.jitter >= 0 && c.jitter < 1)) fail('jitter', 'must lie within [0, 1)');
  return c;
}

const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));

/** The state of an agent that has not synced yet. */
export function initialSchedulerState(config: SchedulerConfig = DEFAULT_SCHEDULER_CONFIG): SchedulerState {
  return { intervalMs: config.baseMs, slow: false };
}

/** Applies one sync's outcome to the state (the seed's rules, bounded). */
export function adjustInterval(state: SchedulerState, outcome: SyncOutcome, config: SchedulerConfig = DEFAULT_SCHEDULER_CONFIG): SchedulerState {
  finiteNonNegative(outcome.changes, 'changes');
  finiteNonNegative(outcome.latencyMs, 'latencyMs');
  const factor = outcome.changes > 0 ? config.busyFactor : config.idleFactor;
  return {
    intervalMs: clamp(state.intervalMs * factor, config.minMs, config.maxMs),
    slow: outcome.latencyMs > config.slowLatencyMs,
  };
}

/** The un-jittered delay the state asks for: the interval, stretched on a slow network, within bounds. */
export function targetDelay(state: SchedulerState, config: SchedulerConfig = DEFAULT_SCHEDULER_CONFIG): number {
  return clamp(state.intervalMs * (state.slow ? config.slowFactor : 1), config.minMs, config.maxMs);
}

/**
 * A delay drawn uniformly from target x [1 - jitter, 1 + jitter], with the window clipped to the
 * bounds rather than the draw clamped, so no value at a bound is more likely than its neighbours.
 */
export function jitteredDelay(state: SchedulerState, random: RandomSource, config: SchedulerConfig = DEFAULT_SCHEDULER_CONFIG): number {
  const target = targetDelay(state, config);
  const lo = Math.max(config.minMs, target * (1 - config.jitter));
  const hi = Math.min(config.maxMs, target * (1 + config.jitter));
  return clamp(Math.round(lo + draw(random) * (hi - lo)), config.minMs, config.maxMs);
}

/** After a sync: the new state and when to sync next. */
export function scheduleNextSync(
  state: SchedulerState,
  outcome: SyncOutcome,
  nowMs: number,
  random: RandomSource,
  config: SchedulerConfig = DEFAULT_SCHEDULER_CONFIG,
): ScheduledSync {
  const next = adjustInterval(state, outcome, config);
  const delayMs = jitteredDelay(next, random, config);
  return { state: next, delayMs, atMs: nowMs + delayMs };
}

export interface BackoffOptions {
  /** The cap of the first retry's window. */
  readonly baseMs: number;
  /** The largest window: retries never wait longer. */
  readonly maxMs: number;
}

/**
 * Exponential backoff with full jitter for retry number `attempt` (0 = the first retry): uniform in
 * [0, min(maxMs, baseMs * 2^attempt)). Full jitter, not +-x%: after a shared failure (the server
 * restarted) every agent retries, and spreading them over the whole window gives the fewest
 * collisions for the least total wait (the AWS architecture blog's comparison of jitter schemes).
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: RandomSource): number {
  if (!Number.isInteger(attempt) || attempt < 0) throw invalid(`attempt must be a non-negative integer, got ${attempt}`);
  finiteNonNegative(opts.baseMs, 'baseMs');
  finiteNonNegative(opts.maxMs, 'maxMs');
  // 2^attempt overflows to Infinity past 1023; min() still picks maxMs (0 x Infinity would be NaN).
  const cap = opts.baseMs === 0 ? 0 : Math.min(opts.maxMs, opts.baseMs * 2 ** attempt);
  return Math.floor(draw(random) * cap);
}
