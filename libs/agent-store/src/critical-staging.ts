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
 *
 * Retention (`prune`): decided rows (`committed` / `aborted`) older than a retention period are
 * deleted; `prepared` rows (in doubt) never are, nor is `critical_state`. What a decided row answered:
 * - a late prepare is refused (the row said "already decided"): `prune` keeps, in `meta`, the latest
 *   decision time it pruned (W), and a prepare first seen here whose deadline is before W +
 *   PRUNED_PREPARE_SLACK_MS is refused (and not recorded). A pruned transaction's deadline is at
 *   most its host decision time plus the vote timeout (120 s at most) plus the clock difference
 *   between coordinator and host, so its prepare, however late, is refused; a current prepare's
 *   deadline is in the future, past W + the slack since W is at least the retention (1 day or more) old.
 * - a repeated commit is acknowledged when `critical_state` still holds the transaction (only its
 *   commit wrote it there); otherwise FLEET_TPC_003, as for lost staging. The coordinator sends a
 *   decision again only to a participant whose acknowledgement it has not recorded, so this needs its
 *   acknowledgement lost for longer than the retention and the entry replaced meanwhile.
 * - a repeated abort is acknowledged as before (an abort of an unknown transaction always is).
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

/**
 * A prepare first seen here whose deadline is earlier than the latest pruned decision time plus this
 * is refused: it may be a late copy of a pruned transaction's prepare (see the header).
 */
export const PRUNED_PREPARE_SLACK_MS = 3_600_000;
/** The shortest retention `prune` accepts: past the slack, with room for a host clock ahead of the coordinator's. */
export const MIN_CRITICAL_RETENTION_MS = 86_400_000;

const PRUNED_META_KEY = 'critical_pruned';

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
    heldBy: Database.Statement<[string], { txid: string }>;
    prunable: Database.Statement<[number, number], { txid: string; decided_at: number }>;
    drop: Database.Statement<[string]>;
    getPruned: Database.Statement<[string], { v: string }>;
    putPruned: Database.Statement<[string, string]>;
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
      heldBy: db.prepare('SELECT txid FROM critical_state WHERE txid = ? LIMIT 1'),
      prunable: db.prepare("SELECT txid, decided_at FROM critical_staged WHERE state <> 'prepared' AND decided_at < ? ORDER BY decided_at LIMIT ?"),
      drop: db.prepare("DELETE FROM critical_staged WHERE txid = ? AND state <> 'prepared'"),
      getPruned: db.prepare('SELECT v FROM meta WHERE k = ?'),
      putPruned: db.prepare('INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v'),
    };
  }

  /**
   * Phase 1: stages the operation and votes yes, or votes no with the reason (an expired certificate,
   * another transaction holding the same entry prepared). A no is recorded as `aborted`: whatever the
   * coordinator decides can then only be an abort, and a repeated prepare gets no again. `deadline`
   * (the prepare's, epoch ms) lets a late copy of a pruned transaction's prepare be refused.
   */
  prepare(txid: string, operation: CriticalOperation, deadline?: number): Vote {
    return this.durable(() =>
      this.db.transaction((): Vote => {
        const row = this.st.get.get(txid);
        // A late copy of a pruned transaction's prepare: no, and nothing recorded (its outcome, maybe a
        // commit, is not known here any more: an `aborted` row would contradict a repeated commit).
        const stale = row === undefined ? this.staleness(txid, deadline) : undefined;
        if (stale !== undefined) return { vote: 'no', reason: stale };
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

  /** Why a prepare first seen now is refused as older than what was pruned (undefined: it is not). */
  private staleness(txid: string, deadline: number | undefined): string | undefined {
    if (deadline === undefined) return undefined;
    const raw = this.st.getPruned.get(PRUNED_META_KEY)?.v;
    if (raw === undefined) return undefined;
    const { decidedBefore } = JSON.parse(raw) as { decidedBefore: number };
    if (deadline >= decidedBefore + PRUNED_PREPARE_SLACK_MS) return undefined;
    return `the prepare of ${txid} is too late (its deadline ${new Date(deadline).toISOString()} is before transactions this host decided and pruned, at ${new Date(decidedBefore).toISOString()}, plus ${PRUNED_PREPARE_SLACK_MS / 60_000} min)`;
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
        // Pruned after its commit: critical_state holding it proves the commit (nothing else writes its txid there).
        const current = row?.state ?? (this.st.heldBy.get(txid) === undefined ? undefined : 'committed');
        if (row === undefined && current === 'committed') {
          if (decision === 'commit') return 'committed';
          throw new FleetError('FLEET_TPC_003', `transaction ${txid}: decision abort for a transaction already committed`, { details: { txid, decision } });
        }
        let out;
        try {
          out = onDecision(current, decision);
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

  /**
   * Deletes up to `limit` decided transactions (`committed` / `aborted`) decided more than
   * `retentionMs` ago, and raises the pruned mark over them (one transaction). Never a `prepared` row
   * (in doubt), never `critical_state`. Returns how many went.
   */
  prune(retentionMs: number, limit = 1000): number {
    if (retentionMs < MIN_CRITICAL_RETENTION_MS) throw new RangeError(`critical retention ${retentionMs} ms is below the minimum ${MIN_CRITICAL_RETENTION_MS} ms`);
    const cutoff = this.now() - retentionMs;
    return this.db
      .transaction((): number => {
        const rows = this.st.prunable.all(cutoff, limit);
        if (rows.length === 0) return 0;
        for (const r of rows) this.st.drop.run(r.txid);
        const raw = this.st.getPruned.get(PRUNED_META_KEY)?.v;
        const before = raw === undefined ? { decidedBefore: 0, pruned: 0 } : (JSON.parse(raw) as { decidedBefore: number; pruned: number });
        const latest = Math.max(before.decidedBefore, ...rows.map((r) => r.decided_at));
        this.st.putPruned.run(PRUNED_META_KEY, JSON.stringify({ decidedBefore: latest, pruned: before.pruned + rows.length }));
        return rows.length;
      })
      .immediate();
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
