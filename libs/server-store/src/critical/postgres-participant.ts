/**
 * The server's own participant in a critical operation: PostgreSQL's `PREPARE TRANSACTION`. Phase 1
 * writes the operation's rows (`critical_state` for every host, and `critical_applied`) in a
 * transaction and prepares it: durable, holding its row locks, invisible. Phase 2 is `COMMIT PREPARED`
 * or `ROLLBACK PREPARED`. A prepared transaction survives a crash of this process and of PostgreSQL
 * itself, so the coordinator's recovery can always finish it.
 *
 * Needs `max_prepared_transactions > 0` (the default is 0): `enabled()` tells.
 */
import type { PoolClient } from 'pg';
import type { DataSource } from 'typeorm';
import type { CriticalOperation } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import type { Vote } from '@fleet/sync-core';

const TXID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The global transaction id of a critical transaction's prepared transaction (txid checked: it is spliced into SQL). */
export function preparedGid(txid: string): string {
  if (!TXID.test(txid)) throw new RangeError(`not a transaction id: ${JSON.stringify(txid)}`);
  return `fleet_tpc_${txid}`;
}

const GID_PREFIX = 'fleet_tpc_';

export interface PostgresParticipantOptions {
  /** How long a prepare waits for rows another critical transaction holds prepared before voting no (default 2 s). */
  readonly lockTimeoutMs?: number;
}

export class PostgresParticipant {
  private readonly lockTimeoutMs: number;

  constructor(
    private readonly ds: DataSource,
    o: PostgresParticipantOptions = {},
  ) {
    this.lockTimeoutMs = Math.max(1, Math.floor(o.lockTimeoutMs ?? 2000));
  }

  /** `max_prepared_transactions`: 0 means PostgreSQL refuses PREPARE TRANSACTION. */
  async maxPrepared(): Promise<number> {
    const rows = (await this.ds.query('show max_prepared_transactions')) as { max_prepared_transactions: string }[];
    return Number(rows[0]?.max_prepared_transactions ?? 0);
  }

  async assertEnabled(): Promise<void> {
    if ((await this.maxPrepared()) > 0) return;
    throw new FleetError('FLEET_TPC_002', 'PostgreSQL max_prepared_transactions is 0: the server cannot take part in a two-phase commit, so critical operations are refused; set it (k8s/postgres sets 64) and restart PostgreSQL');
  }

  /** Phase 1: writes the operation's rows for `agents` and prepares; votes no with the reason when that fails. */
  async prepare(txid: string, operation: CriticalOperation, agents: readonly string[]): Promise<Vote> {
    const gid = preparedGid(txid);
    if (await this.isPrepared(txid)) return { vote: 'yes' };
    return this.withClient(async (c) => {
      await c.query('begin');
      try {
        await c.query(`set local lock_timeout = ${this.lockTimeoutMs}`);
        const applied = await c.query('insert into critical_applied (txid) values ($1) on conflict do nothing returning txid', [txid]);
        if (applied.rowCount === 0) {
          await c.query('rollback');
          return { vote: 'no', reason: `transaction ${txid} was already committed here` };
        }
        await c.query(
          `insert into critical_state (agent_id, kind, name, value, txid, updated_at)
           select a, $2, $3, $4::jsonb, $5, now() from unnest($1::text[]) as a
           on conflict (agent_id, kind, name) do update set value = excluded.value, txid = excluded.txid, updated_at = excluded.updated_at`,
          [agents, operation.kind, operation.name, JSON.stringify(operation.value), txid],
        );
        await c.query(`prepare transaction '${gid}'`);
        return { vote: 'yes' };
      } catch (e) {
        await c.query('rollback').catch(() => undefined);
        return { vote: 'no', reason: prepareFailure(e, operation) };
      }
    });
  }

  /**
   * A pooled connection of the DataSource's driver, without TypeORM's query logging: a lock timeout
   * (a vote no) and an unknown prepared transaction (a repeated phase 2) are answers here, not errors.
   */
  private async withClient<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    const [client, release] = (await (this.ds.driver as unknown as { obtainMasterConnection(): Promise<[unknown, unknown]> }).obtainMasterConnection()) as [PoolClient, (err?: unknown) => void];
    let broken: unknown;
    try {
      return await fn(client);
    } catch (e) {
      broken = e;
      throw e;
    } finally {
      release(broken);
    }
  }

  /** Phase 2, commit. Repeats are fine; a transaction neither prepared nor applied here throws FLEET_TPC_003. */
  async commit(txid: string): Promise<'committed'> {
    const gid = preparedGid(txid);
    const done = await this.withClient(async (c) => {
      try {
        await c.query(`commit prepared '${gid}'`);
        return true;
      } catch (e) {
        if (isUnknownGid(e)) return false;
        throw e;
      }
    });
    if (done) return 'committed';
    // Not prepared (any more): committed by an earlier attempt, or lost.
    const applied = (await this.ds.query('select 1 from critical_applied where txid = $1', [txid])) as unknown[];
    if (applied.length > 0) return 'committed';
    throw new FleetError('FLEET_TPC_003', `transaction ${txid}: PostgreSQL holds no prepared transaction ${gid} and no record of committing it`, { details: { txid, participant: 'server' } });
  }

  /** Phase 2, abort. Repeats, and an abort of a transaction never prepared here, are fine. */
  async abort(txid: string): Promise<'aborted'> {
    const gid = preparedGid(txid);
    await this.withClient(async (c) => {
      try {
        await c.query(`rollback prepared '${gid}'`);
      } catch (e) {
        if (!isUnknownGid(e)) throw e;
      }
    });
    return 'aborted';
  }

  async isPrepared(txid: string): Promise<boolean> {
    const rows = (await this.ds.query('select 1 from pg_prepared_xacts where gid = $1 and database = current_database()', [preparedGid(txid)])) as unknown[];
    return rows.length > 0;
  }

  /** Transaction ids with a prepared transaction in this database (after a crash: the ones in doubt). */
  async prepared(): Promise<string[]> {
    const rows = (await this.ds.query(`select gid from pg_prepared_xacts where database = current_database() and starts_with(gid, $1) order by prepared`, [GID_PREFIX])) as { gid: string }[];
    return rows.map((r) => r.gid.slice(GID_PREFIX.length));
  }
}

function isUnknownGid(e: unknown): boolean {
  // 42704 undefined_object: "prepared transaction with identifier ... does not exist"
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === '42704';
}

function prepareFailure(e: unknown, op: CriticalOperation): string {
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  // 55P03 lock_not_available: another critical transaction holds these rows prepared.
  if (code === '55P03') return `${op.kind} ${op.name} of one of these hosts is held by another critical transaction in progress`;
  // 55000 object_not_in_prerequisite_state: prepared transactions are disabled (max_prepared_transactions = 0).
  if (code === '55000') return 'PostgreSQL max_prepared_transactions is 0';
  return `PostgreSQL: ${e instanceof Error ? e.message : String(e)}`;
}
