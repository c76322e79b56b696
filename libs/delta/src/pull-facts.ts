/**
 * What delta-calculator records of each agent's pulls and Merkle verifications (table `agent_pulls`,
 * migration 1767225601300), and the latest push-side report its pulls carried (`PullRequest.health`,
 * protocol 2; migration 1767225601500), for the sync-health score (docs/delta-calculator.md, "Pull facts").
 *
 * The pull path is hot (a thousand agents reconnecting at once): recording is a Map update in memory,
 * coalesced per agent; `flush` writes everything held in ONE multi-row upsert, every `flushEvery` and
 * on shutdown. Several replicas flush the same agent: the upsert keeps the latest by time (the same
 * rule as `mergeFacts`, which coalesces in memory), so the order of flushes does not matter. A flush
 * that fails puts its entries back (merged with what arrived meanwhile) for the next one; at most
 * `maxAgents` distinct agents are held, beyond that new agents wait for the next flush's room
 * (counted in `dropped`). A flush whose commit the client did not see is written again: its `pulls` count twice.
 */
import type { DataSource } from 'typeorm';
import type { PullCursor, PushHealth } from '@fleet/contracts';
import { parsePullCursor } from '@fleet/contracts';
import { toSafeNumber } from '@fleet/server-store/src/rows';

/** Cursors are stored as text, cut to this many characters (a resync cursor carries a record reference). */
export const MAX_CURSOR_TEXT = 160;

/** One agent's facts as held in memory (times: ms since the epoch, the replica's clock). */
export interface AgentPullEntry {
  readonly agentId: string;
  readonly firstPulledAt: number | null;
  readonly pulledAt: number | null;
  readonly pullFrom: string | null;
  readonly pullTo: string | null;
  readonly headSeq: number | null;
  readonly behind: number | null;
  readonly caughtUpAt: number | null;
  readonly pulls: number;
  readonly verifiedAt: number | null;
  readonly verifyDiffs: number | null;
  /** When the latest push-side report arrived (with a pull page), and what it said; all null when none did. */
  readonly healthAt: number | null;
  readonly outbox: number | null;
  readonly oldestUnsentAgeMs: number | null;
  readonly retryQueue: number | null;
  readonly failedPushes: number | null;
}

const NO_HEALTH = { healthAt: null, outbox: null, oldestUnsentAgeMs: null, retryQueue: null, failedPushes: null } as const;

/** What one answered pull page tells: the cursor asked for, the one answered, the log head read with the page, whether more follows. */
export interface PullPageFact {
  readonly from: PullCursor;
  readonly to: PullCursor;
  readonly headSeq: number;
  readonly hasMore: boolean;
  /** The agent's push side, when its request carried one (protocol 2). */
  readonly health?: PushHealth | undefined;
}

export function cursorText(c: PullCursor): string {
  const t = String(c);
  return t.length <= MAX_CURSOR_TEXT ? t : `${t.slice(0, MAX_CURSOR_TEXT - 3)}...`;
}

/** The log position a cursor stands for: a log cursor's seq, a resync or snapshot cursor's `at`. */
export function cursorPosition(c: PullCursor): number {
  const p = parsePullCursor(c);
  return p.kind === 'log' ? p.seq : p.at;
}

/**
 * Changes logged after the position a page left the agent at: 0 when the page reached the end of its
 * scopes (nothing more to pull as of the page's read), else `headSeq` minus the position answered (an
 * upper bound: the head counts changes of every scope, the agent's or not).
 */
export function behindAfter(f: PullPageFact): number {
  return f.hasMore ? Math.max(0, f.headSeq - cursorPosition(f.to)) : 0;
}

export function pullEntry(agentId: string, at: number, f: PullPageFact): AgentPullEntry {
  return {
    agentId,
    firstPulledAt: at,
    pulledAt: at,
    pullFrom: cursorText(f.from),
    pullTo: cursorText(f.to),
    headSeq: f.headSeq,
    behind: behindAfter(f),
    caughtUpAt: f.hasMore ? null : at,
    pulls: 1,
    verifiedAt: null,
    verifyDiffs: null,
    ...(f.health === undefined
      ? NO_HEALTH
      : { healthAt: at, outbox: f.health.outbox, oldestUnsentAgeMs: f.health.oldestUnsentAgeMs, retryQueue: f.health.retryQueue, failedPushes: f.health.failedPushes }),
  };
}

export function verifyEntry(agentId: string, at: number, differing: number): AgentPullEntry {
  return { agentId, firstPulledAt: null, pulledAt: null, pullFrom: null, pullTo: null, headSeq: null, behind: null, caughtUpAt: null, pulls: 0, verifiedAt: at, verifyDiffs: differing, ...NO_HEALTH };
}

const max = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.max(a, b));
const min = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));
/** `b` is at least as late as `a` (ties go to `b`, the later recorded; the SQL upsert does the same with the row flushed last). */
const later = (a: number | null, b: number | null): boolean => b !== null && (a === null || b >= a);

/** Two sets of facts of one agent as one: the latest pull, verification and push-side report by time, the earliest first pull, pulls added. The upsert's SQL is the same rule. */
export function mergeFacts(a: AgentPullEntry, b: AgentPullEntry): AgentPullEntry {
  const pull = later(a.pulledAt, b.pulledAt) ? b : a;
  const verify = later(a.verifiedAt, b.verifiedAt) ? b : a;
  const health = later(a.healthAt, b.healthAt) ? b : a;
  return {
    agentId: a.agentId,
    firstPulledAt: min(a.firstPulledAt, b.firstPulledAt),
    pulledAt: max(a.pulledAt, b.pulledAt),
    pullFrom: pull.pullFrom,
    pullTo: pull.pullTo,
    headSeq: pull.headSeq,
    behind: pull.behind,
    caughtUpAt: max(a.caughtUpAt, b.caughtUpAt),
    pulls: a.pulls + b.pulls,
    verifiedAt: max(a.verifiedAt, b.verifiedAt),
    verifyDiffs: verify.verifyDiffs,
    healthAt: max(a.healthAt, b.healthAt),
    outbox: health.outbox,
    oldestUnsentAgeMs: health.oldestUnsentAgeMs,
    retryQueue: health.retryQueue,
    failedPushes: health.failedPushes,
  };
}

/** The upsert: one statement for every agent held; on conflict, the latest by time wins column group by column group. */
export const UPSERT_AGENT_PULLS_SQL = `
  insert into agent_pulls as t (agent_id, first_pulled_at, pulled_at, pull_from, pull_to, head_seq, behind, caught_up_at, pulls, verified_at, verify_diffs,
         health_at, outbox, oldest_unsent_age_ms, retry_queue, failed_pushes, updated_at)
  select x.agent_id, to_timestamp(x.first_pulled_at / 1000.0), to_timestamp(x.pulled_at / 1000.0), x.pull_from, x.pull_to, x.head_seq, x.behind,
         to_timestamp(x.caught_up_at / 1000.0), x.pulls, to_timestamp(x.verified_at / 1000.0), x.verify_diffs,
         to_timestamp(x.health_at / 1000.0), x.outbox, x.oldest_unsent_age_ms, x.retry_queue, x.failed_pushes, now()
    from jsonb_to_recordset($1::jsonb) as x(agent_id text, first_pulled_at double precision, pulled_at double precision, pull_from text, pull_to text,
         head_seq bigint, behind bigint, caught_up_at double precision, pulls bigint, verified_at double precision, verify_diffs integer,
         health_at double precision, outbox integer, oldest_unsent_age_ms bigint, retry_queue integer, failed_pushes integer)
  on conflict (agent_id) do update set
    first_pulled_at = least(t.first_pulled_at, excluded.first_pulled_at),
    pulled_at       = greatest(t.pulled_at, excluded.pulled_at),
    pull_from       = case when excluded.pulled_at >= coalesce(t.pulled_at, '-infinity') then excluded.pull_from else t.pull_from end,
    pull_to         = case when excluded.pulled_at >= coalesce(t.pulled_at, '-infinity') then excluded.pull_to else t.pull_to end,
    head_seq        = case when excluded.pulled_at >= coalesce(t.pulled_at, '-infinity') then excluded.head_seq else t.head_seq end,
    behind          = case when excluded.pulled_at >= coalesce(t.pulled_at, '-infinity') then excluded.behind else t.behind end,
    caught_up_at    = greatest(t.caught_up_at, excluded.caught_up_at),
    pulls           = t.pulls + excluded.pulls,
    verified_at     = greatest(t.verified_at, excluded.verified_at),
    verify_diffs    = case when excluded.verified_at >= coalesce(t.verified_at, '-infinity') then excluded.verify_diffs else t.verify_diffs end,
    health_at       = greatest(t.health_at, excluded.health_at),
    outbox          = case when excluded.health_at >= coalesce(t.health_at, '-infinity') then excluded.outbox else t.outbox end,
    oldest_unsent_age_ms = case when excluded.health_at >= coalesce(t.health_at, '-infinity') then excluded.oldest_unsent_age_ms else t.oldest_unsent_age_ms end,
    retry_queue     = case when excluded.health_at >= coalesce(t.health_at, '-infinity') then excluded.retry_queue else t.retry_queue end,
    failed_pushes   = case when excluded.health_at >= coalesce(t.health_at, '-infinity') then excluded.failed_pushes else t.failed_pushes end,
    updated_at      = now()`;

export interface PullFactsOptions {
  /** Flush every this many ms (0: only when `flush` is called). */
  readonly flushEvery: number;
  /** The replica's clock, ms since the epoch. */
  readonly now: () => number;
  /** Distinct agents held between flushes at most. Default 100,000. */
  readonly maxAgents?: number;
  /** A flush failed (its entries are kept for the next one). */
  readonly onFlushError?: (e: unknown) => void;
}

/** The latest push-side report in an agent's facts (libs/observability's `PushReport`), or null when it never sent one. */
export function pushReportOf(e: AgentPullEntry): { at: number; outbox: number; oldestUnsentAgeMs: number; retryQueue: number; failedPushes: number } | null {
  if (e.healthAt === null) return null;
  return { at: e.healthAt, outbox: e.outbox ?? 0, oldestUnsentAgeMs: e.oldestUnsentAgeMs ?? 0, retryQueue: e.retryQueue ?? 0, failedPushes: e.failedPushes ?? 0 };
}

/** The facts of one agent as stored, with the change log's last push of it (`origin_progress`). */
export interface AgentPullRow extends AgentPullEntry {
  /** When the change log last appended one of its changes (the last push that brought something new); null when it never pushed. */
  readonly lastPushAt: number | null;
}

export class PullFacts {
  private pending = new Map<string, AgentPullEntry>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<number> = Promise.resolve(0);
  /** Facts not held because `maxAgents` were held already. */
  dropped = 0;
  /** Rows written by flushes so far. */
  flushed = 0;

  constructor(
    private readonly ds: DataSource,
    private readonly opts: PullFactsOptions,
  ) {}

  /** Agents with facts not flushed yet. */
  get held(): number {
    return this.pending.size;
  }

  start(): void {
    if (this.timer !== undefined || this.opts.flushEvery <= 0) return;
    this.timer = setInterval(() => void this.flush().catch(() => undefined), this.opts.flushEvery);
    this.timer.unref();
  }

  /** Stops the timer and flushes what is held (call before the pool closes). */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush().catch(() => undefined);
  }

  /** One answered pull page (with the push-side report its request carried, if any). */
  pulled(agentId: string, f: PullPageFact): void {
    this.hold(pullEntry(agentId, this.opts.now(), f));
  }

  /** The end of a Merkle exchange: equal roots (`differing` 0) or a listing of `differing` buckets. */
  verified(agentId: string, differing: number): void {
    this.hold(verifyEntry(agentId, this.opts.now(), differing));
  }

  private hold(e: AgentPullEntry): void {
    const had = this.pending.get(e.agentId);
    if (had !== undefined) this.pending.set(e.agentId, mergeFacts(had, e));
    else if (this.pending.size < (this.opts.maxAgents ?? 100_000)) this.pending.set(e.agentId, e);
    else this.dropped++;
  }

  /** Writes everything held in one upsert (flushes are serialised). Resolves to the rows written. */
  flush(): Promise<number> {
    const run = this.flushing.catch(() => 0).then(() => this.flushOnce());
    this.flushing = run;
    return run;
  }

  private async flushOnce(): Promise<number> {
    if (this.pending.size === 0) return 0;
    const batch = this.pending;
    this.pending = new Map();
    const rows = [...batch.values()].map((e) => ({
      agent_id: e.agentId,
      first_pulled_at: e.firstPulledAt,
      pulled_at: e.pulledAt,
      pull_from: e.pullFrom,
      pull_to: e.pullTo,
      head_seq: e.headSeq,
      behind: e.behind,
      caught_up_at: e.caughtUpAt,
      pulls: e.pulls,
      verified_at: e.verifiedAt,
      verify_diffs: e.verifyDiffs,
      health_at: e.healthAt,
      outbox: e.outbox,
      oldest_unsent_age_ms: e.oldestUnsentAgeMs,
      retry_queue: e.retryQueue,
      failed_pushes: e.failedPushes,
    }));
    try {
      await this.ds.query(UPSERT_AGENT_PULLS_SQL, [JSON.stringify(rows)]);
    } catch (e) {
      // Kept for the next flush, merged with what arrived meanwhile (the merge does not depend on order).
      // Within `maxAgents` like any hold: an outage cannot grow what is held past it.
      for (const old of batch.values()) {
        const now = this.pending.get(old.agentId);
        if (now !== undefined) this.pending.set(old.agentId, mergeFacts(old, now));
        else if (this.pending.size < (this.opts.maxAgents ?? 100_000)) this.pending.set(old.agentId, old);
        else this.dropped++;
      }
      this.opts.onFlushError?.(e);
      throw e;
    }
    this.flushed += rows.length;
    return rows.length;
  }
}

const ROW_COLUMNS = `coalesce(p.agent_id, o.origin) as agent_id,
  extract(epoch from p.first_pulled_at) * 1000 as first_pulled_at, extract(epoch from p.pulled_at) * 1000 as pulled_at,
  p.pull_from, p.pull_to, p.head_seq, p.behind, extract(epoch from p.caught_up_at) * 1000 as caught_up_at, coalesce(p.pulls, 0) as pulls,
  extract(epoch from p.verified_at) * 1000 as verified_at, p.verify_diffs, extract(epoch from o.last_appended_at) * 1000 as last_push_at,
  extract(epoch from p.health_at) * 1000 as health_at, p.outbox, p.oldest_unsent_age_ms, p.retry_queue, p.failed_pushes`;

type RawRow = Record<'agent_id' | 'pull_from' | 'pull_to', string | null> &
  Record<
    | 'first_pulled_at'
    | 'pulled_at'
    | 'head_seq'
    | 'behind'
    | 'caught_up_at'
    | 'pulls'
    | 'verified_at'
    | 'verify_diffs'
    | 'last_push_at'
    | 'health_at'
    | 'outbox'
    | 'oldest_unsent_age_ms'
    | 'retry_queue'
    | 'failed_pushes',
    string | number | null
  >;

const num = (v: string | number | null, what: string): number | null => (v === null ? null : typeof v === 'number' ? v : Number.isInteger(Number(v)) ? toSafeNumber(v, what) : Number(v));
const ms = (v: string | number | null): number | null => (v === null ? null : Math.round(Number(v)));

function toRow(r: RawRow): AgentPullRow {
  return {
    agentId: r.agent_id as string,
    firstPulledAt: ms(r.first_pulled_at),
    pulledAt: ms(r.pulled_at),
    pullFrom: r.pull_from,
    pullTo: r.pull_to,
    headSeq: num(r.head_seq, 'head_seq'),
    behind: num(r.behind, 'behind'),
    caughtUpAt: ms(r.caught_up_at),
    pulls: num(r.pulls, 'pulls') ?? 0,
    verifiedAt: ms(r.verified_at),
    verifyDiffs: num(r.verify_diffs, 'verify_diffs'),
    lastPushAt: ms(r.last_push_at),
    healthAt: ms(r.health_at),
    outbox: num(r.outbox, 'outbox'),
    oldestUnsentAgeMs: num(r.oldest_unsent_age_ms, 'oldest_unsent_age_ms'),
    retryQueue: num(r.retry_queue, 'retry_queue'),
    failedPushes: num(r.failed_pushes, 'failed_pushes'),
  };
}

/**
 * The stored facts of these agents, with their last push (`origin_progress`): one row per agent that
 * pulled or pushed, in no particular order; an agent neither did is absent.
 */
export async function readAgentPulls(ds: DataSource, agentIds: readonly string[]): Promise<AgentPullRow[]> {
  if (agentIds.length === 0) return [];
  const rows = (await ds.query(
    `select ${ROW_COLUMNS}
       from unnest($1::text[]) as a(id)
       left join agent_pulls p on p.agent_id = a.id
       left join origin_progress o on o.origin = a.id
      where p.agent_id is not null or o.origin is not null`,
    [agentIds],
  )) as RawRow[];
  return rows.map(toRow);
}

/** Every agent that pulled or pushed (the server's own origin left out), by id. Reads one row per agent. */
export async function readAllAgentPulls(ds: DataSource, serverOrigin: string): Promise<AgentPullRow[]> {
  const rows = (await ds.query(
    `select ${ROW_COLUMNS}
       from agent_pulls p full join origin_progress o on o.origin = p.agent_id
      where coalesce(p.agent_id, o.origin) <> $1
      order by 1`,
    [serverOrigin],
  )) as RawRow[];
  return rows.map(toRow);
}
