/**
 * version-vector's part of the operator API: its status figures (the records projection's cursor
 * against the log head, `fleetctl status`) and `<ns>.admin.verify.version-vector` (the records
 * projection against sync-core's fold of the log, read-only, `fleetctl verify`), in the queue group
 * `queueGroups.versionVector`. Both need the operator token (FLEET_VERSIONVECTOR_OPERATOR_TOKEN).
 */
import type { Type } from '@nestjs/common';
import { operatorCheck } from '@fleet/config';
import type { OperatorCheck } from '@fleet/config';
import type { DataSource } from 'typeorm';
import { subjects } from '@fleet/contracts';
import type { StatusFacts } from '@fleet/contracts';
import { projectionProgress, readProjectionCursor, stateVerifyController } from '@fleet/server-store';
import type { StrategyConfig } from '@fleet/sync-core';
import type { VersionVectorConfig } from './config';

export async function versionVectorStatusFacts(ds: DataSource): Promise<StatusFacts> {
  return { projection: await projectionProgress(ds, 'records', readProjectionCursor) };
}

/** version-vector's operator token check: status and verify. */
export function versionVectorOperatorCheck(config: VersionVectorConfig): OperatorCheck {
  return operatorCheck(config.operatorToken, 'FLEET_VERSIONVECTOR_OPERATOR_TOKEN');
}

/** `records` is applied as events arrive and its sweep moves the cursor later, so a row may be ahead of the cursor. */
export function verifyController(config: VersionVectorConfig, strategies: StrategyConfig): Type<unknown> {
  const s = subjects(config.namespace);
  return stateVerifyController({
    service: 'version-vector',
    subject: s.verifyApi('version-vector'),
    queueGroup: s.queueGroups.versionVector,
    table: 'records',
    appliedColumn: 'last_seq',
    readCursor: readProjectionCursor,
    aheadOfCursor: true,
    config: strategies,
    authorize: versionVectorOperatorCheck(config),
  });
}
