/**
 * A row of the server's writable table `server_records` as the capture reads it from the WAL
 * (docs/server-writes.md), decoded like any other input: the table's checks catch most mistakes at
 * write time, these catch the rest (field names, value sizes, agent ids) before a row becomes a change.
 */
import { z } from 'zod';
import type { Fields, RecordRef } from '@fleet/sync-core';
import { CollectionSchema, KeySchema, ScopeSchema } from './change';
import { decodeWith } from './codec';
import { FieldsSchema } from './json-value';

const ServerRowRefSchema = z.object({ scope: ScopeSchema, collection: CollectionSchema, key: KeySchema });

/** The record a row names; throws FLEET_DECODE_002 / 004 with the reason. */
export function decodeServerRowRef(row: { readonly scope: unknown; readonly collection: unknown; readonly key: unknown }): RecordRef {
  const ref = decodeWith(ServerRowRefSchema, { scope: row.scope, collection: row.collection, key: row.key });
  return { scope: ref.scope, collection: ref.collection, key: ref.key };
}

/** A row's `fields` column; throws FLEET_DECODE_002 / 004 with the reason. */
export function decodeServerRowFields(fields: unknown): Fields {
  return decodeWith(FieldsSchema, fields, ['fields']);
}
