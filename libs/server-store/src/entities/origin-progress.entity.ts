import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintAsNumber } from './change-log.entity';

/**
 * Projection: how far each origin (agent, or `server`) has got in the log. Maintained by
 * `OriginsProjection` in the append transaction; rebuildable from `change_log`.
 */
@Entity({ name: 'origin_progress' })
export class OriginProgress {
  @PrimaryColumn({ type: 'text', primaryKeyConstraintName: 'origin_progress_pk' })
  origin!: string;

  /** The highest originSeq logged for the origin (an agent may deliver out of order after a replay). */
  @Column({ name: 'last_origin_seq', type: 'bigint', transformer: bigintAsNumber })
  lastOriginSeq!: number;

  /** The hlc of the change with that highest originSeq. */
  @Column({ name: 'last_hlc', type: 'text' })
  lastHlc!: string;

  @Column({ name: 'changes_count', type: 'bigint', transformer: bigintAsNumber })
  changesCount!: number;

  /** The highest server seq among the origin's changes. */
  @Column({ name: 'last_seq', type: 'bigint', transformer: bigintAsNumber })
  lastSeq!: number;

  /** When the origin's latest change was appended (the log's `appended_at`, never the projection's clock). */
  @Column({ name: 'last_appended_at', type: 'timestamptz' })
  lastAppendedAt!: Date;
}
