/**
 * The two-phase commit coordinator of critical operations: its decision log is
 * `critical_transactions` in PostgreSQL; the rules are sync-core's two-phase.ts (this class only keeps
 * their states durably and carries the messages). Participants: the server (`PostgresParticipant`,
 * named `server`) and every host the operation names, reached through `AgentParticipants`.
 *
 * - `begin`: log `preparing`, ask everyone to prepare (an agent that cannot be reached, or does not
 *   answer by the deadline, has not voted), log the decision (the commit point: a conditional update
 *   from `preparing`, so of two coordinators deciding the same transaction only one wins, and the other
 *   follows it), then phase 2 once; returns the transaction as logged.
 * - `recover` (at start and every `retryMs`, on every replica): decides `abort` for transactions whose
 *   deadline passed undecided (presumed abort: their coordinator died mid-vote), repeats phase 2 for
 *   decided ones some participant has not acknowledged (an agent offline since it voted), and finishes
 *   prepared transactions of the server that outlived their decision, or that the log knows nothing of
 *   (rolled back: they never reached a commit point).
 * - `status`: what an agent in doubt is told.
 * - `prune` (from the recovery loop): deletes finished transactions (`committed` / `aborted`, so every
 *   participant that had to hear the decision acknowledged it) completed more than a retention period
 *   ago, with their `critical_applied` rows; `critical_state` (what each host holds) stays. It raises
 *   `critical_pruned.max_txid` in the same statement, so `status` presumes abort only for txids above
 *   it: a txid at or below it may be a pruned commit (see `status`).
 */
import { randomFillSync } from 'node:crypto';
import type { DataSource } from 'typeorm';
import type { CriticalOperation, CriticalTxSummary, CriticalTxView } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { beginTx, decide, decisionOf, phase2Targets, recordAck, recordVote, SERVER_PARTICIPANT, statusAnswer, uuidV7Generator } from '@fleet/sync-core';
import type { CoordinatorTx, Decision, Vote } from '@fleet/sync-core';
import type { PostgresParticipant } from './postgres-participant';

/**
 * Why a port: the coordinator speaks to agents over NATS request/reply (the change-log app's adapter),
 * and nothing here needs more than these two calls.
 */
export interface AgentParticipants {
  /** The agent's vote; throws when it could not be asked or did not answer (no vote). */
  prepare(agentId: string, txid: string, operation: CriticalOperation, deadline: number, timeoutMs: number): Promise<Vote>;
  /** The state the agent acknowledged; throws when it could not be told. */
  decide(agentId: string, txid: string, decision: Decision, timeoutMs: number): Promise<'committed' | 'aborted'>;
}

export interface CriticalCoordinatorOptions {
  /** Default time participants have to vote (ms). */
  readonly voteTimeoutMs: number;
  /** How long one phase-2 message may take (ms). Default 5 s. */
  readonly decisionTimeoutMs?: number;
  /**
   * `recover` leaves a transaction to the coordinator that began it for this long past its deadline
   * (undecided) or its decision (not acknowledged), so replicas do not race it in the normal case.
   * Default 2 s. A race is safe either way.
   */
  readonly graceMs?: number;
  readonly now?: () => number;
  readonly newId?: () => string;
  readonly onEvent?: (e: CriticalEvent) => void;
  /** TEST ONLY: awaited at these points of `begin` (the change-log wires its failpoints here, to crash the process there). */
  readonly at?: (step: 'votes-in' | 'decision-logged', txid: string) => Promise<void>;
}

export type CriticalEvent =
  | { readonly type: 'decided'; readonly txid: string; readonly decision: Decision; readonly reason?: string; readonly by: 'begin' | 'recover' }
  | { readonly type: 'completed'; readonly txid: string; readonly state: 'committed' | 'aborted' }
  | { readonly type: 'phase2-failed'; readonly txid: string; readonly participant: string; readonly error: unknown }
  | { readonly type: 'recovery-failed'; readonly txid: string; readonly error: unknown }
  /** A prepared transaction of the server outlived its decision (or was never logged): finished by recovery. */
  | { readonly type: 'orphan-finished'; readonly txid: string; readonly decision: Decision; readonly logged: boolean }
  /** Finished transactions deleted from the log by `prune` (one event per batch). */
  | { readonly type: 'pruned'; readonly committed: number; readonly aborted: number };

/** What one `prune` call deleted. */
export interface PruneResult {
  readonly committed: number;
  readonly aborted: number;
}

interface TxRow {
  txid: string;
  kind: CriticalOperation['kind'];
  name: string;
  participants: string[];
  state: CoordinatorTx['state'];
  votes: Record<string, Vote>;
  acked: string[];
  reason: string | null;
  deadline: Date;
  created_at: Date;
  decided_at: Date | null;
  completed_at: Date | null;
}

/** Agents told a decision at once (each a NATS request); the rest wait their turn. */
const PHASE2_CONCURRENCY = 64;

const COLUMNS = 'txid, kind, name, participants, state, votes, acked, reason, deadline, created_at, decided_at, completed_at';

function toTx(r: TxRow): CoordinatorTx {
  return { txid: r.txid, participants: r.participants, state: r.state, votes: r.votes, acked: r.acked, deadline: r.deadline.getTime(), ...(r.reason === null ? {} : { reason: r.reason }) };
}

function toView(r: TxRow): CriticalTxView {
  return {
    txid: r.txid,
    kind: r.kind,
    name: r.name,
    participants: r.participants,
    state: r.state,
    votes: r.votes,
    acked: r.acked,
    ...(r.reason === null ? {} : { reason: r.reason }),
    deadline: r.deadline.getTime(),
    createdAt: r.created_at.getTime(),
    ...(r.decided_at === null ? {} : { decidedAt: r.decided_at.getTime() }),
    ...(r.completed_at === null ? {} : { completedAt: r.completed_at.getTime() }),
  };
}

export class CriticalCoordinator {
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly decisionTimeoutMs: number;
  private readonly graceMs: number;

  constructor(
    private readonly ds: DataSource,
    private readonly server: PostgresParticipant,
    private readonly agents: AgentParticipants,
    private readonly o: CriticalCoordinatorOptions,
  ) {
    this.now = o.now ?? Date.now;
    this.newId = o.newId ?? uuidV7Generator(this.now, randomFillSync);
    this.decisionTimeoutMs = o.decisionTimeoutMs ?? 5000;
    this.graceMs = o.graceMs ?? 2000;
  }

  /** Runs one critical operation on the server and `agents`, all or nothing. Resolves with the transaction once decided (and phase 2 tried once). */
  async begin(operation: CriticalOperation, agents: readonly string[], voteTimeoutMs = this.o.voteTimeoutMs): Promise<CriticalTxView> {
    await this.server.assertEnabled();
    const txid = this.newId();
    const deadline = this.now() + voteTimeoutMs;
    const tx = beginTx(txid, [SERVER_PARTICIPANT, ...agents], deadline);
    // The logged deadline is on PostgreSQL's clock, like `decided_at`: recovery, on any replica, compares
    // them with PostgreSQL's `now()`, never with its own clock (a replica whose clock ran ahead presumed
    // abort of transactions still collecting votes).
    await this.ds.query(`insert into critical_transactions (txid, kind, name, participants, state, deadline) values ($1, $2, $3, $4, 'preparing', now() + $5 * interval '1 millisecond')`, [
      txid,
      operation.kind,
      operation.name,
      tx.participants,
      voteTimeoutMs,
    ]);
    try {
      return await this.run(tx, operation, agents);
    } catch (e) {
      // It is logged: recovery finishes it, and the operator needs its id to follow it.
      throw new FleetError('FLEET_INFRA_001', `critical transaction ${txid}: ${e instanceof Error ? e.message : String(e)} (recovery finishes it; show it by its id)`, { cause: e, details: { txid } });
    }
  }

  private async run(logged: CoordinatorTx, operation: CriticalOperation, agents: readonly string[]): Promise<CriticalTxView> {
    const { txid, deadline } = logged;
    let tx = logged;

    // Phase 1: every participant at once; the first no decides without waiting for the others.
    let serverPrepared: Promise<unknown> = Promise.resolve();
    await new Promise<void>((resolve) => {
      let pending = tx.participants.length;
      const settle = (p: string, vote: Vote | undefined): void => {
        // A reason is the participant's text (an error message, maybe long): kept short in the log.
        if (vote !== undefined) tx = recordVote(tx, p, vote.vote === 'no' && vote.reason.length > 1000 ? { vote: 'no', reason: `${vote.reason.slice(0, 999)}…` } : vote);
        pending--;
        if (pending === 0 || vote?.vote === 'no') resolve();
      };
      const timer = setTimeout(resolve, Math.max(0, deadline - this.now()));
      timer.unref();
      for (const p of tx.participants) {
        const ask = p === SERVER_PARTICIPANT ? this.server.prepare(txid, operation, agents) : this.agents.prepare(p, txid, operation, deadline, Math.max(1, deadline - this.now()));
        if (p === SERVER_PARTICIPANT) serverPrepared = ask.catch(() => undefined);
        ask.then(
          (v) => settle(p, v),
          () => settle(p, undefined),
        );
      }
    });
    await this.o.at?.('votes-in', txid);
    const decided = decide(tx, this.now());
    tx = await this.logDecision(decided.state === 'preparing' ? decide(tx, Math.max(this.now(), deadline)) : decided, 'begin');
    // An abort decided early (a no, or the deadline) must not overtake the server's own prepare: a
    // ROLLBACK PREPARED before the PREPARE would leave it prepared for ever. Agents need no such wait:
    // one that hears the abort first records it and refuses the late prepare (sync-core onPrepare).
    await serverPrepared;
    await this.o.at?.('decision-logged', txid);
    // And when another coordinator's recovery decided this abort and told the server before our PREPARE
    // landed, the server counts as told: roll back once more (idempotent), rather than leave the prepared
    // transaction holding its rows until the next recovery pass.
    if (decisionOf(tx.state) === 'abort') await this.server.abort(txid).catch(() => undefined);
    await this.phase2(tx);
    return this.show(txid);
  }

  /**
   * Logs a decision made from `tx` (state `committing` / `aborting`, or `aborted` at once), if the
   * log still says `preparing`; returns the transaction as logged (the other decision when another
   * coordinator decided first).
   */
  private async logDecision(tx: CoordinatorTx, by: 'begin' | 'recover'): Promise<CoordinatorTx> {
    const done = tx.state === 'aborted' || tx.state === 'committed';
    const rows = (await this.ds.query(
      `update critical_transactions set state = $2, votes = $3::jsonb, reason = $4, decided_at = now(), completed_at = case when $5 then now() end
       where txid = $1 and state = 'preparing' returning ${COLUMNS}`,
      [tx.txid, tx.state, JSON.stringify(tx.votes), tx.reason ?? null, done],
    )) as [TxRow[], number];
    const row = rows[0][0];
    if (row !== undefined) {
      const decision = decisionOf(tx.state) as Decision;
      this.o.onEvent?.({ type: 'decided', txid: tx.txid, decision, ...(tx.reason === undefined ? {} : { reason: tx.reason }), by });
      if (done) this.o.onEvent?.({ type: 'completed', txid: tx.txid, state: tx.state as 'committed' | 'aborted' });
      return toTx(row);
    }
    return toTx(await this.row(tx.txid));
  }

  /**
   * Tells every participant that has not acknowledged the decision (at most PHASE2_CONCURRENCY agents
   * at a time), then records the round's acknowledgements in one transaction: a decision to a thousand
   * hosts is one row update, not a thousand queued on the service's small pool.
   */
  private async phase2(tx: CoordinatorTx): Promise<void> {
    const decision = decisionOf(tx.state);
    if (decision === undefined) return;
    const acked: string[] = [];
    const failures: string[] = [];
    const tell = async (p: string): Promise<void> => {
      try {
        if (p === SERVER_PARTICIPANT) {
          if (decision === 'commit') await this.server.commit(tx.txid);
          else await this.server.abort(tx.txid);
        } else {
          await this.agents.decide(p, tx.txid, decision, this.decisionTimeoutMs);
        }
        acked.push(p);
      } catch (error) {
        failures.push(`${p}: ${error instanceof Error ? error.message : String(error)}`);
        this.o.onEvent?.({ type: 'phase2-failed', txid: tx.txid, participant: p, error });
      }
    };
    const targets = phase2Targets(tx);
    for (let i = 0; i < targets.length; i += PHASE2_CONCURRENCY) await Promise.all(targets.slice(i, i + PHASE2_CONCURRENCY).map(tell));
    await this.recordAcks(tx.txid, acked, failures.length === 0 ? null : failures.slice(0, 5).join('; ').slice(0, 1000));
  }

  private async recordAcks(txid: string, participants: readonly string[], lastError: string | null): Promise<void> {
    await this.ds.transaction(async (m) => {
      const rows = (await m.query(`select ${COLUMNS} from critical_transactions where txid = $1 for update`, [txid])) as TxRow[];
      const row = rows[0];
      if (row === undefined) return;
      const before = toTx(row);
      let after = before;
      for (const p of participants) after = recordAck(after, p);
      const done = after.state !== before.state;
      await m.query(`update critical_transactions set acked = $2, state = $3, completed_at = case when $4 then now() else completed_at end, last_error = $5 where txid = $1`, [
        txid,
        after.acked,
        after.state,
        done,
        lastError,
      ]);
      if (done) this.o.onEvent?.({ type: 'completed', txid, state: after.state as 'committed' | 'aborted' });
    });
  }

  /**
   * One recovery pass: presumed abort of undecided transactions past their deadline, phase 2 again for
   * decided ones not fully acknowledged, roll-back of the server's prepared transactions the log does
   * not know. Returns how many transactions it touched.
   */
  async recover(): Promise<number> {
    let touched = 0;
    // Every time compared here is PostgreSQL's (`deadline`, `decided_at`, `now()`): the same for every replica.
    const grace = [Math.max(0, this.graceMs)];
    const undecided = (await this.ds.query(`select ${COLUMNS} from critical_transactions where state = 'preparing' and deadline < now() - $1 * interval '1 millisecond' order by created_at limit 100`, grace)) as TxRow[];
    // One transaction's failure (a participant's error, a busy prepared transaction) must not stop the pass.
    const each = async (txid: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
        touched++;
      } catch (error) {
        this.o.onEvent?.({ type: 'recovery-failed', txid, error });
      }
    };
    for (const r of undecided) {
      // Its coordinator kept the votes in memory and stopped before deciding: the log has none of them.
      const presumed = { ...decide(toTx(r), Math.max(this.now(), r.deadline.getTime())), reason: 'undecided at the deadline (its coordinator stopped mid-vote): presumed abort' };
      await each(r.txid, async () => this.phase2(await this.logDecision(presumed, 'recover')));
    }
    // Oldest attempt first (`last_attempt_at`), so transactions stuck on a host that is gone do not starve newer ones.
    const unacked = (await this.ds.query(
      `select ${COLUMNS} from critical_transactions where state in ('committing', 'aborting') and decided_at < now() - $1 * interval '1 millisecond' order by last_attempt_at nulls first, decided_at limit 100`,
      grace,
    )) as TxRow[];
    await Promise.all(
      unacked.map((r) =>
        each(r.txid, async () => {
          await this.ds.query('update critical_transactions set last_attempt_at = now() where txid = $1', [r.txid]);
          await this.phase2(toTx(r));
        }),
      ),
    );
    // The server's prepared transactions against the log: none should outlive its decision.
    for (const gid of await this.server.prepared()) {
      await each(gid, async () => {
        const rows = (await this.ds.query(`select state, decided_at >= now() - $2 * interval '1 millisecond' as recent from critical_transactions where txid = $1`, [gid, ...grace])) as { state: CoordinatorTx['state']; recent: boolean | null }[];
        const state = rows[0]?.state;
        if (state === 'preparing') return; // undecided: its coordinator, or the presumed abort above, finishes it
        // Decided a moment ago: its coordinator's phase 2 is on it (both at once would make one fail "busy").
        if (rows[0]?.recent === true) return;
        // Unknown to the log (it never reached its commit point) or decided abort: roll back; decided commit: commit.
        const decision: Decision = state !== undefined && decisionOf(state) === 'commit' ? 'commit' : 'abort';
        if (decision === 'commit') await this.server.commit(gid);
        else await this.server.abort(gid);
        this.o.onEvent?.({ type: 'orphan-finished', txid: gid, decision, logged: state !== undefined });
      });
    }
    return touched;
  }

  /**
   * What an agent in doubt is told about `txid`. When the log holds it: its decision, or `pending`.
   * When it does not, presumed abort holds only for a txid above `critical_pruned.max_txid` (one
   * statement reads the row and the mark, and `prune` deletes and raises the mark in one statement, so
   * a txid is either found or at or below the mark). At or below it, the transaction may have been
   * pruned after a commit. A pruned transaction was acknowledged by every participant that had to hear
   * its decision, so no host can be in doubt about it unless its store went back in time (restored from
   * a backup taken between its prepare and the decision). Then: `commit` if the server holds the
   * transaction's entry for this host in `critical_state` (written only by a committed transaction,
   * and kept), otherwise FLEET_TPC_004: the host stays in doubt, since either answer could be wrong.
   */
  async status(agentId: string, txid: string): Promise<Decision | 'pending'> {
    const rows = (await this.ds.query(
      `select (select row_to_json(t) from (select ${COLUMNS} from critical_transactions where txid = $1) t) as row,
              (select max_txid >= $1::uuid from critical_pruned) as pruned_range,
              exists (select 1 from critical_state where agent_id = $2 and txid = $1) as held`,
      [txid, agentId],
    )) as { row: (Omit<TxRow, 'deadline'> & { deadline: string }) | null; pruned_range: boolean | null; held: boolean }[];
    const r = rows[0];
    const row = r?.row ?? undefined;
    if (row !== undefined && !row.participants.includes(agentId)) {
      throw new FleetError('FLEET_TPC_001', `agent ${agentId} is not a participant of critical transaction ${txid}`, { details: { txid, agentId } });
    }
    if (row !== undefined) return statusAnswer(toTx({ ...row, deadline: new Date(row.deadline) } as TxRow));
    if (r?.pruned_range !== true) return statusAnswer(undefined); // never logged: it never reached a commit point
    if (r.held) return 'commit'; // critical_state holds it for this host: only a commit writes it
    throw new FleetError(
      'FLEET_TPC_004',
      `critical transaction ${txid} is not in the log any more (finished and pruned) and the server holds nothing of it for ${agentId}: its decision cannot be told, the host stays in doubt (see docs/critical-operations.md, "Retention")`,
      { details: { txid, agentId } },
    );
  }

  /**
   * Deletes up to `limit` finished transactions completed before PostgreSQL's `now() - retentionMs` (their
   * `critical_applied` rows too) and raises `critical_pruned.max_txid` over them, in one statement.
   * Finished means `committed` / `aborted` (every participant that had to hear the decision
   * acknowledged it: recovery has nothing left to do), checked again here on the arrays themselves,
   * and no prepared transaction of the server left under its id. Rows are taken `for update skip
   * locked`, so replicas pruning at once take different rows. Returns what it deleted.
   */
  async prune(retentionMs: number, limit = 500): Promise<PruneResult> {
    const rows = (await this.ds.query(
      `with doomed as (
         select txid from critical_transactions t
          where state in ('committed', 'aborted') and completed_at < now() - $1 * interval '1 millisecond'
            and not exists (select 1 from unnest(t.participants) p
                             where not (p = any (t.acked)) and (t.state = 'committed' or coalesce(t.votes -> p ->> 'vote', '') <> 'no'))
            and not exists (select 1 from pg_prepared_xacts x where x.gid = 'fleet_tpc_' || t.txid::text)
          order by completed_at
          limit $2
          for update skip locked
       ), gone as (
         delete from critical_transactions t using doomed where t.txid = doomed.txid returning t.txid, t.state
       ), applied as (
         delete from critical_applied a using gone where a.txid = gone.txid
       ), mark as (
         insert into critical_pruned (id, max_txid, pruned)
         select true, (select txid from gone order by txid desc limit 1), (select count(*) from gone)
          where exists (select 1 from gone)
         on conflict (id) do update set max_txid = greatest(critical_pruned.max_txid, excluded.max_txid), pruned = critical_pruned.pruned + excluded.pruned, updated_at = now()
       )
       select count(*) filter (where state = 'committed')::int as committed, count(*) filter (where state = 'aborted')::int as aborted from gone`,
      [retentionMs, limit],
    )) as PruneResult[];
    const r = rows[0] ?? { committed: 0, aborted: 0 };
    if (r.committed + r.aborted > 0) this.o.onEvent?.({ type: 'pruned', committed: r.committed, aborted: r.aborted });
    return { committed: r.committed, aborted: r.aborted };
  }

  async show(txid: string): Promise<CriticalTxView> {
    return toView(await this.row(txid));
  }

  /** Newest first; summaries (counts, not the per-participant arrays): `show` has the rest. */
  async list(o: { state?: CriticalTxView['state']; limit?: number } = {}): Promise<CriticalTxSummary[]> {
    const rows = (await this.ds.query(`select ${COLUMNS} from critical_transactions where ($1::text is null or state = $1) order by created_at desc, txid desc limit $2`, [
      o.state ?? null,
      o.limit ?? 50,
    ])) as TxRow[];
    return rows.map((r) => {
      const { participants, votes: _votes, acked, ...rest } = toView(r);
      return { ...rest, hosts: participants.length - 1, acked: acked.length };
    });
  }

  private async row(txid: string): Promise<TxRow> {
    const rows = (await this.ds.query(`select ${COLUMNS} from critical_transactions where txid = $1`, [txid])) as TxRow[];
    const row = rows[0];
    if (row === undefined) throw new FleetError('FLEET_TPC_001', `no critical transaction ${txid} (finished ones are pruned after the retention period)`, { details: { txid } });
    return row;
  }
}
