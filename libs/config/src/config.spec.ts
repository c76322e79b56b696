import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { isFleetError } from '@fleet/errors';
import {
  databaseUrlOption,
  defineConfig,
  describeConfig,
  envBoolean,
  envDuration,
  envInt,
  envList,
  envNumber,
  envString,
  envUrl,
  loadConfig,
  loadStrategyConfig,
  logLevelOption,
  MAX_TIMER_MS,
  namespaceOption,
  natsUrlOption,
  parseDuration,
  parseStrategyConfig,
  redactConfig,
  strategyConfigOptions,
  unknownVariables,
} from './index';

const def = defineConfig({
  prefix: 'FLEET_CHANGELOG_',
  options: {
    natsUrl: natsUrlOption(),
    databaseUrl: databaseUrlOption(),
    namespace: namespaceOption(),
    logLevel: logLevelOption(),
    batchSize: { env: 'BATCH_SIZE', schema: envInt({ min: 1, max: 500 }), default: '100', description: 'changes per append' },
    ackWait: { env: 'ACK_WAIT', schema: envDuration({ min: 1000 }), default: '30s', description: 'JetStream ack wait' },
    ratio: { env: 'RATIO', schema: envNumber({ min: 0, max: 1 }), default: '0.5', description: 'a ratio' },
    dryRun: { env: 'DRY_RUN', schema: envBoolean(), default: 'false', description: 'do not write' },
    region: { env: 'REGION', schema: envString({ min: 1 }), optional: true, description: 'where it runs' },
    token: { env: 'TOKEN', schema: envString({ min: 8 }), secret: true, description: 'api token' },
    plain: { env: 'PLAIN', schema: z.string().url(), default: 'https://example.com', description: 'a bare zod schema works too' },
  },
});

function configError(env: Record<string, string>): string {
  try {
    loadConfig(def, env);
  } catch (e) {
    if (isFleetError(e, 'FLEET_CONFIG_001')) return e.message;
    throw e;
  }
  throw new Error('expected a config error');
}

describe('loadConfig', () => {
  it('applies defaults and returns typed values', () => {
    const c = loadConfig(def, { FLEET_CHANGELOG_TOKEN: 'abcdefgh' });
    expect(c).toEqual({
      natsUrl: ['nats://127.0.0.1:4222'],
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/fleet_sync',
      namespace: 'sync',
      logLevel: 'info',
      batchSize: 100,
      ackWait: 30_000,
      ratio: 0.5,
      dryRun: false,
      region: undefined,
      token: 'abcdefgh',
      plain: 'https://example.com',
    });
    // Types: the compiler knows each value.
    const n: number = c.batchSize;
    const r: string | undefined = c.region;
    const urls: readonly string[] = c.natsUrl;
    const lvl: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' = c.logLevel;
    expect([n, r, urls, lvl]).toBeDefined();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads prefixed variables, then fallbacks', () => {
    const c = loadConfig(def, {
      FLEET_CHANGELOG_TOKEN: 'abcdefgh',
      FLEET_NATS_URL: 'nats://shared:4222',
      DATABASE_URL: 'postgresql://u:p@db/x',
      FLEET_CHANGELOG_NAMESPACE: 't1',
      FLEET_NAMESPACE: 'ignored',
      FLEET_CHANGELOG_DRY_RUN: 'YES',
      FLEET_CHANGELOG_ACK_WAIT: '1m30s',
      FLEET_CHANGELOG_REGION: 'eu',
    });
    expect(c).toMatchObject({ natsUrl: ['nats://shared:4222'], databaseUrl: 'postgresql://u:p@db/x', namespace: 't1', dryRun: true, ackWait: 90_000, region: 'eu' });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig(def, { FLEET_CHANGELOG_TOKEN: 'abcdefgh', FLEET_CHANGELOG_BATCH_SIZE: '', FLEET_CHANGELOG_NATS_URL: ' ' }).batchSize).toBe(100);
  });

  it('names every bad variable at once, with why', () => {
    const msg = configError({
      FLEET_CHANGELOG_NATS_URL: 'htp:/x',
      FLEET_CHANGELOG_BATCH_SIZE: '12abc',
      FLEET_CHANGELOG_ACK_WAIT: '10 minutes',
      FLEET_CHANGELOG_DRY_RUN: 'maybe',
      FLEET_CHANGELOG_LOG_LEVEL: 'verbose',
      FLEET_CHANGELOG_NAMESPACE: 'a.b',
      FLEET_CHANGELOG_RATIO: '2',
      DATABASE_URL: 'mysql://root:hunter2@db/x',
    });
    expect(msg).toContain('9 problem(s)');
    expect(msg).toMatch(/FLEET_CHANGELOG_NATS_URL: expected a URL with a host and scheme nats:\/\/.* \(got "htp:\/x"\)/);
    expect(msg).toMatch(/FLEET_CHANGELOG_BATCH_SIZE: expected an integer/);
    expect(msg).toMatch(/FLEET_CHANGELOG_ACK_WAIT: expected a duration/);
    expect(msg).toMatch(/FLEET_CHANGELOG_DRY_RUN: expected a boolean/);
    expect(msg).toMatch(/FLEET_CHANGELOG_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace/);
    expect(msg).toMatch(/FLEET_CHANGELOG_NAMESPACE: expected a NATS subject token/);
    expect(msg).toMatch(/FLEET_CHANGELOG_RATIO: expected at most 1/);
    expect(msg).toMatch(/DATABASE_URL: expected a URL .* \(got \(secret\)\)/);
    expect(msg).toMatch(/FLEET_CHANGELOG_TOKEN: required, not set: api token/);
    expect(msg).not.toContain('hunter2');
  });

  it('checks bounds', () => {
    expect(configError({ FLEET_CHANGELOG_TOKEN: 'abcdefgh', FLEET_CHANGELOG_BATCH_SIZE: '501' })).toMatch(/BATCH_SIZE: expected at most 500/);
    expect(configError({ FLEET_CHANGELOG_TOKEN: 'abcdefgh', FLEET_CHANGELOG_ACK_WAIT: '10ms' })).toMatch(/ACK_WAIT: expected between 1000 ms/);
    expect(configError({ FLEET_CHANGELOG_TOKEN: 'abcdefgh', FLEET_CHANGELOG_ACK_WAIT: '30d' })).toMatch(/ACK_WAIT: expected between 1000 ms and 2147483647 ms/);
  });

  it('reads process.env by default', () => {
    const small = defineConfig({ prefix: 'FLEET_TESTCFG_', options: { level: logLevelOption() } });
    expect(loadConfig(small).level).toBe(process.env['FLEET_TESTCFG_LOG_LEVEL'] ?? process.env['FLEET_LOG_LEVEL'] ?? 'info');
  });
});

describe('defineConfig', () => {
  it('refuses a bad prefix, bad names, duplicates and bad defaults', () => {
    const o = { env: 'A', schema: envInt(), description: 'a' };
    expect(() => defineConfig({ prefix: 'fleet_', options: { a: o } })).toThrow(/prefix/);
    expect(() => defineConfig({ prefix: 'FLEET_X_', options: { a: { ...o, env: 'a-b' } } })).toThrow(/UPPER_SNAKE_CASE/);
    expect(() => defineConfig({ prefix: 'FLEET_X_', options: { a: o, b: o } })).toThrow(/both read FLEET_X_A/);
    expect(() => defineConfig({ prefix: 'FLEET_X_', options: { a: { ...o, default: 'x' } } })).toThrow(/default "x" is invalid/);
  });
});

describe('helpers', () => {
  it('lists unknown prefixed variables', () => {
    expect(unknownVariables(def, { FLEET_CHANGELOG_NATS_ULR: 'x', FLEET_CHANGELOG_NATS_URL: 'y', OTHER: 'z' })).toEqual(['FLEET_CHANGELOG_NATS_ULR']);
  });
  it('redacts secrets', () => {
    const c = loadConfig(def, { FLEET_CHANGELOG_TOKEN: 'abcdefgh' });
    const r = redactConfig(def, c);
    expect(r['token']).toBe('(secret)');
    expect(r['databaseUrl']).toBe('(secret)');
    expect(r['batchSize']).toBe('100');
    expect(r['region']).toBe('undefined');
  });
  it('describes the options as a Markdown table', () => {
    const md = describeConfig(def);
    expect(md.split('\n')[0]).toBe('| variable | type | default | description |');
    expect(md).toContain('| `FLEET_CHANGELOG_NATS_URL`, then `FLEET_NATS_URL` | list of url (nats, tls, ws, wss) | `nats://127.0.0.1:4222` | NATS servers, comma-separated |');
    expect(md).toContain('| `FLEET_CHANGELOG_ACK_WAIT` | duration | `30s` |');
    expect(md).toContain('| `FLEET_CHANGELOG_TOKEN` | string | **required** | api token |');
    expect(md).toContain('| `FLEET_CHANGELOG_REGION` | string | (unset) |');
    expect(md).toContain('`fatal` \\| `error`');
    expect(md).toContain('(secret)');
  });
  it('parses durations', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('42')).toBe(42);
    for (const bad of ['', 's', '5 m', '-1s', '1w', '1e3ms']) expect(parseDuration(bad)).toBeUndefined();
    expect(MAX_TIMER_MS).toBe(2147483647);
  });
  it('parses numbers and booleans strictly', () => {
    expect(envInt().safeParse('4.0').success).toBe(false);
    expect(envInt().safeParse('1e3').success).toBe(false);
    expect(envInt().parse('-3')).toBe(-3);
    expect(envNumber().parse('1e3')).toBe(1000);
    expect(envNumber().safeParse('').success).toBe(false);
    expect(envNumber().safeParse('Infinity').success).toBe(false);
    expect(envBoolean().parse('off')).toBe(false);
    expect(envBoolean().parse('On')).toBe(true);
    expect(envBoolean().safeParse('').success).toBe(false);
  });
  it('parses URL lists', () => {
    const s = envList(envUrl(['nats']));
    expect(s.parse('nats://a:1, nats://b:2')).toEqual(['nats://a:1', 'nats://b:2']);
    expect(s.safeParse('nats://a:1,,nats://b:2').success).toBe(false);
    expect(s.safeParse('http://a').success).toBe(false);
  });
});

describe('strategy configuration', () => {
  const svc = defineConfig({ prefix: 'FLEET_SVC_', options: { ...strategyConfigOptions() } });
  const load = (env: Record<string, string>) => {
    const c = loadConfig(svc, env);
    return loadStrategyConfig({ json: c.strategies, file: c.strategiesFile, prefix: svc.prefix, env });
  };
  const file = (json: unknown): string => {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-strategies-'));
    const path = join(dir, 'strategies.json');
    writeFileSync(path, JSON.stringify(json));
    return path;
  };

  it("precedence: the service's JSON, then its file, then the shared JSON, then the shared file, then lww", () => {
    const shared = '{"default":"merge"}';
    const sharedFile = file({ default: 'custom', collections: {} });
    const own = file({ default: 'manual' });
    expect(load({})).toEqual({ default: 'lww' });
    expect(load({ FLEET_STRATEGIES_FILE: sharedFile }).default).toBe('custom');
    expect(load({ FLEET_STRATEGIES_FILE: sharedFile, FLEET_STRATEGIES: shared }).default).toBe('merge');
    // The service's own file wins over the SHARED inline JSON (it was ignored: each option fell back on its own).
    expect(load({ FLEET_STRATEGIES: shared, FLEET_SVC_STRATEGIES_FILE: own }).default).toBe('manual');
    expect(load({ FLEET_STRATEGIES: shared, FLEET_SVC_STRATEGIES_FILE: own, FLEET_SVC_STRATEGIES: '{"default":"lww"}' }).default).toBe('lww');
  });

  it('refuses a rule with a strategy that would ignore it, and names where', () => {
    expect(() => parseStrategyConfig({ default: 'lww', collections: { counters: { strategy: 'lww', rule: 'counter-sum' } } })).toThrow(/collections\.counters\.rule: a rule applies only with strategy "merge" or "custom"/);
    expect(() => parseStrategyConfig({ default: { strategy: 'manual', rule: 'max' } })).toThrow(/default\.rule/);
    expect(parseStrategyConfig({ default: 'lww', collections: { counters: { strategy: 'custom', rule: 'counter-sum' } } }).collections?.['counters']).toMatchObject({ rule: 'counter-sum' });
  });
});
