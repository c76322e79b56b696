import { Check, Column, Entity, Index, PrimaryGeneratedColumn, Unique } from 'typeorm';
import { bigintAsNumber } from './change-log.entity';

/**
 * The conflict log and the manual queue: one row per conflict version-vector detected, with every
 * side, the strategy and what became of it. `status`: `open` (detected, the resolver has not handled
 * it yet), `pending` (manual: waiting for an operator), `auto-resolved`, `resolved` (by an operator),
 * `superseded` (a later change settled the record before anyone resolved this one).
 */
@Entity({ name: 'conflicts' })
@Unique('conflicts_conflict_key_uq', ['conflictKey'])
@Index('conflicts_status_id_idx', ['status', 'id'])
@Index('conflicts_record_idx', ['scope', 'collection', 'key', 'id'])
@Check('conflicts_status_ck', `status = ANY (ARRAY['open'::text, 'pending'::text, 'auto-resolved'::text, 'resolved'::text, 'superseded'::text])`)
export class ConflictRow {
  @PrimaryGeneratedColumn('identity', { type: 'bigint', generatedIdentity: 'ALWAYS', primaryKeyConstraintName: 'conflicts_pk' })
  /** bigint: node-postgres returns it as a string. */
  id!: string;

  /** sync-core's `ConflictRecord.id`: a hash of the sides' dots, the same on every replica. */
  @Column({ name: 'conflict_key', type: 'text' })
  conflictKey!: string;

  @Column({ type: 'text' })
  scope!: string;

  @Column({ type: 'text' })
  collection!: string;

  @Column({ type: 'text' })
  key!: string;

  /** The seq of the change whose application revealed the conflict. */
  @Column({ type: 'bigint', transformer: bigintAsNumber })
  seq!: number;

  @Column({ type: 'text' })
  strategy!: string;

  /** The `ConflictRecord`: every side of every contested register, and the provisional outcome. */
  @Column({ type: 'jsonb' })
  sides!: unknown;

  /** What was decided: the resolution written (fields/unset or deleted), or why it was superseded. */
  @Column({ type: 'jsonb', nullable: true })
  outcome!: unknown;

  @Column({ type: 'text' })
  status!: string;

  /** `auto` or `operator` once decided. */
  @Column({ name: 'resolved_by', type: 'text', nullable: true })
  resolvedBy!: string | null;

  @Column({ name: 'resolution_change_id', type: 'uuid', nullable: true })
  resolutionChangeId!: string | null;

  @Column({ name: 'detected_at', type: 'timestamptz' })
  detectedAt!: Date;

  @Column({ name: 'resolved_at', type: 'timestamptz', nullable: true })
  resolvedAt!: Date | null;
}
