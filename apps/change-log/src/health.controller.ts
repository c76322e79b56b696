import { Controller, Get, HttpCode, HttpException, HttpStatus, Inject } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { Messaging } from '@fleet/messaging';

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref())]);

/** Liveness: the process answers. Readiness: PostgreSQL and NATS both answer a round trip. */
@Controller('health')
export class HealthController {
  // Explicit tokens: DI must not depend on decorator metadata surviving a type-only import.
  constructor(
    @Inject(DataSource) private readonly ds: DataSource,
    @Inject(Messaging) private readonly messaging: Messaging,
  ) {}

  @Get('live')
  @HttpCode(200)
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Get('ready')
  async ready(): Promise<{ status: 'ok'; postgres: 'ok'; nats: 'ok' }> {
    const [pg, nats] = await Promise.allSettled([
      withTimeout(this.ds.query('select 1'), 2000),
      this.messaging.nc.isClosed() || this.messaging.nc.isDraining() ? Promise.reject(new Error('connection closed')) : withTimeout(this.messaging.nc.flush(), 2000),
    ]);
    if (pg.status === 'fulfilled' && nats.status === 'fulfilled') return { status: 'ok', postgres: 'ok', nats: 'ok' };
    const reason = (r: PromiseSettledResult<unknown>) => (r.status === 'fulfilled' ? 'ok' : String((r.reason as Error)?.message ?? r.reason));
    throw new HttpException({ status: 'unavailable', postgres: reason(pg), nats: reason(nats) }, HttpStatus.SERVICE_UNAVAILABLE);
  }
}
