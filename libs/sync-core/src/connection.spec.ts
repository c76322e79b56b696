import fc from 'fast-check';
import {
  CONNECTION_EVENT_TYPES,
  CONNECTION_STATES,
  CONNECTION_TABLE,
  DEFAULT_CONNECTION_CONFIG,
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
  constructor(public now = 1_000_000) {
    const init = initialConnection(env(now));
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
        this.inFlight = eff.op;
      }
      if (eff.type === 'set-timer') {
        expect(eff.id).toBeGreaterThan(this.armedId);
        this.armedId = eff.id;
        this.timerArmed = true;
        expect(eff.delayMs).toBeGreaterThanOrEqual(0);
      }
      if (eff.type === 'cancel-timer') this.timerArmed = false;
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
      connect();
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

/**
 * The expected next state for every (state, event) pair from the reachable machine `reach(state)`,
 * with the representative event `eventOf(type, ctx, 0)` (outcomes: success, nothing more to do).
 * Typed as the full mapped table, so a new state or event fails to compile here too.
 */
const EXPECTED: { readonly [S in ConnectionState]: { readonly [E in ConnectionEventType]: ConnectionState } } = {
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
  // In the pull phase: a page without more moves to the push phase (same state).
  reconciling: {
    connected: 'reconciling', disconnected: 'reconciling', nudge: 'reconciling', 'outbox-changed': 'reconciling', timer: 'reconciling',
    'push-acked': 'reconciling', 'push-failed': 'reconciling', 'pull-page': 'reconciling', 'pull-failed': 'backoff',
    'verify-needed': 'reconciling', 'verify-done': 'reconciling', 'verify-failed': 'reconciling', stop: 'stopping',
  },
  pulling: {
    connected: 'pulling', disconnected: 'pulling', nudge: 'pulling', 'outbox-changed': 'pulling', timer: 'pulling',
    'push-acked': 'pulling', 'push-failed': 'pulling', 'pull-page': 'pushing', 'pull-failed': 'backoff',
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
  backoff: {
    connected: 'backoff', disconnected: 'offline', nudge: 'backoff', 'outbox-changed': 'backoff', timer: 'reconciling',
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

describe('connection state machine', () => {
  it('the table has a handler for every state x event pair', () => {
    expect(Object.keys(CONNECTION_TABLE).sort()).toEqual([...CONNECTION_STATES].sort());
    for (const s of CONNECTION_STATES) expect(Object.keys(CONNECTION_TABLE[s]).sort()).toEqual([...CONNECTION_EVENT_TYPES].sort());
  });

  describe.each(CONNECTION_STATES.map((s) => [s]))('from %s', (state) => {
    it.each(CONNECTION_EVENT_TYPES.map((e) => [e]))('on %s: the expected state, invariants kept', (type) => {
      const h = reach(state);
      const event = eventOf(type, h.m.ctx);
      // An outcome of an operation that is not in flight is delivered raw (the harness would drop it): it must be ignored.
      const op = OUTCOME_OF[type];
      if (op !== undefined && op !== h.inFlight && state !== 'stopped') {
        const step = stepConnection(h.m, event, env());
        expect(step.machine.state).toBe(EXPECTED[state][type]);
        // Ignored, except in stopping, where any outcome ends the wait (only one operation can be in flight).
        if (state === 'stopping') expect(step.effects).toEqual([{ type: 'close' }]);
        else expect(step.effects).toEqual([]);
        return;
      }
      h.send(event);
      expect(h.m.state).toBe(EXPECTED[state][type]);
    });

    it.each(CONNECTION_EVENT_TYPES.map((e) => [e]))('on %s (variants: more to do, stale timer, failure offline): invariants kept', (type) => {
      for (const variant of [1, 2]) {
        const h = reach(state);
        h.send(eventOf(type, h.m.ctx, variant));
      }
      const h = reach(state);
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

  it('reconnection: pull every page, then push the outbox, then one synced report with the sums', () => {
    const h = new Harness();
    h.send({ type: 'connected' });
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'pull' });
    h.send({ type: 'pull-page', pulled: 5, conflictsDetected: 2, conflictsResolved: 1, hasMore: true, fullResync: false, latencyMs: 10 });
    h.send({ type: 'pull-page', pulled: 3, conflictsDetected: 1, conflictsResolved: 1, hasMore: false, fullResync: false, latencyMs: 10 });
    expect(h.effects.at(-1)).toEqual({ type: 'run', op: 'push' });
    h.send({ type: 'push-acked', pushed: 500, more: true, latencyMs: 10 });
    h.send({ type: 'push-acked', pushed: 20, more: false, latencyMs: 10 });
    const synced = h.effects.find((e) => e.type === 'synced');
    expect(synced).toEqual({ type: 'synced', kind: 'reconnect', status: { conflictsDetected: 3, conflictsResolved: 2, changesPushed: 520, changesPulled: 8 } });
    expect(h.m.state).toBe('idle');
    expect(h.timerArmed).toBe(true);
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
    expect(h.m.ctx.attempt).toBe(0);
  });

  it('a nudge during a pull pulls once more; the sync timer during a push asks for a pull afterwards', () => {
    const h = reach('pulling');
    h.send({ type: 'nudge' });
    h.succeed(false);
    expect(h.m.state).toBe('pulling');
    h.succeed(false);
    expect(h.m.state).toBe('pushing');
    const p = reach('pushing');
    p.fireTimer();
    p.succeed(false);
    expect(p.m.state).toBe('pulling');
  });

  it('full resync and restore ask for verification after the sync', () => {
    const h = new Harness();
    h.send({ type: 'connected' });
    h.send({ type: 'pull-page', pulled: 1, conflictsDetected: 0, conflictsResolved: 0, hasMore: false, fullResync: true, latencyMs: 1 });
    h.succeed();
    expect(h.m.state).toBe('verifying');
    h.send({ type: 'verify-done', violations: 2, repaired: 1 });
    expect(h.m.state).toBe('pushing'); // repaired records were re-queued: push them
  });

  it('periodic verification is due after verifyIntervalMs', () => {
    const h = reach('idle');
    h.now += DEFAULT_CONNECTION_CONFIG.verifyIntervalMs + 1;
    h.fireTimer();
    h.succeed();
    h.succeed();
    expect(h.m.state).toBe('verifying');
  });

  it('the sync delay follows the adaptive scheduler with the injected random (jitter spreads a fleet)', () => {
    const delays = [0, 0.5, 0.999].map((r) => {
      let m = initialConnection(env()).machine;
      for (const [e, rr] of [
        [{ type: 'connected' }, r],
        [{ type: 'pull-page', pulled: 0, conflictsDetected: 0, conflictsResolved: 0, hasMore: false, fullResync: false, latencyMs: 1 }, r],
        [{ type: 'push-acked', pushed: 0, more: false, latencyMs: 1 }, r],
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
      fc.constantFrom('connected', 'disconnected', 'nudge', 'outbox-changed', 'verify-needed', 'timer', 'stale-timer', 'succeed', 'succeed-more', 'fail', 'tick', 'stop'),
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
