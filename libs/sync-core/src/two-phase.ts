/**
 * Two-phase commit for critical operations (certificates, credentials): the rules of the coordinator
 * and of a participant, with no I/O. The adapters (server-store's coordinator log and PostgreSQL
 * participant, the agent store's staging tables) keep the states these functions return, durably,
 * and carry the messages; they decide nothing themselves.
 *
 * The protocol is the classic one with **presumed abort**:
 * - The coordinator logs the transaction (`preparing`) before it asks anyone to prepare.
 * - Each participant makes the operation durable but not visible (staged, or a PostgreSQL prepared
 *   transaction) and votes yes, or votes no with a reason.
 * - All yes: the decision is `commit`. Any no, or a vote missing at the deadline: `abort`. The
 *   decision is logged (`committing` / `aborting`) before any participant hears it: that write is the
 *   commit point. A logged `preparing` with no decision after a crash is decided `abort` once its
 *   deadline has passed, so a coordinator that died mid-vote never leaves a participant waiting for
 *   ever.
 * - Phase 2 is repeated until every participant that may hold a prepared state acknowledged it
 *   (`committed` / `aborted`); participants answer a repeated decision with the same acknowledgement.
 * - A participant that voted yes may not decide alone. While in doubt it asks the coordinator, which
 *   answers `pending` until the decision is logged.
 */

/** The reserved participant name of the server's own PostgreSQL participant. */
export const SERVER_PARTICIPANT = 'server';

export type Decision = 'commit' | 'abort';

export type Vote = { readonly vote: 'yes' } | { readonly vote: 'no'; readonly reason: string };

/** `preparing` -> `committing` | `aborting` (the decision, durable) -> `committed` | `aborted` (every ack in). */
export type CoordinatorState = 'preparing' | 'committing' | 'aborting' | 'committed' | 'aborted';

export interface CoordinatorTx {
  readonly txid: string;
  readonly participants: readonly string[];
  readonly state: CoordinatorState;
  readonly votes: Readonly<Record<string, Vote>>;
  /** Participants that acknowledged the decision. */
  readonly acked: readonly string[];
  /** Epoch ms: a vote that has not arrived by then counts as no. */
  readonly deadline: number;
  /** Why the transaction aborted (the first no, or the missing votes), when it did. */
  readonly reason?: string;
}

export function beginTx(txid: string, participants: readonly string[], deadline: number): CoordinatorTx {
  if (participants.length === 0) throw new RangeError('a transaction needs at least one participant');
  if (new Set(participants).size !== participants.length) throw new RangeError('participants must be distinct');
  return { txid, participants: [...participants], state: 'preparing', votes: {}, acked: [], deadline };
}

export function decisionOf(state: CoordinatorState): Decision | undefined {
  if (state === 'committing' || state === 'committed') return 'commit';
  if (state === 'aborting' || state === 'aborted') return 'abort';
  return undefined;
}

export function isDone(tx: CoordinatorTx): boolean {
  return tx.state === 'committed' || tx.state === 'aborted';
}

/** Records a vote. Votes after the decision (late, or repeated) change nothing; the first vote of a participant stands. */
export function recordVote(tx: CoordinatorTx, participant: string, vote: Vote): CoordinatorTx {
  if (!tx.participants.includes(participant)) throw new RangeError(`${participant} is not a participant of ${tx.txid}`);
  if (tx.state !== 'preparing' || Object.prototype.hasOwnProperty.call(tx.votes, participant)) return tx;
  return { ...tx, votes: { ...tx.votes, [participant]: vote } };
}

/**
 * The decision, when one can be made at `now`: `abort` on the first no (reason `<participant>: <its reason>`) or once the deadline has passed
 * with votes missing, `commit` when every vote is yes; the transaction unchanged otherwise (or when
 * already decided). An abort that no participant must hear (every vote was no) is `aborted` at once. The caller logs the returned state durably before it tells any participant.
 */
export function decide(tx: CoordinatorTx, now: number): CoordinatorTx {
  if (tx.state !== 'preparing') return tx;
  const no = tx.participants.find((p) => tx.votes[p]?.vote === 'no');
  if (no !== undefined) {
    const v = tx.votes[no] as { vote: 'no'; reason: string };
    const aborting: CoordinatorTx = { ...tx, state: 'aborting', reason: `${no}: ${v.reason}` };
    // Every participant voted no: nobody holds anything to discard, the abort is complete as logged.
    return phase2Targets(aborting).length === 0 ? { ...aborting, state: 'aborted' } : aborting;
  }
  const missing = tx.participants.filter((p) => tx.votes[p] === undefined);
  if (missing.length === 0) return { ...tx, state: 'committing' };
  if (now >= tx.deadline) return { ...tx, state: 'aborting', reason: `no vote in time from ${missing.join(', ')}` };
  return tx;
}

/**
 * Who must hear the decision and has not acknowledged it. A commit goes to everyone (all voted yes);
 * an abort to everyone who did not vote no: a participant whose vote was lost or late may hold a
 * prepared state all the same.
 */
export function phase2Targets(tx: CoordinatorTx): string[] {
  if (decisionOf(tx.state) === undefined) return [];
  return tx.participants.filter((p) => !tx.acked.includes(p) && (tx.state === 'committing' || tx.state === 'committed' || tx.votes[p]?.vote !== 'no'));
}

/** Records an acknowledgement of the decision; with the last one the transaction is done. */
export function recordAck(tx: CoordinatorTx, participant: string): CoordinatorTx {
  if (!tx.participants.includes(participant)) throw new RangeError(`${participant} is not a participant of ${tx.txid}`);
  if (decisionOf(tx.state) === undefined || tx.acked.includes(participant)) return tx;
  const next = { ...tx, acked: [...tx.acked, participant] };
  if (phase2Targets(next).length > 0) return next;
  return { ...next, state: tx.state === 'committing' || tx.state === 'committed' ? 'committed' : 'aborted' };
}

/** What a coordinator answers a participant in doubt: the decision, or `pending` while there is none. */
export function statusAnswer(tx: CoordinatorTx | undefined): Decision | 'pending' {
  // Presumed abort: a transaction the coordinator has no record of never reached its commit point.
  if (tx === undefined) return 'abort';
  return decisionOf(tx.state) ?? 'pending';
}

// ---------------------------------------------------------------------------------------------
// participant

/** A participant's record of one transaction. Absent: never prepared (or prepared and forgotten by an abort). */
export type ParticipantState = 'prepared' | 'committed' | 'aborted';

export interface PrepareOutcome {
  readonly vote: Vote;
  /** Stage the operation now (durably, invisibly) before the yes is sent. */
  readonly stage: boolean;
}

/**
 * A prepare request. `refusal` is the participant's own check of the operation (undefined: it can
 * carry it out); it is consulted only for a transaction seen for the first time. A repeated prepare
 * gets the same vote; a prepare after the decision (a late duplicate) gets no, so a participant never
 * prepares a transaction it already finished.
 */
export function onPrepare(current: ParticipantState | undefined, refusal: () => string | undefined): PrepareOutcome {
  if (current === 'prepared') return { vote: { vote: 'yes' }, stage: false };
  if (current !== undefined) return { vote: { vote: 'no', reason: `transaction already ${current}` }, stage: false };
  const reason = refusal();
  return reason === undefined ? { vote: { vote: 'yes' }, stage: true } : { vote: { vote: 'no', reason }, stage: false };
}

export interface DecisionOutcome {
  /** The state to keep (and to acknowledge). */
  readonly next: ParticipantState;
  /** Make the staged operation visible now (commit of a prepared transaction). */
  readonly apply: boolean;
  /** Drop what was staged (abort of a prepared transaction). */
  readonly discard: boolean;
}

/**
 * A decision from the coordinator. Repeats are acknowledged with the state reached. A commit for a
 * transaction this participant never prepared is a protocol violation (the coordinator commits only
 * on every yes) and is refused with a RangeError: acknowledging it would claim work that was not done.
 * An abort for one it never prepared is acknowledged: its vote was no, or lost before staging.
 */
export function onDecision(current: ParticipantState | undefined, decision: Decision): DecisionOutcome {
  if (current === 'prepared') {
    return decision === 'commit' ? { next: 'committed', apply: true, discard: false } : { next: 'aborted', apply: false, discard: true };
  }
  if (current === undefined) {
    if (decision === 'commit') throw new RangeError('commit of a transaction this participant never prepared');
    return { next: 'aborted', apply: false, discard: false };
  }
  if ((current === 'committed') !== (decision === 'commit')) {
    throw new RangeError(`decision ${decision} for a transaction already ${current}`);
  }
  return { next: current, apply: false, discard: false };
}
