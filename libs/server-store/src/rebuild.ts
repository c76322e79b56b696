import type { DataSource } from 'typeorm';
import type { Projection } from './projections/projection';
import { APPEND_LOCK_SQL } from './postgres-change-log';
import { CHANGE_COLUMNS, rowToLoggedChange } from './rows';
import type { ChangeLogRow } from './rows';

export interface RebuildReport {
  readonly projections: readonly string[];
  readonly replayed: number;
  readonly headSeq: number;
}

/** PostgreSQL's `deadlock_detected`. */
const DEADLOCK = '40P01';

/**
 * Empties the projections and replays the whole log into them in seq order, in one transaction
 * holding the append lock: appends wait until it commits, readers of the projections see the old
 * rows until then, and a failure leaves the old rows in place.
 *
 * A ServerWriter (the resolver, an operator write) reads `records` before it takes the append lock; the
 * rebuild takes the append lock, then truncates `records`. Caught between the two, one of them is
 * aborted by PostgreSQL's deadlock check: the writer retries its batch, and the rebuild starts over,
 * up to `attempts` times (default 5), since nothing of an aborted attempt remains.
 */
export async function rebuildProjections(
  ds: DataSource,
  projections: readonly Projection[],
  options: { readonly batchSize?: number; readonly attempts?: number } = {},
): Promise<RebuildReport> {
  const attempts = options.attempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      return await rebuildOnce(ds, projections, options.batchSize ?? 1000);
    } catch (e) {
      const code = (e as { code?: unknown; driverError?: { code?: unknown } }).driverError?.code ?? (e as { code?: unknown }).code;
      if (code !== DEADLOCK || attempt >= attempts) throw e;
    }
  }
}

async function rebuildOnce(ds: DataSource, projections: readonly Projection[], batchSize: number): Promise<RebuildReport> {
  return ds.transaction('READ COMMITTED', async (tx) => {
    await tx.query(APPEND_LOCK_SQL);
    for (const p of projections) await p.reset(tx);
    let cursor = 0;
    let replayed = 0;
    for (;;) {
      const rows: ChangeLogRow[] = await tx.query(`select ${CHANGE_COLUMNS} from change_log where seq > $1 order by seq limit $2`, [cursor, batchSize]);
      if (rows.length === 0) break;
      const changes = rows.map(rowToLoggedChange);
      for (const p of projections) await p.apply(tx, changes);
      replayed += changes.length;
      cursor = (changes[changes.length - 1] as { seq: number }).seq;
    }
    return { projections: projections.map((p) => p.name), replayed, headSeq: cursor };
  });
}
