import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';
import { bigintAsNumber } from './change-log.entity';

/**
 * The records projection: the current state of every record, maintained by version-vector from
 * the change log (see `RecordsProjection`). Written with raw SQL; this entity describes the schema
 * for readers and for the schema-drift test.
 */
@Entity({ name: 'records' })
@Index('records_scope_rev_idx', ['scope', 'rev'])
@Index('records_rev_idx', ['rev'])
@Check('records_status_ck', `status = ANY (ARRAY['absent'::text, 'live'::text, 'deleted'::text])`)
export class RecordRow {
  @PrimaryColumn({ type: 'text', primaryKeyConstraintName: 'records_pk' })
  scope!: string;

  @PrimaryColumn({ type: 'text', primaryKeyConstraintName: 'records_pk' })
  collection!: string;

  @PrimaryColumn({ type: 'text', primaryKeyConstraintName: 'records_pk' })
  key!: string;

  /** sync-core's `RecordState` (registers, deletes, vv, view): what `decodeRecordState` reads. */
  @Column({ type: 'jsonb' })
  state!: unknown;

  /** The visible fields, or null unless the record is live. */
  @Column({ type: 'jsonb', nullable: true })
  fields!: unknown;

  /** `recordHash(state)`: what Merkle buckets compare. */
  @Column({ type: 'text' })
  hash!: string;

  @Column({ type: 'jsonb' })
  vv!: unknown;

  @Column({ type: 'text' })
  status!: string;

  /** A `manual` register holds concurrent writes: an operator must decide (the view shows the provisional winner). */
  @Column({ type: 'boolean', default: false })
  conflicted!: boolean;

  /** Every change of this record with seq <= last_seq is applied (the projection applies each record's changes in seq order). */
  @Column({ name: 'last_seq', type: 'bigint', default: 0, transformer: bigintAsNumber })
  lastSeq!: number;

  /** Projection cursor: assigned at commit time in commit order, so `rev > cursor` polling never skips (docs/conflicts.md). */
  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  rev!: number;

  @Column({ name: 'updated_at', type: 'timestamptz', default: () => 'now()' })
  updatedAt!: Date;
}
