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
 *   later operation, and a flapping link never starts two operations. A link that comes back before
 *   that outcome (a flap) is remembered (`relinked`): the outcome is taken as if it had arrived offline,
 *   then the reconnect runs at once, as after any `connected` (the whole protocol: push, then pull every
 *   page, reported as `reconnect`); it is never skipped until the next periodic sync.
 * - At most one timer is armed, for the earliest pending deadline (a retry of a failed operation, or
 *   the next periodic pull); each `set-timer` carries a fresh id and a `timer` event whose id is not
 *   the armed one is stale and ignored (the adapter cannot un-queue a timer that already fired).
 * - `stopped` is terminal and is entered only with `close`; `stop` never abandons an operation in
 *   flight (a batch that was published still gets its rows marked sent, a page still commits with
 *   its cursor) – `stopping` waits for its outcome.
 * - Nothing is pulled or pushed while the link is known to be down.
 * - At rest (`idle`, `backoff`) nothing is both owed and allowed to run: an operation waits only for
 *   its OWN retry deadline. Push (JetStream, the change log) and pull / verify (request/reply, the
 *   delta calculator) are independent failure domains: a failing pull never holds back a push, a
 *   failing push never stops pulls.
 *
 * Cycles. On (re)connect, `reconciling` pushes first – drains the outbox (phase `push`) – then pulls
 * every page since the durable cursor (phase `pull`), then reports one `synced` (`reconnect`). The
 * seed pulled first to resolve conflicts on the agent before pushing; with the record CRDT (join is
 * commutative, associative, idempotent, run with the same code on both sides) the order does not
 * change the outcome, and pushing first means a slow or absent delta calculator never holds back
 * the change log. Afterwards `idle` waits for the adaptive timer or a nudge (`pulling`; an outbox
 * owed is pushed first), or an outbox change (`pushing` alone: agents push as soon as they can; the
 * sync deadline keeps running so pulls never starve behind pushes). A failed operation gets its own
 * retry deadline (exponential backoff, full jitter, its own attempt count); the others go on, and
 * `backoff` is the rest state while any retry is pending. Every step is idempotent (the cursor moves
 * only with an applied page, a batch id is derived from its rows), so a retry simply runs it again.
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
export const OPERATIONS: readonly Operation[] = ['push', 'pull', 'verify'];

/** One value per operation (each is its own failure domain). */
export type PerOperation<T> = { readonly [O in Operation]: T };

export type ConnectionEffect =
  /** Open the transport (once, at start; it reconnects on its own afterwards). */
  | { readonly type: 'connect' }
  /** Run one operation and feed its outcome back: `pull` one page from the durable cursor, `push` one batch, `verify` the whole Merkle pass. */
  | { readonly type: 'run'; readonly op: Operation }
  /** Arm the one timer (replacing any armed one). `reason`: what its deadline is (a retry, or the periodic sync). */
  | { readonly type: 'set-timer'; readonly id: number; readonly delayMs: number; readonly reason: 'sync' | 'retry' }
  | { readonly type: 'cancel-timer' }
  /** Report: a sync cycle ended (`reconnect`, `sync`: a pull drained; `push`: an outbox drain not followed by a pull). Counts since the last report. */
  | { readonly type: 'synced'; readonly kind: 'reconnect' | 'sync' | 'push'; readonly status: SyncStatus }
  /** Report: an operation failed; `retryInMs` is its backoff, absent when waiting for the link. */
  | { readonly type: 'failed'; readonly op: Operation; readonly error: string; readonly attempt: number; readonly retryInMs?: number }
  | { readonly type: 'verified'; readonly violations: number; readonly repaired: number }
  /** Close the transport: nothing is in flight. */
  | { readonly type: 'close' };

export interface ConnectionContext {
  /** The transport's last word on the link. */
  readonly online: boolean;
  /**
   * The link dropped and came back while the operation in flight ran (a flap): its outcome is taken as
   * if it had arrived offline, then the reconnect starts. Only while an operation is in flight and online.
   */
  readonly relinked: boolean;
  readonly scheduler: SchedulerState;
  /** Consecutive failures of each operation: its backoff exponent (reset by its own success). */
  readonly attempts: PerOperation<number>;
  /** When each failed operation may run again (epoch ms); null: not backing off. */
  readonly retryAtMs: PerOperation<number | null>;
  /** When the next periodic pull is due (epoch ms); null while a pull is running or owed anyway, and offline. */
  readonly syncAtMs: number | null;
  /** Id of the armed timer (0: none yet); events with another id are stale. */
  readonly timerId: number;
  readonly timerArmed: boolean;
  /** The deadline the armed timer is for (epoch ms): the earliest of `retryAtMs` and `syncAtMs`. */
  readonly timerAtMs: number;
  /** The phase of `reconciling`: the operation in flight (push the outbox first, then pull every page). */
  readonly phase: 'push' | 'pull';
  /** A reconnection pull is owed (connected, not yet pulled to the end): its operations run in `reconciling`, and it reports as `reconnect`. */
  readonly reconnectOwed: boolean;
  /** A pull is owed: a nudge, the sync deadline, a failed pull, or a nudge during a pull (pull once more). */
  readonly pullRequested: boolean;
  /** A push is owed: the outbox changed, a reconnect, a failed push, rows re-queued by a verification. */
  readonly pushRequested: boolean;
  readonly verifyPending: boolean;
  /** When the next periodic verification is due (epoch ms). */
  readonly nextVerifyAtMs: number;
  /** Counts since the last `synced` report. */
  readonly cycle: SyncStatus;
  /** Largest round trip since the last report (scheduler input: a slow network stretches the interval). */
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

const NO_RETRY: PerOperation<number | null> = { push: null, pull: null, verify: null };

/** The machine at start: connecting. Run its effects (`connect`). */
export function initialConnection(env: ConnectionEnv, opts: { verifyPending?: boolean } = {}): ConnectionStep {
  const ctx: ConnectionContext = {
    online: false,
    relinked: false,
    scheduler: initialSchedulerState(env.config.scheduler),
    attempts: { push: 0, pull: 0, verify: 0 },
    retryAtMs: NO_RETRY,
    syncAtMs: null,
    timerId: 0,
    timerArmed: false,
    timerAtMs: 0,
    phase: 'push',
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

function disarm(ctx: ConnectionContext): { ctx: ConnectionContext; effects: ConnectionEffect[] } {
  return ctx.timerArmed ? { ctx: { ...ctx, timerArmed: false }, effects: [{ type: 'cancel-timer' }] } : { ctx, effects: [] };
}

function retrying(ctx: ConnectionContext): boolean {
  return OPERATIONS.some((op) => ctx.retryAtMs[op] !== null);
}

/** The earliest pending deadline, and whether it is a retry. */
function nextDeadline(ctx: ConnectionContext): { atMs: number; reason: 'sync' | 'retry' } | undefined {
  let best: { atMs: number; reason: 'sync' | 'retry' } | undefined;
  for (const op of OPERATIONS) {
    const at = ctx.retryAtMs[op];
    if (at !== null && (best === undefined || at < best.atMs)) best = { atMs: at, reason: 'retry' };
  }
  if (ctx.syncAtMs !== null && (best === undefined || ctx.syncAtMs < best.atMs)) best = { atMs: ctx.syncAtMs, reason: 'sync' };
  return best;
}

/** The one timer, armed for the earliest deadline (left alone when it already is). */
function alignTimer(ctx: ConnectionContext, env: ConnectionEnv): { ctx: ConnectionContext; effects: ConnectionEffect[] } {
  const next = nextDeadline(ctx);
  if (next === undefined) return disarm(ctx);
  if (ctx.timerArmed && ctx.timerAtMs === next.atMs) return { ctx, effects: [] };
  const id = ctx.timerId + 1;
  return {
    ctx: { ...ctx, timerId: id, timerArmed: true, timerAtMs: next.atMs },
    effects: [{ type: 'set-timer', id, delayMs: Math.max(0, next.atMs - env.nowMs), reason: next.reason }],
  };
}

/** Owed, whatever its domain's state. */
function owed(ctx: ConnectionContext, op: Operation, env: ConnectionEnv): boolean {
  switch (op) {
    case 'push':
      return ctx.pushRequested;
    case 'pull':
      return ctx.pullRequested || ctx.reconnectOwed;
    case 'verify':
      return ctx.verifyPending || env.nowMs >= ctx.nextVerifyAtMs;
  }
}

/**
 * Owed and not waiting for its own retry deadline: the only thing that gates an operation (besides the
 * link and the one-at-a-time rule), except that a verification waits for any pull that is owed: it
 * compares with the server what the store holds once pulled, and after a restore its completion is
 * what releases the held local writes (docs/agent.md), which must not happen before the agent has
 * pulled what the server holds of its own scope (a pull failing and in backoff included).
 */
function runnable(ctx: ConnectionContext, op: Operation, env: ConnectionEnv): boolean {
  if (op === 'verify' && owed(ctx, 'pull', env)) return false;
  return owed(ctx, op, env) && ctx.retryAtMs[op] === null;
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

/** Starts `op` (nothing in flight, link up). Operations owed by a reconnect run in `reconciling`. */
function start(ctx: ConnectionContext, op: Operation, env: ConnectionEnv, pre: ConnectionEffect[]): ConnectionStep {
  let c: ConnectionContext;
  let state: ConnectionState;
  switch (op) {
    case 'push':
      c = { ...ctx, pushRequested: false, phase: 'push' };
      state = ctx.reconnectOwed ? 'reconciling' : 'pushing';
      break;
    case 'pull':
      // This pull is the periodic sync too: the next one is scheduled when it ends.
      c = { ...ctx, pullRequested: false, syncAtMs: null, phase: 'pull' };
      state = ctx.reconnectOwed ? 'reconciling' : 'pulling';
      break;
    case 'verify':
      c = ctx;
      state = 'verifying';
      break;
  }
  const t = alignTimer(c, env);
  return to(state, t.ctx, ...pre, ...t.effects, run(op));
}

function goOffline(ctx: ConnectionContext, pre: ConnectionEffect[]): ConnectionStep {
  // No deadlines offline: the reconnect runs the whole protocol at once.
  const d = disarm({ ...ctx, online: false, retryAtMs: NO_RETRY, syncAtMs: null });
  return to('offline', d.ctx, ...pre, ...d.effects);
}

/**
 * Nothing in flight: start the first runnable operation (push first unless `prefer` says pull:
 * after a push, a pull that is owed goes next, so neither starves the other); else rest, in
 * `backoff` while a retry is pending, `idle` otherwise, with the timer on the earliest deadline.
 */
function settle(ctx: ConnectionContext, env: ConnectionEnv, pre: ConnectionEffect[] = [], prefer: 'push' | 'pull' = 'push'): ConnectionStep {
  if (!ctx.online) return goOffline(ctx, pre);
  const order: readonly Operation[] = prefer === 'pull' ? ['pull', 'push', 'verify'] : ['push', 'pull', 'verify'];
  for (const op of order) if (runnable(ctx, op, env)) return start(ctx, op, env, pre);
  // Pulls never stop: unless a pull retry is pending, the periodic sync is scheduled.
  const c = ctx.retryAtMs.pull === null && ctx.syncAtMs === null ? { ...ctx, syncAtMs: env.nowMs + jitteredDelay(ctx.scheduler, env.random, env.config.scheduler) } : ctx;
  const t = alignTimer(c, env);
  return to(retrying(t.ctx) ? 'backoff' : 'idle', t.ctx, ...pre, ...t.effects);
}

function startReconcile(ctx: ConnectionContext, env: ConnectionEnv): ConnectionStep {
  // Push first (drain the outbox), then pull every page. A fresh link: no retry waits on the old one.
  const c = { ...freshCycle(ctx), online: true, relinked: false, reconnectOwed: true, pushRequested: true, pullRequested: false, retryAtMs: NO_RETRY, syncAtMs: null };
  return settle(c, env);
}

/** The pull drained (no more pages): report the cycle, feed the scheduler, schedule the next sync. */
function finishPull(ctx: ConnectionContext, env: ConnectionEnv): ConnectionStep {
  const report: ConnectionEffect = { type: 'synced', kind: ctx.reconnectOwed ? 'reconnect' : 'sync', status: ctx.cycle };
  const next = scheduleNextSync(ctx.scheduler, { changes: ctx.cycle.changesPushed + ctx.cycle.changesPulled, latencyMs: ctx.cycleLatencyMs }, env.nowMs, env.random, env.config.scheduler);
  return settle(freshCycle({ ...ctx, scheduler: next.state, syncAtMs: env.nowMs + next.delayMs, reconnectOwed: false }), env, [report]);
}

/** The outbox drained: a pull that is owed and allowed goes next (its report carries the push); otherwise report the push alone. */
function finishPush(ctx: ConnectionContext, env: ConnectionEnv): ConnectionStep {
  if (ctx.online && runnable(ctx, 'pull', env)) return settle(ctx, env, [], 'pull');
  return settle(freshCycle(ctx), env, [{ type: 'synced', kind: 'push', status: ctx.cycle }]);
}

/** An operation failed: its own retry deadline (its own attempt count); the other operations go on. Offline: wait for the link. */
function fail(ctx: ConnectionContext, op: Operation, error: string, env: ConnectionEnv): ConnectionStep {
  const attempt = ctx.attempts[op] + 1;
  const owe = op === 'push' ? { pushRequested: true } : op === 'pull' ? { pullRequested: true } : { verifyPending: true };
  const c = { ...ctx, ...owe, attempts: { ...ctx.attempts, [op]: attempt } };
  if (!c.online) return goOffline(c, [{ type: 'failed', op, error, attempt }]);
  const delay = backoffDelay(Math.min(ctx.attempts[op], 60), env.config.backoff, env.random);
  const retry = { ...c, retryAtMs: { ...c.retryAtMs, [op]: env.nowMs + delay } };
  return settle(retry, env, [{ type: 'failed', op, error, attempt, retryInMs: delay }], op === 'push' ? 'pull' : 'push');
}

/**
 * The armed timer fired: every deadline it covers is due (the adapter's clock may read a little
 * early: the deadline the timer was armed for is due in any case). Undefined for a stale timer.
 */
function fire(ctx: ConnectionContext, e: { readonly id: number }, env: ConnectionEnv): ConnectionContext | undefined {
  if (e.id !== ctx.timerId || !ctx.timerArmed) return undefined;
  const at = Math.max(env.nowMs, ctx.timerAtMs);
  const due = (t: number | null): boolean => t !== null && t <= at;
  const r = ctx.retryAtMs;
  return {
    ...ctx,
    timerArmed: false,
    retryAtMs: { push: due(r.push) ? null : r.push, pull: due(r.pull) ? null : r.pull, verify: due(r.verify) ? null : r.verify },
    syncAtMs: due(ctx.syncAtMs) ? null : ctx.syncAtMs,
    pushRequested: ctx.pushRequested || due(r.push),
    pullRequested: ctx.pullRequested || due(r.pull) || due(ctx.syncAtMs),
    verifyPending: ctx.verifyPending || due(r.verify),
  };
}

function stopNow(ctx: ConnectionContext): ConnectionStep {
  const d = disarm(ctx);
  return to('stopped', d.ctx, ...d.effects, { type: 'close' });
}

function stopAfterOp(ctx: ConnectionContext): ConnectionStep {
  const d = disarm({ ...ctx, relinked: false });
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
/** The link went down while an operation runs: its outcome will send the machine offline (a flap seen before is superseded). */
const linkDownWhileBusy =
  (state: ConnectionState): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, { ...ctx, online: false, relinked: false });
/** The link is up while an operation runs; if it had dropped since the operation started, the reconnect runs after its outcome. */
const linkUpWhileBusy =
  (state: ConnectionState): Handler<ConnectionEvent> =>
  (ctx) =>
    to(state, { ...ctx, online: true, relinked: ctx.relinked || !ctx.online });
/**
 * The outcome of the operation in flight (`op`) after the link flapped during it: taken as if it had
 * arrived offline (the reports it makes, the machine offline, every deadline dropped), then the
 * `connected` it missed starts the reconnect at once. One operation at a time still: the reconnect's
 * first operation starts only now that this one has ended.
 */
function afterFlap<E extends ConnectionEvent>(op: Operation, handler: Handler<E>): Handler<E> {
  return (ctx, e, env) => {
    if (!ctx.relinked || (op !== 'verify' && ctx.phase !== op)) return handler(ctx, e, env);
    const down = handler({ ...ctx, online: false, relinked: false }, e, env);
    if (down.machine.state !== 'offline') return handler(ctx, e, env); // not this operation's outcome (cannot happen)
    const up = startReconcile(down.machine.ctx, env);
    return { machine: up.machine, effects: [...down.effects, ...up.effects] };
  };
}
/** A timer event while an operation runs: what it covers becomes owed, and runs after the operation (when allowed). */
const timerWhileBusy =
  (state: ConnectionState): Handler<Extract<ConnectionEvent, { type: 'timer' }>> =>
  (ctx, e, env) =>
    to(state, fire(ctx, e, env) ?? ctx);
/** The outcome of an operation that is not the one in flight (cannot happen while the invariants hold): ignored. */
const outOfTurn = stay;

/** A push outcome, in `pushing` or in `reconciling`'s push phase. */
const pushAcked =
  (state: 'reconciling' | 'pushing'): Handler<Extract<ConnectionEvent, { type: 'push-acked' }>> =>
  (ctx, e, env) => {
    if (ctx.phase !== 'push') return to(state, ctx);
    const c = { ...ctx, attempts: { ...ctx.attempts, push: 0 }, cycle: addStatus(ctx.cycle, { changesPushed: e.pushed }), cycleLatencyMs: Math.max(ctx.cycleLatencyMs, e.latencyMs) };
    if (e.more && c.online) return to(state, c, run('push'));
    if (e.more) return settle({ ...c, pushRequested: true }, env);
    return finishPush(c, env);
  };
const pushFailed =
  (state: 'reconciling' | 'pushing'): Handler<Extract<ConnectionEvent, { type: 'push-failed' }>> =>
  (ctx, e, env) =>
    ctx.phase === 'push' ? fail(ctx, 'push', e.error, env) : to(state, ctx);
/** A pull outcome, in `pulling` or in `reconciling`'s pull phase. */
const pullPage =
  (state: 'reconciling' | 'pulling'): Handler<Extract<ConnectionEvent, { type: 'pull-page' }>> =>
  (ctx, e, env) => {
    if (ctx.phase !== 'pull') return to(state, ctx);
    const c = {
      ...ctx,
      attempts: { ...ctx.attempts, pull: 0 },
      verifyPending: ctx.verifyPending || e.fullResync,
      cycle: addStatus(ctx.cycle, { changesPulled: e.pulled, conflictsDetected: e.conflictsDetected, conflictsResolved: e.conflictsResolved }),
      cycleLatencyMs: Math.max(ctx.cycleLatencyMs, e.latencyMs),
    };
    if (!c.online) return settle({ ...c, pullRequested: c.pullRequested || e.hasMore }, env);
    // A nudge during the pull may announce changes after this page's snapshot: pull once more. Kept
    // across pages with more to come: the next page may have been read ahead, before the nudge
    // (the sync manager asks for page k+1 as page k arrives), so only a pull after the last page
    // is sure to see what the nudge announced.
    if (e.hasMore) return to(state, c, run('pull'));
    if (c.pullRequested) return to(state, { ...c, pullRequested: false }, run('pull'));
    return finishPull(c, env);
  };
const pullFailed =
  (state: 'reconciling' | 'pulling'): Handler<Extract<ConnectionEvent, { type: 'pull-failed' }>> =>
  (ctx, e, env) =>
    ctx.phase === 'pull' ? fail(ctx, 'pull', e.error, env) : to(state, ctx);

/** `idle` and `backoff`: nothing in flight, link up. Anything owed and allowed starts at once; a pending retry is waited for, never cut short. */
function restRow(state: 'idle' | 'backoff'): ConnectionTable['idle'] {
  return {
    connected: markOnline(state, true),
    disconnected: (ctx) => goOffline(ctx, []),
    // In backoff, a nudge waits for the pull's retry: after an outage a fleet-wide nudge must not undo the jitter.
    nudge: (ctx, _e, env) => settle({ ...ctx, pullRequested: true }, env),
    // A failing pull (or verification) does not hold the push back.
    'outbox-changed': (ctx, _e, env) => settle({ ...ctx, pushRequested: true }, env),
    timer: (ctx, e, env) => {
      const c = fire(ctx, e, env);
      return c === undefined ? to(state, ctx) : settle(c, env);
    },
    'push-acked': outOfTurn(state),
    'push-failed': outOfTurn(state),
    'pull-page': outOfTurn(state),
    'pull-failed': outOfTurn(state),
    'verify-needed': (ctx, _e, env) => settle({ ...ctx, verifyPending: true }, env),
    'verify-done': outOfTurn(state),
    'verify-failed': outOfTurn(state),
    stop: (ctx) => stopNow(ctx),
  };
}

/** States with no operation in flight ignore outcomes; `stopping` ends on any outcome. */
const finishStop: Handler<ConnectionEvent> = (ctx) => {
  const d = disarm(ctx);
  return to('stopped', d.ctx, ...d.effects, { type: 'close' });
};

export const CONNECTION_TABLE: ConnectionTable = {
  connecting: {
    connected: (ctx, _e, env) => startReconcile(ctx, env),
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
    connected: (ctx, _e, env) => startReconcile(ctx, env),
    disconnected: stay('offline'),
    // Offline there is nothing to do: the reconnect runs the whole protocol (the outbox, then pull).
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
    connected: linkUpWhileBusy('reconciling'),
    disconnected: linkDownWhileBusy('reconciling'),
    nudge: markPull('reconciling'),
    // A row may land after the last batch's `more` was read: push once more (an empty peek is cheap).
    'outbox-changed': markPush('reconciling'),
    timer: timerWhileBusy('reconciling'),
    // Push phase: next batch, or the pull phase (a failed push gets its retry deadline and the pull goes on).
    'push-acked': afterFlap('push', pushAcked('reconciling')),
    'push-failed': afterFlap('push', pushFailed('reconciling')),
    // Pull phase: next page, or done (`synced` reconnect); a failed pull backs off, pushes go on meanwhile.
    'pull-page': afterFlap('pull', pullPage('reconciling')),
    'pull-failed': afterFlap('pull', pullFailed('reconciling')),
    'verify-needed': markVerify('reconciling'),
    'verify-done': outOfTurn('reconciling'),
    'verify-failed': outOfTurn('reconciling'),
    stop: (ctx) => stopAfterOp(ctx),
  },
  pulling: {
    connected: linkUpWhileBusy('pulling'),
    disconnected: linkDownWhileBusy('pulling'),
    nudge: markPull('pulling'),
    'outbox-changed': markPush('pulling'),
    timer: timerWhileBusy('pulling'),
    'push-acked': outOfTurn('pulling'),
    'push-failed': outOfTurn('pulling'),
    'pull-page': afterFlap('pull', pullPage('pulling')),
    'pull-failed': afterFlap('pull', pullFailed('pulling')),
    'verify-needed': markVerify('pulling'),
    'verify-done': outOfTurn('pulling'),
    'verify-failed': outOfTurn('pulling'),
    stop: (ctx) => stopAfterOp(ctx),
  },
  pushing: {
    connected: linkUpWhileBusy('pushing'),
    disconnected: linkDownWhileBusy('pushing'),
    nudge: markPull('pushing'),
    'outbox-changed': markPush('pushing'),
    timer: timerWhileBusy('pushing'),
    'push-acked': afterFlap('push', pushAcked('pushing')),
    'push-failed': afterFlap('push', pushFailed('pushing')),
    'pull-page': outOfTurn('pushing'),
    'pull-failed': outOfTurn('pushing'),
    'verify-needed': markVerify('pushing'),
    'verify-done': outOfTurn('pushing'),
    'verify-failed': outOfTurn('pushing'),
    stop: (ctx) => stopAfterOp(ctx),
  },
  idle: restRow('idle'),
  backoff: restRow('backoff'),
  verifying: {
    connected: linkUpWhileBusy('verifying'),
    disconnected: linkDownWhileBusy('verifying'),
    nudge: markPull('verifying'),
    'outbox-changed': markPush('verifying'),
    timer: timerWhileBusy('verifying'),
    'push-acked': outOfTurn('verifying'),
    'push-failed': outOfTurn('verifying'),
    'pull-page': outOfTurn('verifying'),
    'pull-failed': outOfTurn('verifying'),
    'verify-needed': stay('verifying'),
    'verify-done': afterFlap('verify', (ctx, e, env) => {
      // Repairs re-queued local records: push them now.
      const c = {
        ...ctx,
        attempts: { ...ctx.attempts, verify: 0 },
        verifyPending: false,
        nextVerifyAtMs: env.nowMs + env.config.verifyIntervalMs,
        pushRequested: ctx.pushRequested || e.repaired > 0,
      };
      return settle(c, env, [{ type: 'verified', violations: e.violations, repaired: e.repaired }]);
    }),
    'verify-failed': afterFlap('verify', (ctx, e, env) => fail(ctx, 'verify', e.error, env)),
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
