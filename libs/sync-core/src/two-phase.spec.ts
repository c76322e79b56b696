import fc from 'fast-check';
import {
  beginTx,
  decide,
  decisionOf,
  isDone,
  onDecision,
  onPrepare,
  phase2Targets,
  recordAck,
  recordVote,
  statusAnswer,
} from './two-phase';
import type { CoordinatorTx, Decision, ParticipantState } from './two-phase';

describe('two-phase commit: coordinator', () => {
  it('commits only when every participant voted yes', () => {
    let tx = beginTx('t1', ['server', 'a'], 1000);
    tx = recordVote(tx, 'server', { vote: 'yes' });
    expect(decide(tx, 0).state).toBe('preparing');
    tx = decide(recordVote(tx, 'a', { vote: 'yes' }), 0);
    expect(tx.state).toBe('committing');
    expect(phase2Targets(tx)).toEqual(['server', 'a']);
    tx = recordAck(tx, 'a');
    expect(tx.state).toBe('committing');
    tx = recordAck(tx, 'server');
    expect(tx.state).toBe('committed');
  });

  it('aborts on the first no, naming it, and does not send the abort to the one that said no', () => {
    let tx = beginTx('t1', ['server', 'a', 'b'], 1000);
    tx = recordVote(recordVote(tx, 'server', { vote: 'yes' }), 'a', { vote: 'no', reason: 'certificate expired' });
    tx = decide(tx, 0);
    expect(tx.state).toBe('aborting');
    expect(tx.reason).toBe('a: certificate expired');
    // b never voted: it may have prepared all the same (its yes lost), so it hears the abort.
    expect(phase2Targets(tx)).toEqual(['server', 'b']);
    tx = recordAck(recordAck(tx, 'server'), 'b');
    expect(tx.state).toBe('aborted');
  });

  it('is done at once when every participant voted no (nobody to tell)', () => {
    const tx = decide(recordVote(beginTx('t1', ['a'], 10), 'a', { vote: 'no', reason: 'busy' }), 0);
    expect(tx.state).toBe('aborted');
    expect(phase2Targets(tx)).toEqual([]);
  });

  it('aborts at the deadline with votes missing, not before', () => {
    const tx = recordVote(beginTx('t1', ['server', 'a', 'b'], 1000), 'server', { vote: 'yes' });
    expect(decide(tx, 999).state).toBe('preparing');
    const d = decide(tx, 1000);
    expect(d.state).toBe('aborting');
    expect(d.reason).toBe('no vote in time from a, b');
  });

  it('ignores votes after the decision and repeated votes', () => {
    let tx = decide(recordVote(beginTx('t1', ['a'], 10), 'a', { vote: 'yes' }), 0);
    expect(recordVote(tx, 'a', { vote: 'no', reason: 'late' })).toBe(tx);
    tx = beginTx('t2', ['a', 'b'], 10);
    tx = recordVote(recordVote(tx, 'a', { vote: 'yes' }), 'a', { vote: 'no', reason: 'changed its mind' });
    expect(tx.votes['a']).toEqual({ vote: 'yes' });
  });

  it('refuses strangers, empty and duplicate participant lists', () => {
    const tx = beginTx('t1', ['a'], 10);
    expect(() => recordVote(tx, 'b', { vote: 'yes' })).toThrow(RangeError);
    expect(() => recordAck(decide(recordVote(tx, 'a', { vote: 'yes' }), 0), 'b')).toThrow(RangeError);
    expect(() => beginTx('t', [], 10)).toThrow(RangeError);
    expect(() => beginTx('t', ['a', 'a'], 10)).toThrow(RangeError);
  });

  it('answers an in-doubt participant: pending before the decision, abort when it has no record', () => {
    const tx = beginTx('t1', ['a'], 10);
    expect(statusAnswer(tx)).toBe('pending');
    expect(statusAnswer(decide(recordVote(tx, 'a', { vote: 'yes' }), 0))).toBe('commit');
    expect(statusAnswer(decide(tx, 10))).toBe('abort');
    expect(statusAnswer(undefined)).toBe('abort');
  });
});

describe('two-phase commit: participant', () => {
  it('stages once, votes the same on a repeat, and refuses to prepare what it finished', () => {
    expect(onPrepare(undefined, () => undefined)).toEqual({ vote: { vote: 'yes' }, stage: true });
    expect(onPrepare(undefined, () => 'disk full')).toEqual({ vote: { vote: 'no', reason: 'disk full' }, stage: false });
    let checked = 0;
    expect(onPrepare('prepared', () => String(++checked))).toEqual({ vote: { vote: 'yes' }, stage: false });
    expect(checked).toBe(0);
    expect(onPrepare('aborted', () => undefined).vote).toEqual({ vote: 'no', reason: 'transaction already aborted' });
  });

  it('applies a commit once, discards on abort, acknowledges repeats', () => {
    expect(onDecision('prepared', 'commit')).toEqual({ next: 'committed', apply: true, discard: false });
    expect(onDecision('prepared', 'abort')).toEqual({ next: 'aborted', apply: false, discard: true });
    expect(onDecision('committed', 'commit')).toEqual({ next: 'committed', apply: false, discard: false });
    expect(onDecision(undefined, 'abort')).toEqual({ next: 'aborted', apply: false, discard: false });
  });

  it('refuses a commit it never prepared and a decision contrary to the one it applied', () => {
    expect(() => onDecision(undefined, 'commit')).toThrow(RangeError);
    expect(() => onDecision('committed', 'abort')).toThrow(RangeError);
    expect(() => onDecision('aborted', 'commit')).toThrow(RangeError);
  });
});

/**
 * The whole protocol run under an adversary: prepares, votes, decisions and acks lost, repeated and
 * reordered; the coordinator restarted from its log at any point (its in-memory votes lost); the
 * clock moved past the deadline; participants asking the coordinator while in doubt. Then the
 * network heals and the coordinator's recovery runs.
 */
describe('two-phase commit under lost, repeated and reordered messages and coordinator restarts', () => {
  type Step =
    | { kind: 'prepare'; p: number; lostReply: boolean }
    | { kind: 'decide' }
    | { kind: 'phase2'; p: number; lostAck: boolean }
    | { kind: 'restart' }
    | { kind: 'tick' }
    | { kind: 'ask'; p: number };

  const stepArb = (n: number): fc.Arbitrary<Step> =>
    fc.oneof(
      fc.record({ kind: fc.constant('prepare' as const), p: fc.nat({ max: n - 1 }), lostReply: fc.boolean() }),
      fc.constant({ kind: 'decide' as const }),
      fc.record({ kind: fc.constant('phase2' as const), p: fc.nat({ max: n - 1 }), lostAck: fc.boolean() }),
      fc.constant({ kind: 'restart' as const }),
      fc.constant({ kind: 'tick' as const }),
      fc.record({ kind: fc.constant('ask' as const), p: fc.nat({ max: n - 1 }) }),
    );

  const scenarioArb = fc.integer({ min: 1, max: 4 }).chain((n) =>
    fc.record({
      willing: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      steps: fc.array(stepArb(n), { maxLength: 40 }),
    }),
  );

  it('every participant ends with the one decision; commit only if all were willing', () => {
    fc.assert(
      fc.property(scenarioArb, ({ willing, steps }) => {
        const names = willing.map((_, i) => `p${i}`);
        const DEADLINE = 100;
        let now = 0;
        // The coordinator's log: the state after each durable write. `memory` adds votes not yet logged.
        let logged: CoordinatorTx = beginTx('t', names, DEADLINE);
        let memory: CoordinatorTx = logged;
        const parts: (ParticipantState | undefined)[] = names.map(() => undefined);
        const applied: Decision[][] = names.map(() => []);

        const deliverDecision = (i: number, d: Decision): void => {
          const out = onDecision(parts[i], d);
          if (out.apply) applied[i]!.push('commit');
          if (out.discard) applied[i]!.push('abort');
          parts[i] = out.next;
        };
        const logDecision = (): void => {
          const next = decide(memory, now);
          if (next.state !== memory.state) logged = memory = next; // the commit point: durable before anyone hears it
        };

        for (const s of steps) {
          switch (s.kind) {
            case 'prepare': {
              const i = s.p;
              const out = onPrepare(parts[i], () => (willing[i] ? undefined : 'refused'));
              if (out.stage) parts[i] = 'prepared';
              if (!s.lostReply && memory.state === 'preparing') memory = recordVote(memory, names[i]!, out.vote);
              break;
            }
            case 'decide':
              logDecision();
              break;
            case 'phase2': {
              const d = decisionOf(logged.state);
              const target = names[s.p]!;
              if (d === undefined || !phase2Targets(logged).includes(target)) break;
              deliverDecision(s.p, d);
              if (!s.lostAck) logged = memory = recordAck(logged, target);
              break;
            }
            case 'restart':
              memory = logged; // votes that were only in memory are gone
              break;
            case 'tick':
              now += 60;
              break;
            case 'ask': {
              const answer = statusAnswer(logged);
              if (parts[s.p] === 'prepared' && answer !== 'pending') deliverDecision(s.p, answer);
              break;
            }
          }
          // Safety at every step: no participant committed while another aborted a prepared state.
          const outcomes = new Set(applied.flat());
          expect(outcomes.size).toBeLessThanOrEqual(1);
          if (outcomes.has('commit')) expect(willing.every(Boolean)).toBe(true);
        }

        // Heal: recovery decides what is undecided once the deadline passed, then repeats phase 2.
        now = Math.max(now, DEADLINE);
        memory = logged;
        logDecision();
        for (let round = 0; round < names.length + 1 && !isDone(logged); round++) {
          for (const target of phase2Targets(logged)) {
            deliverDecision(names.indexOf(target), decisionOf(logged.state)!);
            logged = recordAck(logged, target);
          }
        }
        expect(isDone(logged)).toBe(true);
        const d = decisionOf(logged.state);
        for (let i = 0; i < names.length; i++) {
          if (parts[i] === 'prepared') throw new Error(`${names[i]} left in doubt`);
          if (parts[i] === 'committed') expect(d).toBe('commit');
          if (d === 'commit') expect(parts[i]).toBe('committed');
          // Every staged operation was applied or discarded exactly once.
          expect(applied[i]!.length).toBeLessThanOrEqual(1);
        }
        if (d === 'commit') expect(willing.every(Boolean)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
