import { Check, Column, Entity, Index, PrimaryColumn, Unique } from 'typeorm';
import type { ValueTransformer } from 'typeorm';

/** bigint columns as JS numbers: seqs stay far below 2^53, and `toSafeNumber` checks it. */
export const bigintAsNumber: ValueTransformer = {
  to: (v: number | undefined) => v,
  from: (v: string | null) => (v === null ? null : Number(v)),
};

/**
 * One row per logged change. Written only by `PostgresChangeLog` (raw SQL, for the multi-row
 * insert); this entity describes the schema for readers and for the schema-drift test. The
 * schema itself comes from the hand-written migrations, never from `synchronize`.
 */
@Entity({ name: 'change_log' })
@Unique('change_log_change_id_uq', ['changeId'])
@Unique('change_log_origin_seq_uq', ['origin', 'originSeq'])
@Index('change_log_scope_seq_idx', ['scope', 'seq'])
@Index('change_log_record_seq_idx', ['scope', 'collection', 'key', 'seq'])
@Check('change_log_op_ck', `op = ANY (ARRAY['put'::text, 'delete'::text])`)
@Check('change_log_seq_ck', `seq > 0`)
@Check('change_log_origin_seq_ck', `origin_seq > 0`)
export class ChangeLogEntry {
  /** Server sequence, assigned on append: every cursor is a seq. */
  @PrimaryColumn({ type: 'bigint', primaryKeyConstraintName: 'change_log_pk', transformer: bigintAsNumber })
  seq!: number;

  @Column({ name: 'change_id', type: 'uuid' })
  changeId!: string;

  @Column({ type: 'text' })
  origin!: string;

  @Column({ name: 'origin_seq', type: 'bigint', transformer: bigintAsNumber })
  originSeq!: number;

  @Column({ type: 'text' })
  scope!: string;

  @Column({ type: 'text' })
  collection!: string;

  @Column({ type: 'text' })
  key!: string;

  @Column({ type: 'text' })
  op!: string;

  @Column({ type: 'jsonb' })
  fields!: unknown;

  /** A JSON array of field names, or null when the change unset none. */
  @Column({ type: 'jsonb', nullable: true })
  unset!: string[] | null;

  @Column({ type: 'text' })
  hlc!: string;

  @Column({ type: 'jsonb' })
  vv!: unknown;

  @Column({ type: 'text' })
  hash!: string;

  @Column({ type: 'integer' })
  protocol!: number;

  @Column({ name: 'appended_at', type: 'timestamptz', default: () => 'now()' })
  appendedAt!: Date;
}
