import { Body, Controller, Get, Headers as HttpHeaders, HttpCode, Inject, Param, Post, Query, Res, UseFilters } from '@nestjs/common';
import { FleetErrorHttpFilter } from '@fleet/observability';
import { ConflictResolveRequestSchema, ConflictShowRequestSchema, ConflictsListRequestSchema, decodeWith, PROTOCOL_VERSION } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import type { ConflictResolverConfig } from './config';
import { checkResolverOperator } from './operator-token';
import { ResolverService } from './resolver.service';
import { CONFLICT_RESOLVER_CONFIG } from './tokens';

/** A decimal id or number from a path or query string, strictly (`12abc` is not 12). */
export function intParam(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,15}$/.test(v)) throw new FleetError('FLEET_DECODE_002', `${name}: expected a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

/**
 * The operator API over HTTP: the conflict log and the manual queue.
 * `GET /conflicts?status=pending&after=&limit=`, `GET /conflicts/:id`,
 * `POST /conflicts/:id/resolve` with `{take: origin}` | `{fields, unset?}` | `{deleted: true}`. Every
 * route, reads too (items hold fleet data), needs the operator token (`Authorization: Bearer <token>`,
 * FLEET_CONFLICTRESOLVER_OPERATOR_TOKEN; 401 otherwise).
 * Inputs are decoded with the same schemas as the NATS API; errors map to HTTP in the filter.
 */
@Controller('conflicts')
@UseFilters(new FleetErrorHttpFilter('FLEET_CONFLICT_001'))
export class ConflictsHttpController {
  constructor(
    @Inject(ResolverService) private readonly resolver: ResolverService,
    @Inject(CONFLICT_RESOLVER_CONFIG) private readonly config: ConflictResolverConfig,
  ) {}

  @Get()
  async list(@Query('status') status?: string, @Query('after') after?: string, @Query('limit') limit?: string, @HttpHeaders('authorization') authorization?: string): Promise<unknown> {
    checkResolverOperator(this.config.operatorToken, authorization, 'conflict list');
    const req = decodeWith(ConflictsListRequestSchema, {
      protocol: PROTOCOL_VERSION,
      ...(status === undefined ? {} : { status }),
      ...(after === undefined ? {} : { after: intParam('after', after) }),
      ...(limit === undefined ? {} : { limit: intParam('limit', limit) }),
    });
    return this.resolver.list(req);
  }

  @Get(':id')
  async show(@Param('id') id: string, @HttpHeaders('authorization') authorization?: string): Promise<unknown> {
    checkResolverOperator(this.config.operatorToken, authorization, 'conflict show');
    const req = decodeWith(ConflictShowRequestSchema, { protocol: PROTOCOL_VERSION, id: intParam('id', id) });
    return this.resolver.show(req.id);
  }

  @Post(':id/resolve')
  @HttpCode(200)
  async resolve(@Param('id') id: string, @Body() body: unknown, @Res({ passthrough: true }) res: { status(code: number): unknown }, @HttpHeaders('authorization') authorization?: string): Promise<unknown> {
    checkResolverOperator(this.config.operatorToken, authorization, 'conflict resolve');
    const req = decodeWith(ConflictResolveRequestSchema, { protocol: PROTOCOL_VERSION, id: intParam('id', id), choice: body });
    const r = await this.resolver.resolve(req.id, req.choice);
    if (!r.announced) res.status(202); // committed; the announcement is pending (as for record writes)
    return r;
  }
}
