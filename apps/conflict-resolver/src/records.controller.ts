import { Body, Controller, Delete, HttpCode, Inject, Param, Put, UseFilters } from '@nestjs/common';
import { z } from 'zod';
import { CollectionSchema, decodeWith, FieldsSchema, isServerScope, KeySchema, ScopeSchema } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { ServerWriter } from '@fleet/server-store';
import type { LocalEdit, LoggedChange, RecordRef } from '@fleet/sync-core';
import { FleetErrorHttpFilter } from './fleet-error.filter';
import { ConflictResolverPublisher } from './publisher';

const RefSchema = z.strictObject({ scope: ScopeSchema, collection: CollectionSchema, key: KeySchema });
const PutBodySchema = z.strictObject({ fields: FieldsSchema, unset: z.array(z.string()).max(256).exactOptional() });

/**
 * Operator writes of server-owned records (`fleet`, `group.<name>`: desired configuration), as
 * changes with origin `server` made by the ServerWriter (record lock, state at the log's head,
 * appended, announced): `PUT /records/:scope/:collection/:key` `{fields, unset?}` writes those
 * fields; `DELETE` deletes (a tombstone with its vector). Host scopes belong to their agents:
 * FLEET_AUTH_003.
 */
@Controller('records')
@UseFilters(FleetErrorHttpFilter)
export class RecordsController {
  constructor(
    @Inject(ServerWriter) private readonly writer: ServerWriter,
    @Inject(ConflictResolverPublisher) private readonly publisher: ConflictResolverPublisher,
  ) {}

  @Put(':scope/:collection/:key')
  @HttpCode(200)
  async put(@Param('scope') scope: string, @Param('collection') collection: string, @Param('key') key: string, @Body() body: unknown): Promise<{ change: LoggedChange }> {
    const b = decodeWith(PutBodySchema, body);
    return { change: await this.write(this.ref(scope, collection, key), { op: 'put', fields: b.fields, ...(b.unset === undefined ? {} : { unset: b.unset }) }) };
  }

  @Delete(':scope/:collection/:key')
  @HttpCode(200)
  async remove(@Param('scope') scope: string, @Param('collection') collection: string, @Param('key') key: string): Promise<{ change: LoggedChange }> {
    return { change: await this.write(this.ref(scope, collection, key), { op: 'delete' }) };
  }

  private ref(scope: string, collection: string, key: string): RecordRef {
    const ref = decodeWith(RefSchema, { scope, collection, key });
    if (!isServerScope(ref.scope)) throw new FleetError('FLEET_AUTH_003', `scope ${JSON.stringify(ref.scope)} is host-owned: only its agent writes it`, { details: { ...ref } });
    return ref;
  }

  private async write(ref: RecordRef, edit: LocalEdit): Promise<LoggedChange> {
    const { appended } = await this.writer.write([ref], (ctx) => void ctx.edit(ref, edit));
    await this.publisher.appended(appended);
    return appended[0] as LoggedChange;
  }
}
