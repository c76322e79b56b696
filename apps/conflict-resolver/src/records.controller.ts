import { Body, Controller, Delete, Headers as HttpHeaders, HttpCode, Inject, Logger, Param, Post, Put, Res, UseFilters } from '@nestjs/common';
import { FleetErrorHttpFilter } from '@fleet/observability';
import { z } from 'zod';
import { CollectionSchema, decodeWith, FieldNameSchema, FieldsSchema, KeySchema, ScopeSchema } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import { ServerWriter } from '@fleet/server-store';
import { counterAdd, SERVER_ORIGIN, visibleFields, type JsonValue, type LocalEdit, type LoggedChange, type RecordRef } from '@fleet/sync-core';
import type { ConflictResolverConfig } from './config';
import { checkResolverOperator } from './operator-token';
import { ConflictResolverPublisher } from './publisher';
import { CONFLICT_RESOLVER_CONFIG } from './tokens';

const RefSchema = z.strictObject({ scope: ScopeSchema, collection: CollectionSchema, key: KeySchema });
// Field names as a change's decoder checks them (not `__proto__`, storable): the server writes these changes without decoding them.
const PutBodySchema = z.strictObject({ fields: FieldsSchema, unset: z.array(FieldNameSchema).max(256).exactOptional() });
const IncrementBodySchema = z.strictObject({ field: FieldNameSchema, by: z.number().int().safe() });

/** The answer of an operator write. */
export interface RecordWriteReply {
  readonly change: LoggedChange;
  /** False when the change is committed but its `log.appended` announcement failed (HTTP 202; see `note`). */
  readonly announced: boolean;
  readonly note?: string;
}

/** express's Response, typed structurally (no @types/express in the workspace). */
interface HttpResponse {
  status(code: number): unknown;
}

/**
 * Operator writes, as changes with origin `server` made by the ServerWriter (record lock, state at
 * the log's head, appended, announced), of any scope: server-owned desired state (`fleet`,
 * `group.<name>`) and an agent's host records (`host.<agentId>`: an operator editing an agent's local
 * settings; concurrent with the agent's own edits, that is an ordinary conflict settled by the
 * collection's strategy). Agents still write only their own host scope (the change-log's push check).
 * - `PUT /records/:scope/:collection/:key` `{fields, unset?}` writes those fields;
 * - `DELETE` deletes (a tombstone with its vector);
 * - `POST /records/:scope/:collection/:key/increment` `{field, by}` adds `by` to a counter field
 *   (sync-core's `counterAdd` on the record's state at the log's head, under the record lock: a
 *   read-modify-write no client could do safely over PUT).
 * The change is committed before it is announced: 200 once announced; if the announcement still fails
 * after the publisher's retries, 202 with `announced: false` (version-vector's log sweep projects it
 * anyway, within its interval). Retrying a 202 would write the change twice: don't.
 * Every write needs the operator token (`Authorization: Bearer <token>`, FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN; 401 otherwise).
 */
@Controller('records')
@UseFilters(new FleetErrorHttpFilter('FLEET_CONFLICT_001'))
export class RecordsController {
  private readonly logger = new Logger('records');

  constructor(
    @Inject(ServerWriter) private readonly writer: ServerWriter,
    @Inject(ConflictResolverPublisher) private readonly publisher: ConflictResolverPublisher,
    @Inject(CONFLICT_RESOLVER_CONFIG) private readonly config: ConflictResolverConfig,
  ) {}

  @Put(':scope/:collection/:key')
  @HttpCode(200)
  async put(@Param('scope') scope: string, @Param('collection') collection: string, @Param('key') key: string, @Body() body: unknown, @Res({ passthrough: true }) res: HttpResponse, @HttpHeaders('authorization') authorization?: string): Promise<RecordWriteReply> {
    this.authorize(authorization);
    const b = decodeWith(PutBodySchema, body);
    const edit: LocalEdit = { op: 'put', fields: b.fields, ...(b.unset === undefined ? {} : { unset: b.unset }) };
    return this.write(this.ref(scope, collection, key), () => edit, res);
  }

  @Delete(':scope/:collection/:key')
  @HttpCode(200)
  async remove(@Param('scope') scope: string, @Param('collection') collection: string, @Param('key') key: string, @Res({ passthrough: true }) res: HttpResponse, @HttpHeaders('authorization') authorization?: string): Promise<RecordWriteReply> {
    this.authorize(authorization);
    return this.write(this.ref(scope, collection, key), () => ({ op: 'delete' }), res);
  }

  @Post(':scope/:collection/:key/increment')
  @HttpCode(200)
  async increment(@Param('scope') scope: string, @Param('collection') collection: string, @Param('key') key: string, @Body() body: unknown, @Res({ passthrough: true }) res: HttpResponse, @HttpHeaders('authorization') authorization?: string): Promise<RecordWriteReply> {
    this.authorize(authorization);
    const b = decodeWith(IncrementBodySchema, body);
    return this.write(
      this.ref(scope, collection, key),
      (current) => ({ op: 'put', fields: { [b.field]: counterAdd(current !== null && Object.hasOwn(current, b.field) ? current[b.field] : undefined, SERVER_ORIGIN, b.by) } }),
      res,
    );
  }

  private authorize(authorization: string | undefined): void {
    checkResolverOperator(this.config.operatorToken, authorization, 'record write');
  }

  private ref(scope: string, collection: string, key: string): RecordRef {
    return decodeWith(RefSchema, { scope, collection, key });
  }

  /** `edit` sees the record's visible fields at the log's head (null unless live), under the record lock. */
  private async write(ref: RecordRef, edit: (current: Readonly<Record<string, JsonValue>> | null) => LocalEdit, res: HttpResponse): Promise<RecordWriteReply> {
    const { appended } = await this.writer.write([ref], (ctx) => {
      void ctx.edit(ref, edit(visibleFields(ctx.state(ref))));
    });
    const change = appended[0];
    if (change === undefined) throw new FleetError('FLEET_INTERNAL_001', 'the write appended no change');
    try {
      await this.publisher.appended(appended);
      return { change, announced: true };
    } catch (e) {
      if (isFleetError(e) && !e.retryable) throw e;
      this.logger.warn(`change ${change.changeId} (seq ${change.seq}) committed; its announcement failed after retries: ${String(e)}; the log sweep projects it`);
      res.status(202);
      return { change, announced: false, note: 'committed; its log.appended announcement failed and is pending: version-vector\'s log sweep projects it within its interval. Do not retry this write.' };
    }
  }
}
