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

/**
 * Empties the projections and replays the whole log into them in seq order, in one transaction
 * holding the append lock: appends wait until it commits, readers of the projections see the old
 * rows until then, and a failure leaves the old rows in place.
 */
export async function rebuildProjections(
  ds: DataSource,
  projections: readonly Projection[],
  options: { readonly batchSize?: number } = {},
): Promise<RebuildReport> {
  const batchSize = options.batchSize ?? 1000;
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
