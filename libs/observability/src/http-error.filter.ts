import { Catch, HttpException, Logger } from '@nestjs/common';
import type { ArgumentsHost, ExceptionFilter } from '@nestjs/common';
import { errorReply } from '@fleet/contracts';
import { isFleetError } from '@fleet/errors';
import type { ErrorCode } from '@fleet/errors';

/** HTTP status of each error code the operator API can meet; anything else is 500 (or 503 when retryable). */
const STATUS: Partial<Record<ErrorCode, number>> = {
  FLEET_DECODE_001: 400,
  FLEET_DECODE_002: 400,
  FLEET_DECODE_003: 400,
  FLEET_DECODE_004: 413,
  FLEET_RESOLVE_001: 422,
  FLEET_CHANGE_001: 422,
  FLEET_JSON_001: 422,
  FLEET_AUTH_003: 403,
  FLEET_AUTH_004: 401,
  FLEET_CONFLICT_001: 404,
  FLEET_CONFLICT_002: 409,
  FLEET_CONFLICT_003: 409,
  FLEET_TPC_001: 404,
  FLEET_TPC_002: 503,
  FLEET_INFRA_001: 503,
};

/**
 * The edge of an operator API over HTTP (conflict-resolver's conflicts, change-log's critical
 * operations): a FleetError becomes its HTTP status and the `errorReply` body
 * (`{"error":{"code","message","retryable","details"}}`), the same body the NATS API answers with.
 * Anything else is a bug: logged with its stack, answered FLEET_INTERNAL_001 with nothing inside.
 * `notFound`: the code a 404 of Nest's own (an unknown id path) is answered with.
 *
 * Scoped to the operator controllers (`@UseFilters(new FleetErrorHttpFilter(...))`), never global:
 * the health controller's 503 carries its readiness report as the body, which this filter would
 * replace.
 */
@Catch()
export class FleetErrorHttpFilter implements ExceptionFilter {
  private readonly logger = new Logger('FleetErrorHttpFilter');

  constructor(private readonly notFound: ErrorCode) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    // express's Response, typed structurally (no @types/express in the workspace).
    const res = host.switchToHttp().getResponse<{ status(code: number): { json(body: unknown): void } }>();
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      // Nest's own (404 for an unknown route, a malformed JSON body): keep the status, say it in our shape.
      const code: ErrorCode = status === 404 ? this.notFound : status < 500 ? 'FLEET_DECODE_001' : 'FLEET_INTERNAL_001';
      res.status(status).json({ error: { code, message: exception.message, retryable: false } });
      return;
    }
    if (!isFleetError(exception)) this.logger.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
    const status = isFleetError(exception) ? (STATUS[exception.code] ?? (exception.retryable ? 503 : 500)) : 500;
    res.status(status).json(errorReply(exception));
  }
}
