/**
 * The agent's side of a critical operation (two-phase commit, sync-core two-phase.ts): staging in
 * SQLite. A prepare writes the operation to `critical_staged` (durable, not yet in effect) and votes; a
 * commit moves it into `critical_state` (what this host now holds) in the same SQLite transaction
 * that records the decision; an abort drops it. Each step is one IMMEDIATE transaction with
 * `synchronous = FULL` (the store's default), so a vote is sent only once its staging survived a
 * power loss, and a crash between the two phases leaves the row `prepared`: in doubt, to be settled
 * with the coordinator (agent-sync's CriticalParticipant asks it on every reconnect).
 *
 * Staged values are cleared once decided: a credential hash is then kept once, in `critical_state`.
 */
import type Database from 'better-sqlite3';
import type { CriticalOperation } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { onDecision, onPrepare } from '@fleet/sync-core';
import type { Decision, ParticipantState, Vote } from '@fleet/sync-core';

/** One entry of what this host holds, as committed. */
export interface CriticalEntry {
  readonly kind: CriticalOperation['kind'];
  readonly name: string;
  readonly value: CriticalOperation['value'];
  readonly txid: string;
  readonly updatedAt: number;
}

export interface InDoubt {
  readonly txid: string;
  readonly kind: CriticalOperation['kind'];
  readonly name: string;
  readonly preparedAt: number;
}

interface StagedRow {
  txid: string;
  kind: string;
  name: string;
  value: string | null;
  state: ParticipantState;
}

export class CriticalStaging {
  private readonly st: {
    get: Database.Statement<[string], StagedRow>;
    holder: Database.Statement<[string, string, string], { txid: string }>;
    stage: Database.Statement<[string, string, string, string, number]>;
    decide: Database.Statement<[ParticipantState, number, string]>;
    record: Database.Statement<[string, string, string, ParticipantState, number]>;
    apply: Database.Statement<[string, string, string, string, number]>;
    inDoubt: Database.Statement<[], { txid: string; kind: string; name: string; prepared_at: number }>;
    entries: Database.Statement<[], { kind: string; name: string; value: string; txid: string; updated_at: number }>;
  };

  constructor(
    private readonly db: Database.Database,
    private readonly now: () => number,
  ) {
    this.st = {
      get: db.prepare('SELECT txid, kind, name, value, state FROM critical_staged WHERE txid = ?'),
      holder: db.prepare("SELECT txid FROM critical_staged WHERE state = 'prepared' AND kind = ? AND name = ? AND txid <> ? LIMIT 1"),
      stage: db.prepare("INSERT INTO critical_staged (txid, kind, name, value, state, prepared_at) VALUES (?, ?, ?, ?, 'prepared', ?)"),
      decide: db.prepare('UPDATE critical_staged SET state = ?, value = NULL, decided_at = ? WHERE txid = ?'),
      record: db.prepare('INSERT INTO critical_staged (txid, kind, name, state, decided_at) VALUES (?, ?, ?, ?, ?)'),
      apply: db.prepare(
        'INSERT INTO critical_state (kind, name, value, txid, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO UPDATE SET value = excluded.value, txid = excluded.txid, updated_at = excluded.updated_at',
      ),
      inDoubt: db.prepare("SELECT txid, kind, name, prepared_at FROM critical_staged WHERE state = 'prepared' ORDER BY prepared_at, txid"),
      entries: db.prepare('SELECT kind, name, value, txid, updated_at FROM critical_state ORDER BY kind, name'),
    };
  }

  /**
   * Phase 1: stages the operation and votes yes, or votes no with the reason (an expired certificate,
   * another transaction holding the same entry prepared). A no is recorded as `aborted`: whatever the
   * coordinator decides can then only be an abort, and a repeated prepare gets no again.
   */
  prepare(txid: string, operation: CriticalOperation): Vote {
    return this.durable(() =>
      this.db.transaction((): Vote => {
        const row = this.st.get.get(txid);
        const outcome = onPrepare(row?.state, () => this.refusal(txid, operation));
        if (outcome.stage) this.st.stage.run(txid, operation.kind, operation.name, JSON.stringify(operation.value), this.now());
        else if (row === undefined) this.st.record.run(txid, operation.kind, operation.name, 'aborted', this.now());
        return outcome.vote;
      }).immediate(),
    );
  }

  /** Runs `fn` with `synchronous = FULL` (a commit then survives a power loss, not only a crash of the agent). */
  private durable<T>(fn: () => T): T {
    const level = Number(this.db.pragma('synchronous', { simple: true }));
    if (level >= 2) return fn();
    this.db.pragma('synchronous = FULL');
    try {
      return fn();
    } finally {
      this.db.pragma(`synchronous = ${level}`);
    }
  }

  private refusal(txid: string, op: CriticalOperation): string | undefined {
    const held = this.st.holder.get(op.kind, op.name, txid);
    if (held !== undefined) return `${op.kind} ${op.name} is held prepared by transaction ${held.txid}`;
    if (op.kind === 'certificate') {
      const notAfter = Date.parse(op.value.notAfter);
      const now = this.now();
      if (notAfter <= now) return `certificate ${op.name} expired at ${op.value.notAfter} (agent clock ${new Date(now).toISOString()})`;
    }
    return undefined;
  }

  /**
   * Phase 2: applies (commit) or drops (abort) what was staged, and returns the state to acknowledge.
   * A repeated decision is acknowledged again. A commit of a transaction this store holds no trace of
   * throws FLEET_TPC_003 (its staging was lost, e.g. a restore from a backup taken before the prepare).
   */
  decide(txid: string, decision: Decision): 'committed' | 'aborted' {
    return this.durable(() =>
      this.db.transaction((): 'committed' | 'aborted' => {
        const row = this.st.get.get(txid);
        let out;
        try {
          out = onDecision(row?.state, decision);
        } catch (e) {
          throw new FleetError('FLEET_TPC_003', `transaction ${txid}: ${e instanceof Error ? e.message : String(e)}`, { details: { txid, decision } });
        }
        const now = this.now();
        if (row === undefined) {
          this.st.record.run(txid, '', '', out.next, now);
        } else if (out.apply || out.discard) {
          if (out.apply) this.st.apply.run(row.kind, row.name, row.value as string, txid, now);
          this.st.decide.run(out.next, now, txid);
        }
        return out.next as 'committed' | 'aborted';
      }).immediate(),
    );
  }

  /** Transactions staged and not yet decided, oldest first. */
  inDoubt(): InDoubt[] {
    return this.st.inDoubt.all().map((r) => ({ txid: r.txid, kind: r.kind as CriticalOperation['kind'], name: r.name, preparedAt: r.prepared_at }));
  }

  /** What this host holds, committed. */
  entries(): CriticalEntry[] {
    return this.st.entries.all().map((r) => ({ kind: r.kind as CriticalOperation['kind'], name: r.name, value: JSON.parse(r.value) as CriticalOperation['value'], txid: r.txid, updatedAt: r.updated_at }));
  }
}
