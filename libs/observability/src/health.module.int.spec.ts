import 'reflect-metadata';
import { Test } from '@nestjs/testing';
import type { INestApplication } from '@nestjs/common';
import { request as httpRequest, Agent } from 'node:http';
import { HealthModule, HealthService } from './health.module';
import { listenHttp } from './service';
import type { ReadinessCheck } from './health.module';

describe('HealthModule over HTTP', () => {
  let app: INestApplication;
  let base: string;
  let dbUp = true;

  const checks: ReadinessCheck[] = [
    { name: 'always', check: async () => undefined },
    {
      name: 'postgres',
      check: async () => {
        if (!dbUp) throw Object.assign(new Error('connection refused'), { code: 'FLEET_INFRA_001' });
      },
    },
  ];

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [HealthModule.forRoot({ checks, timeoutMs: 200 })] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
  });

  it('GET /health/live is 200 whatever the dependencies', async () => {
    dbUp = false;
    const res = await fetch(`${base}/health/live`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'live' });
  });

  it('GET /health/ready is 503 with the failing check named when a check fails', async () => {
    dbUp = false;
    const res = await fetch(`${base}/health/ready`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { status: string; checks: unknown[] };
    expect(body.status).toBe('not_ready');
    expect(body.checks).toEqual([
      expect.objectContaining({ name: 'always', status: 'up' }),
      expect.objectContaining({ name: 'postgres', status: 'down', error: 'FLEET_INFRA_001: connection refused' }),
    ]);
  });

  it('GET /health/ready is 200 when every check passes', async () => {
    dbUp = true;
    const res = await fetch(`${base}/health/ready`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ready', draining: false });
  });

  it('fails a check that hangs past its timeout', async () => {
    const health = app.get(HealthService);
    health.register({ name: 'hung', check: () => new Promise(() => undefined) });
    const res = await fetch(`${base}/health/ready`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { status: string; checks: unknown[] };
    expect(body.checks).toContainEqual(expect.objectContaining({ name: 'hung', status: 'down', error: 'timed out after 200 ms' }));
    expect(() => health.register({ name: 'hung', check: async () => undefined })).toThrow(/registered twice/);
  });
});

describe('HealthModule.forRootAsync and draining', () => {
  it('builds checks from injected providers and turns not-ready on shutdown', async () => {
    const DB = Symbol('DB');
    const moduleRef = await Test.createTestingModule({
      imports: [
        HealthModule.forRootAsync({
          imports: [{ module: class DbModule {}, providers: [{ provide: DB, useValue: { ping: async () => 1 } }], exports: [DB], global: false }],
          inject: [DB],
          useFactory: (db: { ping(): Promise<number> }) => ({ checks: [{ name: 'db', check: async () => void (await db.ping()) }] }),
        }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const health = app.get(HealthService);
    expect((await health.ready()).status).toBe('ready');
    health.beforeApplicationShutdown();
    expect(await health.ready()).toMatchObject({ status: 'not_ready', draining: true });
    await app.close();
  });

  it('keeps an idle keep-alive connection past the Node.js default of 5 s (listenHttp), so a client reusing it is not cut off', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [HealthModule.forRoot({ checks: [] })] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await listenHttp(app, 0);
    const base = (await app.getUrl()).replace('[::1]', '127.0.0.1').replace('0.0.0.0', '127.0.0.1');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = httpRequest(`${base}/health/live`, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get()).toEqual({ status: 200, reused: false });
    await new Promise((r) => setTimeout(r, 5_600));
    expect(await get()).toEqual({ status: 200, reused: true });
    agent.destroy();
    await app.close();
  });
});
