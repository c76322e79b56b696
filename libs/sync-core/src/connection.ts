/**
 * The agent's connection lifecycle, as a pure state machine (sans-I/O): `stepConnection(machine,
 * event, env)` returns the next machine and the effects to run, as data. The adapter
 * (`@fleet/agent-sync`'s SyncManager) runs the effects (connect, pull one page, push one batch,
 * verify, arm a timer) and feeds their outcomes back as events. Time and randomness come in `env`.
 *
 * Invariants the table keeps (and the unit test checks for every state x event pair):
 * - At most one operation (pull, push, verify) is in flight, and one is in flight exactly while the
 *   state is `reconciling`, `pulling`, `pushing`, `verifying` or `stopping`. A link that drops during
 *   an operation does not leave the state: it clears `online`, and the operation's own outcome (it
 *   fails or times out) moves the machine on. So an outcome is never mistaken for the outcome of a
 *   later operation, and a flapping link never starts two operations.
 * - At most one timer is armed; each `set-timer` carries a fresh id and a `timer` event whose id is
 *   not the armed one is stale and ignored (the adapter cannot un-queue a timer that already fired).
 * - `stopped` is terminal and is entered only with `close`; `stop` never abandons an operation in
 *   flight (a batch that was published still gets its rows marked sent, a page still commits with
 *   its cursor) – `stopping` waits for its outcome.
 * - Nothing is pulled or pushed while the link is known to be down.
 *
 * Cycles. On (re)connect, `reconciling` runs the seed's reconnection protocol: pull every page since
 * the durable cursor (phase `pull`), then push the whole outbox (phase `push`), then report one
 * `synced` with the reconnect's counts. Afterwards `idle` waits for the adaptive timer or a nudge
 * (both start `pulling` then `pushing`: a full sync), or an outbox change (`pushing` alone: agents
 * push as soon as they can; the sync timer keeps running so pulls never starve behind pushes).
 * Failures go to `backoff` (exponential, full jitter) and resume the step that failed: every step is
 * idempotent (the cursor moves only with an applied page, a batch id is derived from its rows).
 */
import type { BackoffOptions, RandomSource, SchedulerConfig, SchedulerState } from './scheduler';
import { backoffDelay, DEFAULT_SCHEDULER_CONFIG, initialSchedulerState, jitteredDelay, scheduleNextSync } from './scheduler';

export const CONNECTION_STATES = [
  'connecting',
  'offline',
  'reconciling',
  'pulling',
  'pushing',
  'idle',
  'backoff',
  'verifying',
  'stopping',
  'stopped',
] as const;
export type ConnectionState = (typeof CONNECTION_STATES)[number];

/** What a sync moved, as the seed's reconnection protocol reports it. */
export interface SyncStatus {
  /** Records where a pulled state met a pending local change or left concurrent writes. */
  readonly conflictsDetected: number;
  /** Of those, the ones the collection's strategy settled (the rest wait for an operator). */
  readonly conflictsResolved: number;
  readonly changesPushed: number;
  /** Records applied from the server. */
  readonly changesPulled: number;
}

export const EMPTY_SYNC_STATUS: SyncStatus = { conflictsDetected: 0, conflictsResolved: 0, changesPushed: 0, changesPulled: 0 };

export type ConnectionEvent =
  /** The transport has a link (first connect or reconnect). */
  | { readonly type: 'connected' }
  /** The transport lost its link (it keeps reconnecting on its own). */
  | { readonly type: 'disconnected' }
  /** The server says there is something to pull (core NATS, may be lost: the timer is the backstop). */
  | { readonly type: 'nudge' }
  /** The local store appended to the outbox. */
  | { readonly type: 'outbox-changed' }
  /** A timer fired; `id` is the one of its `set-timer`. */
  | { readonly type: 'timer'; readonly id: number }
  /** A batch was PubAcked and its rows left the outbox. `more`: rows remain. */
  | { readonly type: 'push-acked'; readonly pushed: number; readonly more: boolean; readonly latencyMs: number }
  | { readonly type: 'push-failed'; readonly error: string }
  /** A page was applied with its cursor (same transaction). */
  | {
      readonly type: 'pull-page';
      readonly pulled: number;
      readonly conflictsDetected: number;
      readonly conflictsResolved: number;
      readonly hasMore: boolean;
      readonly fullResync: boolean;
      readonly latencyMs: number;
    }
  | { readonly type: 'pull-failed'; readonly error: string }
  /** Verification wanted: after a restore (`needsVerification`), or asked for by an operator. */
  | { readonly type: 'verify-needed' }
  | { readonly type: 'verify-done'; readonly violations: number; readonly repaired: number }
  | { readonly type: 'verify-failed'; readonly error: string }
  | { readonly type: 'stop' };
export type ConnectionEventType = ConnectionEvent['type'];

export const CONNECTION_EVENT_TYPES: readonly ConnectionEventType[] = [
  'connected',
  'disconnected',
  'nudge',
  'outbox-changed',
  'timer',
  'push-acked',
  'push-failed',
  'pull-page',
  'pull-failed',
  'verify-needed',
  'verify-done',
  'verify-failed',
  'stop',
];

export type Operation = 'pull' | 'push' | 'verify';

export type ConnectionEffect =
  /** Open the transport (once, at start; it reconnects on its own afterwards). */
  | { readonly type: 'connect' }
  /** Run one operation and feed its outcome back: `pull` one page from the durable cursor, `push` one batch, `verify` the whole Merkle pass. */
  | { readonly type: 'run'; readonly op: Operation }
  /** Arm the one timer (replacing any armed one). */
  | { readonly type: 'set-timer'; readonly id: number; readonly delayMs: number; readonly reason: 'sync' | 'retry' }
  | { readonly type: 'cancel-timer' }
  /** Report: a sync cycle ended. `kind` says what started it. */
  | { readonly type: 'synced'; readonly kind: 'reconnect' | 'sync' | 'push'; readonly status: SyncStatus }
  /** Report: an operation failed; `retryInMs` is the backoff, absent when waiting for the link. */
  | { readonly type: 'failed'; readonly op: Operation; readonly error: string; readonly attempt: number; readonly retryInMs?: number }
  | { readonly type: 'verified'; readonly violations: number; readonly repaired: number }
  /** Close the transport: nothing is in flight. */
  | { readonly type: 'close' };

/** Where a retry resumes. */
export type Resume = { readonly state: 'reconciling'; readonly phase: 'pull' | 'push' } | { readonly state: 'pulling' | 'pushing' | 'verifying' };

export interface ConnectionContext {
  /** The transport's last word on the link. */
  readonly online: boolean;
  readonly scheduler: SchedulerState;
  /** Consecutive failed operations: the backoff exponent. */
  readonly attempt: number;
  /** Id of the armed timer (0: none yet); events with another id are stale. */
  readonly timerId: number;
  readonly timerArmed: boolean;
  /** The phase of `reconciling`: pull every page, then push the outbox. */
  readonly phase: 'pull' | 'push';
  /** What `backoff` resumes when its timer fires. */
  readonly resume: Resume;
  /** A reconnection protocol is owed (connected, not yet finished): retries resume it, and it reports as `reconnect`. */
  readonly reconnectOwed: boolean;
  /** A nudge or the sync timer arrived while busy: pull (again) when the current step ends. */
  readonly pullRequested: boolean;
  /** The outbox changed while busy with something that will not push next. */
  readonly pushRequested: boolean;
  readonly verifyPending: boolean;
  /** When the next periodic verification is due (epoch ms). */
  readonly nextVerifyAtMs: number;
  /** Counts of the cycle in progress. */
  readonly cycle: SyncStatus;
  /** Largest round trip of the cycle (scheduler input: a slow network stretches the interval). */
  readonly cycleLatencyMs: number;
}

export interface ConnectionMachine {
  readonly state: ConnectionState;
  readonly ctx: ConnectionContext;
}

export interface ConnectionConfig {
  readonly scheduler: SchedulerConfig;
  readonly backoff: BackoffOptions;
  /** Periodic verification; `Infinity` disables it (verification still runs when asked). */
  readonly verifyIntervalMs: number;
}

export const DEFAULT_CONNECTION_CONFIG: ConnectionConfig = {
  scheduler: DEFAULT_SCHEDULER_CONFIG,
  backoff: { baseMs: 1000, maxMs: 5 * 60_000 },
  verifyIntervalMs: 24 * 3_600_000,
};

/** What a step may read of the world: injected, so tests replay exactly. */
export interface ConnectionEnv {
  readonly nowMs: number;
  readonly random: RandomSource;
  readonly config: ConnectionConfig;
}

export interface ConnectionStep {
  readonly machine: ConnectionMachine;
  readonly effects: readonly ConnectionEffect[];
}

/** The machine at start: connecting. Run its effects (`connect`). */
export function initialConnection(env: ConnectionEnv, opts: { verifyPending?: boolean } = {}): ConnectionStep {
  const ctx: ConnectionContext = {
    online: false,
    scheduler: initialSchedulerState(env.config.scheduler),
    attempt: 0,
    timerId: 0,
    timerArmed: false,
    phase: 'pull',
    resume: { state: 'pulling' },
    reconnectOwed: false,
    pullRequested: false,
    pushRequested: false,
    verifyPending: opts.verifyPending ?? false,
    nextVerifyAtMs: env.nowMs + env.config.verifyIntervalMs,
    cycle: EMPTY_SYNC_STATUS,
    cycleLatencyMs: 0,
  };
  return { machine: { state: 'connecting', ctx }, effects: [{ type: 'connect' }] };
}

/** States in which exactly one operation is in flight. */
export function operationInFlight(state: ConnectionState): boolean {
  return state === 'reconciling' || state === 'pulling' || state === 'pushing' || state === 'verifying' || state === 'stopping';
}

type Handler<E extends ConnectionEvent> = (ctx: ConnectionContext, event: E, env: ConnectionEnv) => ConnectionStep;

/**
 * The transition table: for every state, a handler for every event type. A mapped type, so adding a
 * state or an event fails to compile until every pair is decided.
 */
export type ConnectionTable = {
  readonly [S in ConnectionState]: { readonly [E in ConnectionEventType]: Handler<Extract<ConnectionEvent, { type: E }>> };
};

// --- helpers ---------------------------------------------------------------------------------------

const to = (state: ConnectionState, ctx: ConnectionContext, ...effects: ConnectionEffect[]): ConnectionStep => ({ machine: { state, ctx }, effects });
const run = (op: Operation): ConnectionEffect => ({ type: 'run', op });

function armTimer(ctx: ConnectionContext, delayMs: number, reason: 'sync' | 'retry'): { ctx: ConnectionContext; effect: ConnectionEffect } {
  const id = ctx.timerId + 1;
  return { ctx: { ...ctx, timerId: id, timerArmed: true }, effect: { type: 'set-timer', id, delayMs, reason } };
}

function disarm(ctx: ConnectionContext): { ctx: ConnectionContext; effects: ConnectionEffect[] } {
  return ctx.timerArmed ? { ctx: { ...ctx, timerArmed: false }, effects: [{ type: 'cancel-timer' }] } : { ctx, effects: [] };
}

const freshCycle = (ctx: ConnectionContext): ConnectionContext => ({ ...ctx, cycle: EMPTY_SYNC_STATUS, cycleLatencyMs: 0 });

function addStatus(a: SyncStatus, b: Partial<SyncStatus>): SyncStatus {
  return {
    conflictsDetected: a.conflictsDetected + (b.conflictsDetected ?? 0),
    conflictsResolved: a.conflictsResolved + (b.conflictsResolved ?? 0),
    changesPushed: a.changesPushed + (b.changesPushed ?? 0),
    changesPulled: a.changesPulled + (b.changesPulled ?? 0),
  };
}

/** Starts a full sync (pull, then push) from a state with nothing in flight. */
function startPull(ctx: ConnectionContext, ...pre: ConnectionEffect[]): ConnectionStep {
  return to('pulling', { ...ctx, pullRequested: false }, ...pre, run('pull'));
}

function startReconcile(ctx: ConnectionContext): ConnectionStep {
  const d = disarm(ctx);
  return to('reconciling', { ...freshCycle(d.ctx), online: true, reconnectOwed: true, phase: 'pull', pullRequested: false, pushRequested: false }, ...d.effects, run('pull'));
}

/** Nothing in flight, link up: pick the next thing owed, else rest in idle with the sync timer armed. */
function settle(ctx: ConnectionContext, env: ConnectionEnv, pre: ConnectionEffect[] = []): ConnectionStep {
  if (!ctx.online) {
    const d = disarm(ctx);
    return to('offline', d.ctx, ...pre, ...d.effects);
  }
  if (ctx.reconnectOwed) return to('reconciling', { ...ctx, phase: 'pull', pullRequested: false }, ...pre, run('pull'));
  if (ctx.pullRequested) {
    const d = disarm(ctx);
    return startPull(freshCycle(d.ctx), ...pre, ...d.effects);
  }
  if (ctx.verifyPending || env.nowMs >= ctx.nextVerifyAtMs) {
    const d = disarm(ctx);
    return to('verifying', d.ctx, ...pre, ...d.effects, run('verify'));
  }
  if (ctx.pushRequested) return to('pushing', freshCycle({ ...ctx, pushRequested: false }), ...pre, run('push'));
  if (ctx.timerArmed) return to('idle', ctx, ...pre);
  const t = armTimer(ctx, jitteredDelay(ctx.scheduler, env.random, env.config.scheduler), 'sync');
  return to('idle', t.ctx, ...pre, t.effect);
}

/** A cycle that pulled ended: report it, feed the scheduler, arm the next sync. */
function finishSync(ctx: ConnectionContext, env: ConnectionEnv): ConnectionStep {
  const kind = ctx.reconnectOwed ? 'reconnect' : 'sync';
  const report: ConnectionEffect = { type: 'synced', kind, status: ctx.cycle };
  const next = scheduleNextSync(ctx.scheduler, { changes: ctx.cycle.changesPushed + ctx.cycle.changesPulled, latencyMs: ctx.cycleLatencyMs }, env.nowMs, env.random, env.config.scheduler);
  const t = armTimer({ ...ctx, scheduler: next.state, reconnectOwed: false }, next.delayMs, 'sync');
  return settle(t.ctx, env, [report, t.effect]);
}

/** An operation failed: wait for the link if it is down, else back off and resume `resume`. */
function fail(ctx: ConnectionContext, op: Operation, error: string, resume: Resume, env: ConnectionEnv): ConnectionStep {
  const attempt = ctx.attempt + 1;
  if (!ctx.online) {
    const d = disarm({ ...ctx, attempt });
    return to('offline', d.ctx, { type: 'failed', op, error, attempt }, ...d.effects);
  }
  const delay = backoffDelay(Math.min(ctx.attempt, 60), env.config.backoff, env.random);
  const t = armTimer({ ...ctx, attempt, resume }, delay, 'retry');
  return to('backoff', t.ctx, { type: 'failed', op, error, attempt, retryInMs: delay }, t.effect);
}

function resumeFromBackoff(ctx: ConnectionContext): ConnectionStep {
  const c = { ...ctx, timerArmed: false };
  switch (c.resume.state) {
    case 'reconciling':
      return to('reconciling', { ...c, phase: c.resume.phase }, run(c.resume.phase));
    case 'pulling':
      return to('pulling', { ...c, pullRequested: false }, run('pull'));
    case 'pushing':
      return to('pushing', c, run('push'));
    case 'verifying':
      return to('verifying', c, run('verify'));
  }
}

function stopNow(ctx: ConnectionContext): ConnectionStep {
  const d = disarm(ctx);
  return to('stopped', d.ctx, ...d.effects, { type: 'close' });
}

function stopAfterOp(ctx: ConnectionContext): ConnectionStep {
  const d = disarm(ctx);
  return to('stopping', d.ctx, ...d.effects);
}

// Handlers shared by several states.
const stay =
  (state: ConnectionState): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, ctx);
const markOnline =
  (state: ConnectionState, online: boolean): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, { ...ctx, online });
const markVerify =
  (state: ConnectionState): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, { ...ctx, verifyPending: true });
const markPull =
  (state: ConnectionState): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, { ...ctx, pullRequested: true });
const markPush =
  (state: ConnectionState): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, { ...ctx, pushRequested: true });
/** A timer event while an operation runs: the sync timer (if it is the armed one) asks for a pull afterwards. */
const timerWhileBusy =
  (state: ConnectionState): Handler<Extract<ConnectionEvent, { type: 'timer' }>> =>
  (ctx, e) =>
    e.id === ctx.timerId && ctx.timerArmed ? to(state, { ...ctx, timerArmed: false, pullRequested: true }) : to(state, ctx);
/** The outcome of an operation that is not the one in flight (cannot happen while the invariants hold): ignored. */
const outOfTurn = stay;

/** States with no operation in flight ignore outcomes; `stopping` ends on any outcome. */
const finishStop: Handler<ConnectionEvent> = (ctx) => {
  const d = disarm(ctx);
  return to('stopped', d.ctx, ...d.effects, { type: 'close' });
};

export const CONNECTION_TABLE: ConnectionTable = {
  connecting: {
    connected: (ctx) => startReconcile(ctx),
    disconnected: markOnline('connecting', false),
    nudge: stay('connecting'),
    'outbox-changed': stay('connecting'),
    timer: stay('connecting'),
    'push-acked': outOfTurn('connecting'),
    'push-failed': outOfTurn('connecting'),
    'pull-page': outOfTurn('connecting'),
    'pull-failed': outOfTurn('connecting'),
    'verify-needed': markVerify('connecting'),
    'verify-done': outOfTurn('connecting'),
    'verify-failed': outOfTurn('connecting'),
    stop: (ctx) => stopNow(ctx),
  },
  offline: {
    connected: (ctx) => startReconcile(ctx),
    disconnected: stay('offline'),
    // Offline there is nothing to do: the reconnect runs the whole protocol (pull, then the outbox).
    nudge: stay('offline'),
    'outbox-changed': stay('offline'),
    timer: stay('offline'),
    'push-acked': outOfTurn('offline'),
    'push-failed': outOfTurn('offline'),
    'pull-page': outOfTurn('offline'),
    'pull-failed': outOfTurn('offline'),
    'verify-needed': markVerify('offline'),
    'verify-done': outOfTurn('offline'),
    'verify-failed': outOfTurn('offline'),
    stop: (ctx) => stopNow(ctx),
  },
  reconciling: {
    connected: markOnline('reconciling', true),
    disconnected: markOnline('reconciling', false),
    nudge: markPull('reconciling'),
    // A row may land after the last batch's `more` was read: push once more at the end (an empty peek is cheap).
    'outbox-changed': markPush('reconciling'),
    timer: timerWhileBusy('reconciling'),
    'push-acked': (ctx, e, env) => {
      if (ctx.phase !== 'push') return to('reconciling', ctx);
      const c = { ...ctx, attempt: 0, cycle: addStatus(ctx.cycle, { changesPushed: e.pushed }), cycleLatencyMs: Math.max(ctx.cycleLatencyMs, e.latencyMs) };
      if (e.more && c.online) return to('reconciling', c, run('push'));
      if (e.more) return settle(c, env);
      return finishSync(c, env);
    },
    'push-failed': (ctx, e, env) => (ctx.phase === 'push' ? fail(ctx, 'push', e.error, { state: 'reconciling', phase: 'push' }, env) : to('reconciling', ctx)),
    'pull-page': (ctx, e, env) => {
      if (ctx.phase !== 'pull') return to('reconciling', ctx);
      const c = {
        ...ctx,
        attempt: 0,
        verifyPending: ctx.verifyPending || e.fullResync,
        cycle: addStatus(ctx.cycle, { changesPulled: e.pulled, conflictsDetected: e.conflictsDetected, conflictsResolved: e.conflictsResolved }),
        cycleLatencyMs: Math.max(ctx.cycleLatencyMs, e.latencyMs),
      };
      if (!c.online) return settle(c, env);
      if (e.hasMore || c.pullRequested) return to('reconciling', { ...c, pullRequested: false }, run('pull'));
      return to('reconciling', { ...c, phase: 'push', pushRequested: false }, run('push'));
    },
    'pull-failed': (ctx, e, env) => (ctx.phase === 'pull' ? fail(ctx, 'pull', e.error, { state: 'reconciling', phase: 'pull' }, env) : to('reconciling', ctx)),
    'verify-needed': markVerify('reconciling'),
    'verify-done': outOfTurn('reconciling'),
    'verify-failed': outOfTurn('reconciling'),
    stop: (ctx) => stopAfterOp(ctx),
  },
  pulling: {
    connected: markOnline('pulling', true),
    disconnected: markOnline('pulling', false),
    nudge: markPull('pulling'),
    // A full sync pushes right after its pull.
    'outbox-changed': stay('pulling'),
    timer: timerWhileBusy('pulling'),
    'push-acked': outOfTurn('pulling'),
    'push-failed': outOfTurn('pulling'),
    'pull-page': (ctx, e, env) => {
      const c = {
        ...ctx,
        attempt: 0,
        verifyPending: ctx.verifyPending || e.fullResync,
        cycle: addStatus(ctx.cycle, { changesPulled: e.pulled, conflictsDetected: e.conflictsDetected, conflictsResolved: e.conflictsResolved }),
        cycleLatencyMs: Math.max(ctx.cycleLatencyMs, e.latencyMs),
      };
      if (!c.online) return settle(c, env);
      // A nudge during the pull may announce changes after this page's snapshot: pull once more.
      if (e.hasMore || c.pullRequested) return to('pulling', { ...c, pullRequested: false }, run('pull'));
      return to('pushing', { ...c, pushRequested: false }, run('push'));
    },
    'pull-failed': (ctx, e, env) => fail(ctx, 'pull', e.error, { state: 'pulling' }, env),
    'verify-needed': markVerify('pulling'),
    'verify-done': outOfTurn('pulling'),
    'verify-failed': outOfTurn('pulling'),
    stop: (ctx) => stopAfterOp(ctx),
  },
  pushing: {
    connected: markOnline('pushing', true),
    disconnected: markOnline('pushing', false),
    nudge: markPull('pushing'),
    'outbox-changed': markPush('pushing'),
    timer: timerWhileBusy('pushing'),
    'push-acked': (ctx, e, env) => {
      const c = { ...ctx, attempt: 0, cycle: addStatus(ctx.cycle, { changesPushed: e.pushed }), cycleLatencyMs: Math.max(ctx.cycleLatencyMs, e.latencyMs) };
      if (e.more && c.online) return to('pushing', c, run('push'));
      if (e.more) return settle(c, env);
      // Pulled this cycle: a full sync ends here. Push-only cycles report and keep the sync timer as armed.
      if (c.cycle.changesPulled > 0 || !c.timerArmed) return finishSync(c, env);
      return settle(c, env, [{ type: 'synced', kind: 'push', status: c.cycle }]);
    },
    'push-failed': (ctx, e, env) => fail(ctx, 'push', e.error, { state: 'pushing' }, env),
    'pull-page': outOfTurn('pushing'),
    'pull-failed': outOfTurn('pushing'),
    'verify-needed': markVerify('pushing'),
    'verify-done': outOfTurn('pushing'),
    'verify-failed': outOfTurn('pushing'),
    stop: (ctx) => stopAfterOp(ctx),
  },
  idle: {
    connected: markOnline('idle', true),
    disconnected: (ctx) => {
      const d = disarm({ ...ctx, online: false });
      return to('offline', d.ctx, ...d.effects);
    },
    nudge: (ctx) => {
      const d = disarm(ctx);
      return startPull(freshCycle(d.ctx), ...d.effects);
    },
    'outbox-changed': (ctx) => to('pushing', freshCycle({ ...ctx, pushRequested: false }), run('push')),
    timer: (ctx, e) => (e.id === ctx.timerId && ctx.timerArmed ? startPull(freshCycle({ ...ctx, timerArmed: false })) : to('idle', ctx)),
    'push-acked': outOfTurn('idle'),
    'push-failed': outOfTurn('idle'),
    'pull-page': outOfTurn('idle'),
    'pull-failed': outOfTurn('idle'),
    'verify-needed': (ctx) => {
      const d = disarm({ ...ctx, verifyPending: true });
      return to('verifying', d.ctx, ...d.effects, run('verify'));
    },
    'verify-done': outOfTurn('idle'),
    'verify-failed': outOfTurn('idle'),
    stop: (ctx) => stopNow(ctx),
  },
  backoff: {
    // A flap while waiting: still owe the step; the timer resumes it.
    connected: markOnline('backoff', true),
    disconnected: (ctx) => {
      const d = disarm({ ...ctx, online: false });
      return to('offline', d.ctx, ...d.effects);
    },
    // Not earlier than the timer: a fleet-wide nudge after an outage must not undo the jitter.
    nudge: markPull('backoff'),
    'outbox-changed': markPush('backoff'),
    timer: (ctx, e) => (e.id === ctx.timerId && ctx.timerArmed ? resumeFromBackoff(ctx) : to('backoff', ctx)),
    'push-acked': outOfTurn('backoff'),
    'push-failed': outOfTurn('backoff'),
    'pull-page': outOfTurn('backoff'),
    'pull-failed': outOfTurn('backoff'),
    'verify-needed': markVerify('backoff'),
    'verify-done': outOfTurn('backoff'),
    'verify-failed': outOfTurn('backoff'),
    stop: (ctx) => stopNow(ctx),
  },
  verifying: {
    connected: markOnline('verifying', true),
    disconnected: markOnline('verifying', false),
    nudge: markPull('verifying'),
    'outbox-changed': markPush('verifying'),
    timer: timerWhileBusy('verifying'),
    'push-acked': outOfTurn('verifying'),
    'push-failed': outOfTurn('verifying'),
    'pull-page': outOfTurn('verifying'),
    'pull-failed': outOfTurn('verifying'),
    'verify-needed': stay('verifying'),
    'verify-done': (ctx, e, env) => {
      // Repairs re-queued local records: push them now.
      const c = { ...ctx, attempt: 0, verifyPending: false, nextVerifyAtMs: env.nowMs + env.config.verifyIntervalMs, pushRequested: ctx.pushRequested || e.repaired > 0 };
      return settle(c, env, [{ type: 'verified', violations: e.violations, repaired: e.repaired }]);
    },
    'verify-failed': (ctx, e, env) => fail(ctx, 'verify', e.error, { state: 'verifying' }, env),
    stop: (ctx) => stopAfterOp(ctx),
  },
  stopping: {
    connected: stay('stopping'),
    disconnected: stay('stopping'),
    nudge: stay('stopping'),
    'outbox-changed': stay('stopping'),
    timer: stay('stopping'),
    'push-acked': finishStop,
    'push-failed': finishStop,
    'pull-page': finishStop,
    'pull-failed': finishStop,
    'verify-needed': stay('stopping'),
    'verify-done': finishStop,
    'verify-failed': finishStop,
    stop: stay('stopping'),
  },
  stopped: {
    connected: stay('stopped'),
    disconnected: stay('stopped'),
    nudge: stay('stopped'),
    'outbox-changed': stay('stopped'),
    timer: stay('stopped'),
    'push-acked': stay('stopped'),
    'push-failed': stay('stopped'),
    'pull-page': stay('stopped'),
    'pull-failed': stay('stopped'),
    'verify-needed': stay('stopped'),
    'verify-done': stay('stopped'),
    'verify-failed': stay('stopped'),
    stop: stay('stopped'),
  },
};

/** One step: the table's handler for (state, event type). */
export function stepConnection(machine: ConnectionMachine, event: ConnectionEvent, env: ConnectionEnv): ConnectionStep {
  const handler = CONNECTION_TABLE[machine.state][event.type] as Handler<ConnectionEvent>;
  return handler(machine.ctx, event, env);
}
