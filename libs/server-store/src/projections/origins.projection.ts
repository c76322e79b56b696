import type { EntityManager } from 'typeorm';
import type { LoggedChange } from '@fleet/sync-core';
import type { Projection } from './projection';

/**
 * Per-origin progress (`origin_progress`). Aggregated in SQL from `change_log` itself (not from
 * the JS values) so that `last_appended_at` keeps the log's microseconds, which a JS Date would
 * truncate: that is what makes a rebuild identical to live maintenance.
 */
export class OriginsProjection implements Projection {
  readonly name = 'origins';

  async apply(tx: EntityManager, changes: readonly LoggedChange[]): Promise<void> {
    // An append's changes (and a rebuild's pages) are consecutive seqs: one range scan of the primary
    // key instead of a probe per seq. Any other set is read by its seqs.
    const first = changes[0]?.seq ?? 0;
    const consecutive = changes.every((c, i) => c.seq === first + i);
    const [where, params] = consecutive ? ['seq between $1 and $2', [first, first + changes.length - 1]] : ['seq = any($1::bigint[])', [changes.map((c) => c.seq)]];
    await tx.query(
      `insert into origin_progress as p (origin, last_origin_seq, last_hlc, changes_count, last_seq, last_appended_at)
       select origin,
              max(origin_seq),
              (array_agg(hlc order by origin_seq desc))[1],
              count(*),
              max(seq),
              max(appended_at)
         from change_log
        where ${where}
        group by origin
       on conflict (origin) do update set
         last_hlc = case when excluded.last_origin_seq > p.last_origin_seq then excluded.last_hlc else p.last_hlc end,
         last_origin_seq = greatest(p.last_origin_seq, excluded.last_origin_seq),
         changes_count = p.changes_count + excluded.changes_count,
         last_seq = greatest(p.last_seq, excluded.last_seq),
         last_appended_at = greatest(p.last_appended_at, excluded.last_appended_at)`,
      params,
    );
  }

  async reset(tx: EntityManager): Promise<void> {
    await tx.query('truncate origin_progress');
  }
}
