import fc from 'fast-check';
import {
  CONNECTION_EVENT_TYPES,
  CONNECTION_STATES,
  CONNECTION_TABLE,
  DEFAULT_CONNECTION_CONFIG,
  EMPTY_SYNC_STATUS as EMPTY,
  initialConnection,
  operationInFlight,
  stepConnection,
} from './connection';
import type { ConnectionContext, ConnectionEffect, ConnectionEnv, ConnectionEvent, ConnectionEventType, ConnectionMachine, ConnectionState, Operation } from './connection';

const env = (nowMs = 1_000_000, r = 0.5): ConnectionEnv => ({ nowMs, random: () => r, config: DEFAULT_CONNECTION_CONFIG });

/** A representative event of each type (outcomes: success with more to do, or a plain failure). */
function eventOf(type: ConnectionEventType, ctx: ConnectionContext, variant = 0): ConnectionEvent {
  switch (type) {
    case 'timer':
      return { type, id: variant === 1 ? ctx.timerId + 7 : ctx.timerId };
    case 'push-acked':
      return { type, pushed: 3, more: variant === 1, latencyMs: 20 };
    case 'pull-page':
      return { type, pulled: 2, conflictsDetected: 1, conflictsResolved: 1, hasMore: variant === 1, fullResync: variant === 2, latencyMs: 30 };
    case 'push-failed':
    case 'pull-failed':
    case 'verify-failed':
      return { type, error: 'boom' };
    case 'verify-done':
      return { type, violations: variant, repaired: variant };
    default:
      return { type } as ConnectionEvent;
  }
}

/** The operation each outcome event belongs to. */
const OUTCOME_OF: Partial<Record<ConnectionEventType, Operation>> = {
  'push-acked': 'push',
  'push-failed': 'push',
  'pull-page': 'pull',
  'pull-failed': 'pull',
  'verify-done': 'verify',
  'verify-failed': 'verify',
};

/** Which operation is in flight in each state of a reachable machine (reconciling: by phase). */
function opOf(m: ConnectionMachine): Operation | undefined {
  switch (m.state) {
    case 'reconciling':
      return m.ctx.phase;
    case 'pulling':
      return 'pull';
    case 'pushing':
      return 'push';
    case 'verifying':
      return 'verify';
    default:
      return undefined;
  }
}

/** Drives the machine with a script of events from the start; the harness plays the adapter, checking the invariants at every step. */
class Harness {
  m: ConnectionMachine;
  inFlight: Operation | undefined;
  timerArmed = false;
  armedId = 0;
  closed = false;
  effects: ConnectionEffect[] = [];
  /** The link as the transport reported it (the machine is told by `connected` / `disconnected`). */
  link = false;
  /** A `connected` came after the link was down, and no `reconnect` sync has been reported since. */
  reconnectDue = false;
  constructor(opts: { verifyPending?: boolean } = {}, public now = 1_000_000) {
    const init = initialConnection(env(now), opts);
    this.m = init.machine;
    this.apply(init.effects, undefined);
  }
  send(e: ConnectionEvent, r = 0.5): void {
    if (this.closed) {
      const next = stepConnection(this.m, e, env(this.now, r));
      expect(next.machine.state).toBe('stopped');
      expect(next.effects).toEqual([]);
      return;
    }
    if (e.type === 'timer' && e.id === this.armedId) this.timerArmed = false;
    if (e.type === 'connected') {
      if (!this.link) this.reconnectDue = true;
      this.link = true;
    }
    if (e.type === 'disconnected') this.link = false;
    const op = OUTCOME_OF[e.type];
    // The adapter only delivers the outcome of the operation in flight.
    if (op !== undefined && op !== this.inFlight) return;
    const step = stepConnection(this.m, e, env(this.now, r));
    this.m = step.machine;
    this.apply(step.effects, op);
  }
  private apply(effects: readonly ConnectionEffect[], completed: Operation | undefined): void {
    if (completed !== undefined) this.inFlight = undefined;
    const runs = effects.filter((x) => x.type === 'run');
    expect(runs.length).toBeLessThanOrEqual(1);
    for (const eff of effects) {
      this.effects.push(eff);
      if (eff.type === 'run') {
        expect(this.inFlight).toBeUndefined(); // never two operations at once
        expect(this.m.ctx.retryAtMs[eff.op]).toBeNull(); // an operation never runs before its own retry deadline
        this.inFlight = eff.op;
      }
      if (eff.type === 'set-timer') {
        expect(eff.id).toBeGreaterThan(this.armedId);
        this.armedId = eff.id;
        this.timerArmed = true;
        expect(eff.delayMs).toBeGreaterThanOrEqual(0);
      }
      if (eff.type === 'cancel-timer') this.timerArmed = false;
      if (eff.type === 'synced' && eff.kind === 'reconnect') this.reconnectDue = false;
      if (eff.type === 'close') {
        expect(this.inFlight).toBeUndefined(); // never close under an operation
        this.closed = true;
      }
    }
    // In flight exactly in the operation states, and the state says which one.
    expect(this.inFlight !== undefined).toBe(operationInFlight(this.m.state));
    if (this.m.state !== 'stopping') expect(this.inFlight).toBe(opOf(this.m));
    expect(this.m.state === 'stopped').toBe(this.closed);
    // The machine's idea of the timer matches the adapter's.
    expect(this.m.ctx.timerArmed).toBe(this.timerArmed);
    if (this.timerArmed) expect(this.m.ctx.timerId).toBe(this.armedId);
    // Nothing runs offline.
    if (this.m.state === 'offline') expect(this.inFlight).toBeUndefined();
    const c = this.m.ctx;
    // A flap is remembered only while an operation runs with the link up again.
    if (c.relinked) expect(c.online && this.inFlight !== undefined && this.m.state !== 'stopping').toBe(true);
    if (this.m.state === 'idle' || this.m.state === 'backoff') {
      // A reconnect is never forgotten: until its pull has drained (the `reconnect` report), it is still
      // owed, waiting only for its pull's own retry; a link that flapped during an operation included.
      if (this.reconnectDue) expect(c.reconnectOwed).toBe(true);
      // Independent failure domains, work-conserving: at rest, nothing is owed that is not waiting for its OWN retry.
      expect(c.pushRequested && c.retryAtMs.push === null).toBe(false);
      expect((c.pullRequested || c.reconnectOwed) && c.retryAtMs.pull === null).toBe(false);
      // A verification owed may also wait for a pull that is owed (its retry): it verifies what was pulled.
      expect((c.verifyPending || this.now >= c.nextVerifyAtMs) && c.retryAtMs.verify === null && !(c.pullRequested || c.reconnectOwed)).toBe(false);
      // backoff exactly while a retry is pending; pulls never stop (a retry or the periodic sync is scheduled).
      const retries = [c.retryAtMs.push, c.retryAtMs.pull, c.retryAtMs.verify].filter((t): t is number => t !== null);
      expect(this.m.state === 'backoff').toBe(retries.length > 0);
      expect(c.retryAtMs.pull !== null || c.syncAtMs !== null).toBe(true);
      // The one timer is armed, for the earliest deadline.
      expect(this.timerArmed).toBe(true);
      expect(c.timerAtMs).toBe(Math.min(...retries, c.syncAtMs ?? Number.POSITIVE_INFINITY));
    }
    // No timer offline, while connecting, or once stopping.
    if (this.m.state === 'offline' || this.m.state === 'connecting' || this.m.state === 'stopping' || this.m.state === 'stopped') expect(this.timerArmed).toBe(false);
  }
  fireTimer(): void {
    if (this.timerArmed) this.send({ type: 'timer', id: this.armedId });
  }
  succeed(more = false): void {
    const op = this.inFlight;
    if (op === 'pull') this.send({ type: 'pull-page', pulled: 1, conflictsDetected: 0, conflictsResolved: 0, hasMore: more, fullResync: false, latencyMs: 5 });
    if (op === 'push') this.send({ type: 'push-acked', pushed: 1, more, latencyMs: 5 });
    if (op === 'verify') this.send({ type: 'verify-done', violations: 0, repaired: 0 });
  }
  fail(): void {
    const op = this.inFlight;
    if (op === 'pull') this.send({ type: 'pull-failed', error: 'x' });
    if (op === 'push') this.send({ type: 'push-failed', error: 'x' });
    if (op === 'verify') this.send({ type: 'verify-failed', error: 'x' });
  }
}

/** A reachable machine in `state` (by a script of events), with the harness that reached it. */
function reach(state: ConnectionState): Harness {
  const h = new Harness();
  const connect = () => h.send({ type: 'connected' });
  switch (state) {
    case 'connecting':
      break;
    case 'offline':
      connect();
      h.succeed();
      h.succeed();
      h.send({ type: 'disconnected' });
      break;
    case 'reconciling':
      connect();
      break;
    case 'idle':
      connect();
      h.succeed();
      h.succeed();
      break;
    case 'pulling':
      connect();
      h.succeed();
      h.succeed();
      h.send({ type: 'nudge' });
      break;
    case 'pushing':
      connect();
      h.succeed();
      h.succeed();
      h.send({ type: 'outbox-changed' });
      break;
    case 'backoff':
      // The reconnect's push went through, its pull failed (the delta calculator is down).
      connect();
      h.succeed();
      h.fail();
      break;
    case 'verifying':
      connect();
      h.succeed();
      h.succeed();
      h.send({ type: 'verify-needed' });
      break;
    case 'stopping':
      connect();
      h.send({ type: 'stop' });
      break;
    case 'stopped':
      h.send({ type: 'stop' });
      break;
  }
  expect(h.m.state).toBe(state);
  return h;
}

type Row = { readonly [E in ConnectionEventType]: ConnectionState };

/**
 * The expected next state for every (state, event) pair from the reachable machine `reach(state)`,
 * with the representative event `eventOf(type, ctx, 0)` (outcomes: success, nothing more to do).
 * Typed as the full mapped table, so a new state or event fails to compile here too.
 */
const EXPECTED: { readonly [S in ConnectionState]: Row } = {
  connecting: {
    connected: 'reconciling', disconnected: 'connecting', nudge: 'connecting', 'outbox-changed': 'connecting', timer: 'connecting',
    'push-acked': 'connecting', 'push-failed': 'connecting', 'pull-page': 'connecting', 'pull-failed': 'connecting',
    'verify-needed': 'connecting', 'verify-done': 'connecting', 'verify-failed': 'connecting', stop: 'stopped',
  },
  offline: {
    connected: 'reconciling', disconnected: 'offline', nudge: 'offline', 'outbox-changed': 'offline', timer: 'offline',
    'push-acked': 'offline', 'push-failed': 'offline', 'pull-page': 'offline', 'pull-failed': 'offline',
    'verify-needed': 'offline', 'verify-done': 'offline', 'verify-failed': 'offline', stop: 'stopped',
  },
  // Just connected, in the push phase: the drain done (or failed: its own retry), the pull phase follows (same state).
  reconciling: {
    connected: 'reconciling', disconnected: 'reconciling', nudge: 'reconciling', 'outbox-changed': 'reconciling', timer: 'reconciling',
    'push-acked': 'reconciling', 'push-failed': 'reconciling', 'pull-page': 'reconciling', 'pull-failed': 'reconciling',
    'verify-needed': 'reconciling', 'verify-done': 'reconciling', 'verify-failed': 'reconciling', stop: 'stopping',
  },
  pulling: {
    connected: 'pulling', disconnected: 'pulling', nudge: 'pulling', 'outbox-changed': 'pulling', timer: 'pulling',
    'push-acked': 'pulling', 'push-failed': 'pulling', 'pull-page': 'idle', 'pull-failed': 'backoff',
    'verify-needed': 'pulling', 'verify-done': 'pulling', 'verify-failed': 'pulling', stop: 'stopping',
  },
  pushing: {
    connected: 'pushing', disconnected: 'pushing', nudge: 'pushing', 'outbox-changed': 'pushing', timer: 'pushing',
    'push-acked': 'idle', 'push-failed': 'backoff', 'pull-page': 'pushing', 'pull-failed': 'pushing',
    'verify-needed': 'pushing', 'verify-done': 'pushing', 'verify-failed': 'pushing', stop: 'stopping',
  },
  idle: {
    connected: 'idle', disconnected: 'offline', nudge: 'pulling', 'outbox-changed': 'pushing', timer: 'pulling',
    'push-acked': 'idle', 'push-failed': 'idle', 'pull-page': 'idle', 'pull-failed': 'idle',
    'verify-needed': 'verifying', 'verify-done': 'idle', 'verify-failed': 'idle', stop: 'stopped',
  },
  // The reconnect's pull is backing off: a nudge waits for its retry; an outbox change pushes at once
  // (still in `reconciling`: the reconnect is owed); a verification waits for the owed pull (it
  // verifies what was pulled, and after a restore it releases the held writes).
  backoff: {
    connected: 'backoff', disconnected: 'offline', nudge: 'backoff', 'outbox-changed': 'reconciling', timer: 'reconciling',
    'push-acked': 'backoff', 'push-failed': 'backoff', 'pull-page': 'backoff', 'pull-failed': 'backoff',
    'verify-needed': 'backoff', 'verify-done': 'backoff', 'verify-failed': 'backoff', stop: 'stopped',
  },
  verifying: {
    connected: 'verifying', disconnected: 'verifying', nudge: 'verifying', 'outbox-changed': 'verifying', timer: 'verifying',
    'push-acked': 'verifying', 'push-failed': 'verifying', 'pull-page': 'verifying', 'pull-failed': 'verifying',
    'verify-needed': 'verifying', 'verify-done': 'idle', 'verify-failed': 'backoff', stop: 'stopping',
  },
  stopping: {
    connected: 'stopping', disconnected: 'stopping', nudge: 'stopping', 'outbox-changed': 'stopping', timer: 'stopping',
    'push-acked': 'stopped', 'push-failed': 'stopped', 'pull-page': 'stopped', 'pull-failed': 'stopped',
    'verify-needed': 'stopping', 'verify-done': 'stopped', 'verify-failed': 'stopped', stop: 'stopping',
  },
  stopped: {
    connected: 'stopped', disconnected: 'stopped', nudge: 'stopped', 'outbox-changed': 'stopped', timer: 'stopped',
    'push-acked': 'stopped', 'push-failed': 'stopped', 'pull-page': 'stopped', 'pull-failed': 'stopped',
    'verify-needed': 'stopped', 'verify-done': 'stopped', 'verify-failed': 'stopped', stop: 'stopped',
  },
};

/** More situations whose rows differ from their state's: the other reconcile phase and the other failure domain. */
interface Situation {
  readonly name: string;
  readonly state: ConnectionState;
  readonly reach: () => Harness;
  readonly expected: Row;
}
const EXTRA_SITUATIONS: readonly Situation[] = [
  {
    name: 'reconciling (pull phase)',
    state: 'reconciling',
    reach: () => {
      const h = reach('reconciling');
      h.succeed();
      return h;
    },
    expected: {
      connected: 'reconciling', disconnected: 'reconciling', nudge: 'reconciling', 'outbox-changed': 'reconciling', timer: 'reconciling',
      'push-acked': 'reconciling', 'push-failed': 'reconciling', 'pull-page': 'idle', 'pull-failed': 'backoff',
      'verify-needed': 'reconciling', 'verify-done': 'reconciling', 'verify-failed': 'reconciling', stop: 'stopping',
    },
  },
  {
    // The CLI case: the delta calculator is down, the change log is up, a local write arrives.
    name: 'reconciling (a push while the pull backs off)',
    state: 'reconciling',
    reach: () => {
      const h = reach('backoff');
      h.send({ type: 'outbox-changed' });
      return h;
    },
    expected: {
      connected: 'reconciling', disconnected: 'reconciling', nudge: 'reconciling', 'outbox-changed': 'reconciling', timer: 'reconciling',
      'push-acked': 'backoff', 'push-failed': 'backoff', 'pull-page': 'reconciling', 'pull-failed': 'reconciling',
      'verify-needed': 'reconciling', 'verify-done': 'reconciling', 'verify-failed': 'reconciling', stop: 'stopping',
    },
  },
  {
    // JetStream refuses pushes; the delta calculator is fine: pulls go on, on nudges and on the sync deadline.
    name: 'backoff (push failing)',
    state: 'backoff',
    reach: () => {
      const h = reach('pushing');
      h.fail();
      return h;
    },
    expected: {
      connected: 'backoff', disconnected: 'offline', nudge: 'pulling', 'outbox-changed': 'backoff', timer: 'pushing',
      'push-acked': 'backoff', 'push-failed': 'backoff', 'pull-page': 'backoff', 'pull-failed': 'backoff',
      'verify-needed': 'verifying', 'verify-done': 'backoff', 'verify-failed': 'backoff', stop: 'stopped',
    },
  },
];

/** The link dropped and came back while the operation of `state` was in flight. */
function flapped(state: 'pulling' | 'pushing' | 'verifying'): Harness {
  const h = reach(state);
  h.send({ type: 'disconnected' });
  h.send({ type: 'connected' });
  return h;
}
/** In an operation state after a flap: the operation's outcome (success or failure) starts the reconnect at once. */
const FLAPPED: readonly Situation[] = (['pulling', 'pushing', 'verifying'] as const).map((state) => ({
  name: `${state} (the link dropped and came back meanwhile)`,
  state,
  reach: () => flapped(state),
  expected: {
    ...EXPECTED[state],
    ...(state === 'pulling' ? { 'pull-page': 'reconciling', 'pull-failed': 'reconciling' } : {}),
    ...(state === 'pushing' ? { 'push-acked': 'reconciling', 'push-failed': 'reconciling' } : {}),
    ...(state === 'verifying' ? { 'verify-done': 'reconciling', 'verify-failed': 'reconciling' } : {}),
  },
}));

const SITUATIONS: readonly Situation[] = [
  ...CONNECTION_STATES.map((state) => ({ name: state, state, reach: () => reach(state), expected: EXPECTED[state] })),
  ...EXTRA_SITUATIONS,
  ...FLAPPED,
  {
    name: 'reconciling, pull phase (the link dropped and came back meanwhile)',
    state: 'reconciling',
    reach: () => {
      const h = reach('reconciling');
      h.succeed();
      h.send({ type: 'disconnected' });
      h.send({ type: 'connected' });
      return h;
    },
    expected: { ...EXTRA_SITUATIONS[0]!.expected, 'pull-page': 'reconciling', 'pull-failed': 'reconciling' },
  },
];

describe('connection state machine', () => {
  it('the table has a handler for every state x event pair', () => {
    expect(Object.keys(CONNECTION_TABLE).sort()).toEqual([...CONNECTION_STATES].sort());
    for (const s of CONNECTION_STATES) expect(Object.keys(CONNECTION_TABLE[s]).sort()).toEqual([...CONNECTION_EVENT_TYPES].sort());
  });

  describe.each(SITUATIONS.map((x) => [x.name, x] as const))('from %s', (_name, situation) => {
    const { state, expected } = situation;
    it.each(CONNECTION_EVENT_TYPES.map((e) => [e]))('on %s: the expected state, invariants kept', (type) => {
      const h = situation.reach();
      expect(h.m.state).toBe(state);
      const event = eventOf(type, h.m.ctx);
      // An outcome of an operation that is not in flight is delivered raw (the harness would drop it): it must be ignored.
      const op = OUTCOME_OF[type];
      if (op !== undefined && op !== h.inFlight && state !== 'stopped') {
        const step = stepConnection(h.m, event, env());
        expect(step.machine.state).toBe(expected[type]);
        // Ignored, except in stopping, where any outcome ends the wait (only one operation can be in flight).
        if (state === 'stopping') expect(step.effects).toEqual([{ type: 'close' }]);
        else expect(step.effects).toEqual([]);
        return;
      }
      h.send(event);
      expect(h.m.state).toBe(expected[type]);
    });

    it.each(CONNECTION_EVENT_TYPES.map((e) => [e]))('on %s (variants: more to do, stale timer, failure offline): invariants kept', (type) => {
      for (const variant of [1, 2]) {
        const h = situation.reach();
        h.send(eventOf(type, h.m.ctx, variant));
      }
      const h = situation.reach();
      h.send({ type: 'disconnected' });
      h.send(eventOf(type, h.m.ctx, 0));
    });
  });

  it('stale timers are ignored', () => {
    const h = reach('idle');
    const step = stepConnection(h.m, { type: 'timer', id: h.m.ctx.timerId - 1 }, env());
    expect(step.machine.state).toBe('idle');
    expect(step.effects).toEqual([]);
  });

  it('reconnection: push the whole outbox first, then pull every page, then one synced report with the sums', () => {
    const h = new Harness();
    h.send({ type: 'connected' });
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'push' });
    h.send({ type: 'push-acked', pushed: 500, more: true, latencyMs: 10 });
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'push' });
    h.send({ type: 'push-acked', pushed: 20, more: false, latencyMs: 10 });
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'pull' });
    expect(h.m.state).toBe('reconciling');
    h.send({ type: 'pull-page', pulled: 5, conflictsDetected: 2, conflictsResolved: 1, hasMore: true, fullResync: false, latencyMs: 10 });
    h.send({ type: 'pull-page', pulled: 3, conflictsDetected: 1, conflictsResolved: 1, hasMore: false, fullResync: false, latencyMs: 10 });
    const synced = h.effects.filter((e) => e.type === 'synced');
    expect(synced).toEqual([{ type: 'synced', kind: 'reconnect', status: { conflictsDetected: 3, conflictsResolved: 2, changesPushed: 520, changesPulled: 8 } }]);
    expect(h.m.state).toBe('idle');
    expect(h.timerArmed).toBe(true);
  });

  it('a failing pull does not hold back pushes: while the pull backs off, every outbox change is pushed at once', () => {
    const h = new Harness();
    h.send({ type: 'connected' });
    h.send({ type: 'push-acked', pushed: 0, more: false, latencyMs: 1 }); // the outbox was empty
    h.send({ type: 'pull-failed', error: 'FLEET_MSG_003: no responders' });
    expect(h.m.state).toBe('backoff');
    const retryTimer = h.armedId;
    for (let i = 1; i <= 3; i++) {
      h.send({ type: 'outbox-changed' });
      expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'push' });
      h.send({ type: 'push-acked', pushed: 2, more: true, latencyMs: 1 });
      h.send({ type: 'push-acked', pushed: 1, more: false, latencyMs: 1 });
      expect(h.m.state).toBe('backoff');
      expect(h.effects.at(-1)).toEqual({ type: 'synced', kind: 'push', status: { ...EMPTY, changesPushed: 3 } });
      expect(h.armedId).toBe(retryTimer); // the pull's retry was not re-armed, not cut short
    }
    // A nudge does not cut the pull's wait short (a fleet-wide nudge must not undo the jitter).
    h.send({ type: 'nudge' });
    expect(h.m.state).toBe('backoff');
    h.fireTimer();
    expect(h.m.state).toBe('reconciling');
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'pull' });
    h.succeed(false);
    expect(h.m.state).toBe('idle');
    expect(h.effects.filter((e) => e.type === 'synced').at(-1)).toMatchObject({ kind: 'reconnect' });
  });

  it('a failing push does not stop pulls: the reconnect pulls, and nudges and the sync deadline pull while the push backs off', () => {
    const h = new Harness();
    h.send({ type: 'connected' });
    h.send({ type: 'push-failed', error: 'no stream' });
    expect(h.m.state).toBe('reconciling');
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'pull' });
    expect(h.m.ctx.retryAtMs.push).not.toBeNull();
    h.send({ type: 'pull-page', pulled: 4, conflictsDetected: 0, conflictsResolved: 0, hasMore: false, fullResync: false, latencyMs: 1 });
    expect(h.effects.filter((e) => e.type === 'synced')).toEqual([{ type: 'synced', kind: 'reconnect', status: { ...EMPTY, changesPulled: 4 } }]);
    expect(h.m.state).toBe('backoff');
    // The push waits for its own retry: a new local write does not cut it short.
    h.send({ type: 'outbox-changed' });
    expect(h.m.state).toBe('backoff');
    h.send({ type: 'nudge' });
    expect(h.m.state).toBe('pulling');
    h.succeed(false);
    expect(h.m.state).toBe('backoff');
    // The push's retry fires first (0.5 s before the sync deadline): pushes resume; the sync deadline still pulls.
    h.fireTimer();
    expect(h.m.state).toBe('pushing');
    h.succeed(false);
    expect(h.m.state).toBe('idle');
    expect(h.m.ctx.syncAtMs).not.toBeNull();
    h.fireTimer();
    expect(h.m.state).toBe('pulling');
  });

  it('both failing: each operation keeps its own attempt count and deadline, the one timer on the earliest', () => {
    const h = reach('idle');
    h.send({ type: 'outbox-changed' });
    h.fail(); // push: attempt 1, retry in 500
    h.fail(); // (nothing in flight: a no-op)
    h.send({ type: 'nudge' });
    expect(h.m.state).toBe('pulling');
    h.fail(); // pull: attempt 1, its own retry
    expect(h.m.state).toBe('backoff');
    expect(h.m.ctx.attempts).toEqual({ push: 1, pull: 1, verify: 0 });
    const { push, pull } = h.m.ctx.retryAtMs;
    expect(push).not.toBeNull();
    expect(pull).not.toBeNull();
    expect(h.m.ctx.timerAtMs).toBe(Math.min(push as number, pull as number));
    h.now += 10_000; // both due: the timer resumes both, one at a time (push first)
    h.fireTimer();
    expect(h.m.state).toBe('pushing');
    h.succeed(false);
    expect(h.m.state).toBe('pulling');
    h.succeed(false);
    expect(h.m.state).toBe('idle');
    expect(h.m.ctx.attempts).toEqual({ push: 0, pull: 0, verify: 0 });
  });

  it('a link lost mid-push waits for the outcome, then goes offline; reconnecting reruns the protocol', () => {
    const h = reach('pushing');
    h.send({ type: 'disconnected' });
    expect(h.m.state).toBe('pushing');
    h.fail();
    expect(h.m.state).toBe('offline');
    h.send({ type: 'nudge' });
    h.send({ type: 'outbox-changed' });
    expect(h.m.state).toBe('offline');
    h.send({ type: 'connected' });
    expect(h.m.state).toBe('reconciling');
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'push' });
  });

  it.each([
    ['pulling', 'succeeds'],
    ['pulling', 'fails'],
    ['pushing', 'succeeds'],
    ['pushing', 'fails'],
    ['verifying', 'succeeds'],
    ['verifying', 'fails'],
  ] as const)('a link that flaps while %s: once the operation %s, the reconnect runs at once (push, then pull every page, reported as reconnect), never two at once', (state, outcome) => {
    const h = reach(state);
    h.send({ type: 'disconnected' });
    h.send({ type: 'connected' });
    expect(h.m.state).toBe(state); // the operation in flight is waited for: nothing else starts
    const before = h.effects.length;
    if (outcome === 'succeeds') h.succeed(false);
    else h.fail();
    expect(h.m.state).toBe('reconciling');
    const after = h.effects.slice(before);
    // The outcome's own report (a failure waits for no retry: the link is back), then the reconnect's push.
    expect(after.at(-1)).toEqual({ type: 'run', op: 'push' });
    expect(after.filter((e) => e.type === 'run')).toHaveLength(1);
    if (outcome === 'fails') expect(after[0]).toMatchObject({ type: 'failed', attempt: 1 });
    expect(h.m.ctx.retryAtMs).toEqual({ push: null, pull: null, verify: null });
    h.succeed(false); // the outbox drained
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'pull' });
    h.succeed(true);
    h.succeed(false);
    expect(h.m.state).not.toBe('reconciling');
    expect(h.effects.filter((e) => e.type === 'synced').at(-1)).toMatchObject({ kind: 'reconnect', status: { changesPushed: 1, changesPulled: 2 } });
  });

  it('a link that drops, comes back and drops again during an operation: offline after it; a stop meanwhile still stops', () => {
    const h = reach('pulling');
    h.send({ type: 'disconnected' });
    h.send({ type: 'connected' });
    h.send({ type: 'disconnected' });
    h.succeed(false);
    expect(h.m.state).toBe('offline');
    h.send({ type: 'connected' });
    expect(h.m.state).toBe('reconciling');
    const s = reach('pushing');
    s.send({ type: 'disconnected' });
    s.send({ type: 'connected' });
    s.send({ type: 'stop' });
    s.succeed(false);
    expect(s.m.state).toBe('stopped');
  });

  it('backoff: exponential with full jitter, reset on success, resumes the failed step', () => {
    const h = reach('pushing');
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      h.fail();
      const t = h.effects.filter((e) => e.type === 'set-timer').at(-1);
      if (t?.type === 'set-timer') delays.push(t.delayMs);
      h.fireTimer();
      expect(h.m.state).toBe('pushing');
    }
    // random 0.5: half of base * 2^attempt
    expect(delays).toEqual([500, 1000, 2000, 4000]);
    h.succeed();
    expect(h.m.ctx.attempts.push).toBe(0);
  });

  it('a nudge during a pull pulls once more; the sync timer during a push asks for a pull afterwards', () => {
    const h = reach('pulling');
    h.send({ type: 'nudge' });
    h.succeed(false);
    expect(h.m.state).toBe('pulling');
    h.succeed(false);
    expect(h.m.state).toBe('idle');
    const p = reach('pushing');
    p.fireTimer();
    p.succeed(false);
    expect(p.m.state).toBe('pulling');
    // The push's counts go into the sync's report.
    p.succeed(false);
    expect(p.effects.filter((e) => e.type === 'synced').at(-1)).toEqual({ type: 'synced', kind: 'sync', status: { ...EMPTY, changesPushed: 1, changesPulled: 1 } });
  });

  it('a nudge during a page with more to come is kept until the last page, then pulled for once more (the next page may have been read ahead, before the nudge)', () => {
    const h = reach('pulling');
    h.send({ type: 'nudge' });
    h.succeed(true); // more to come: the next page (perhaps a read-ahead from before the nudge)
    expect(h.m.state).toBe('pulling');
    expect(h.m.ctx.pullRequested).toBe(true);
    h.succeed(false); // the last page: the nudge is still owed
    expect(h.m.state).toBe('pulling');
    h.succeed(false);
    expect(h.m.state).toBe('idle');
    expect(h.effects.filter((e) => e.type === 'run' && e.op === 'pull')).toHaveLength(4);
  });

  it('a verification owed (after a restore) waits for the pull: a failing first pull does not let it run and release the held writes', () => {
    const h = new Harness({ verifyPending: true });
    h.send({ type: 'connected' });
    h.succeed(); // push
    expect(h.inFlight).toBe('pull');
    h.fail(); // the first pull fails: backoff, the pull owed
    expect(h.m.state).toBe('backoff');
    expect(h.effects.some((e) => e.type === 'run' && e.op === 'verify')).toBe(false);
    h.fireTimer(); // the pull's retry
    expect(h.inFlight).toBe('pull');
    h.succeed(false); // pulled: now the verification
    expect(h.inFlight).toBe('verify');
  });

  it('an outbox change during a pull is pushed after it', () => {
    const h = reach('pulling');
    h.send({ type: 'outbox-changed' });
    h.succeed(false);
    expect(h.m.state).toBe('pushing');
  });

  it('full resync and restore ask for verification after the sync', () => {
    const h = new Harness();
    h.send({ type: 'connected' });
    h.succeed();
    h.send({ type: 'pull-page', pulled: 1, conflictsDetected: 0, conflictsResolved: 0, hasMore: false, fullResync: true, latencyMs: 1 });
    expect(h.m.state).toBe('verifying');
    h.send({ type: 'verify-done', violations: 2, repaired: 1 });
    expect(h.m.state).toBe('pushing'); // repaired records were re-queued: push them
  });

  it('periodic verification is due after verifyIntervalMs', () => {
    const h = reach('idle');
    h.now += DEFAULT_CONNECTION_CONFIG.verifyIntervalMs + 1;
    h.fireTimer();
    expect(h.m.state).toBe('pulling');
    h.succeed();
    expect(h.m.state).toBe('verifying');
  });

  it('the sync delay follows the adaptive scheduler with the injected random (jitter spreads a fleet)', () => {
    const delays = [0, 0.5, 0.999].map((r) => {
      let m = initialConnection(env()).machine;
      for (const [e, rr] of [
        [{ type: 'connected' }, r],
        [{ type: 'push-acked', pushed: 0, more: false, latencyMs: 1 }, r],
        [{ type: 'pull-page', pulled: 0, conflictsDetected: 0, conflictsResolved: 0, hasMore: false, fullResync: false, latencyMs: 1 }, r],
      ] as const) {
        const s = stepConnection(m, e as ConnectionEvent, env(1_000_000, rr));
        m = s.machine;
        const t = s.effects.find((x) => x.type === 'set-timer');
        if (t?.type === 'set-timer') return t.delayMs;
      }
      return -1;
    });
    // idle sync: 60 s x 1.2 = 72 s, +-10%
    expect(delays[0]).toBe(64_800);
    expect(delays[1]).toBe(72_000);
    expect(delays[2]).toBeGreaterThan(79_000);
  });

  it('property: random event sequences keep every invariant', () => {
    const action = fc.oneof(
      fc.constantFrom('connected', 'disconnected', 'flap', 'nudge', 'outbox-changed', 'verify-needed', 'timer', 'stale-timer', 'succeed', 'succeed-more', 'fail', 'tick', 'stop'),
    );
    fc.assert(
      fc.property(fc.array(action, { maxLength: 80 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (actions, r) => {
        const h = new Harness();
        for (const a of actions) {
          switch (a) {
            case 'timer':
              h.fireTimer();
              break;
            case 'stale-timer':
              h.send({ type: 'timer', id: h.m.ctx.timerId - 1 }, r);
              break;
            case 'succeed':
              h.succeed(false);
              break;
            case 'succeed-more':
              h.succeed(true);
              break;
            case 'fail':
              h.fail();
              break;
            case 'tick':
              h.now += 3_600_000;
              break;
            case 'flap':
              h.send({ type: 'disconnected' }, r);
              h.send({ type: 'connected' }, r);
              break;
            default:
              h.send({ type: a } as ConnectionEvent, r);
          }
        }
        // Stop always ends: after the outcome of what is in flight, if anything.
        h.send({ type: 'stop' });
        h.succeed();
        expect(h.m.state).toBe('stopped');
      }),
      { numRuns: 300 },
    );
  });
});
