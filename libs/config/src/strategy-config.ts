/**
 * The conflict strategy configuration, loaded ONE way for every server service: version-vector needs
 * it for the views it stores (`applyChange`), conflict-resolver for the resolutions it writes, and
 * both must read the same file or they would disagree about every contested record.
 *
 * Source: `<PREFIX>STRATEGIES` (JSON text) or `<PREFIX>STRATEGIES_FILE` (a JSON file path), falling
 * back to the shared `FLEET_STRATEGIES` / `FLEET_STRATEGIES_FILE`; neither set means `{"default":"lww"}`.
 * The JSON is checked in two steps: its shape (zod, every path named), then sync-core's
 * `validateStrategyConfig` (rule names exist, reserved names). Rules written in code (`FieldRule`
 * functions) are passed by the app, the JSON names them. Any problem fails the boot with FLEET_CONFIG_001.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { FleetError, isFleetError } from '@fleet/errors';
import { envString } from './values';
import type { Env } from './define';
import { validateStrategyConfig, type FieldRule, type StrategyConfig } from '@fleet/sync-core';

const Name = z.string().min(1).max(128);
const FieldStrategySchema = z.union([z.literal('lww'), z.literal('manual'), z.strictObject({ rule: Name })]);
const CollectionStrategySchema = z
  .strictObject({
    strategy: z.enum(['lww', 'merge', 'manual', 'custom']),
    rule: Name.optional(),
    fields: z.record(Name, FieldStrategySchema).optional(),
    onDelete: z.enum(['lww', 'edit-wins', 'delete-wins', 'manual']).optional(),
  })
  // Only `merge` and `custom` apply a collection's rule: accepted with `lww` or `manual`, it would be
  // ignored (counters summed by a rule would be settled by last-writer-wins instead).
  .refine((c) => c.rule === undefined || c.strategy === 'merge' || c.strategy === 'custom', {
    error: 'a rule applies only with strategy "merge" or "custom" (per field: "fields": {"<field>": {"rule": ...}})',
    path: ['rule'],
  });
export const StrategyConfigJsonSchema = z.strictObject({
  default: z.union([z.enum(['lww', 'merge', 'manual', 'custom']), CollectionStrategySchema]),
  collections: z.record(Name, CollectionStrategySchema).optional(),
});
export type StrategyConfigJson = z.output<typeof StrategyConfigJsonSchema>;

export const DEFAULT_STRATEGY_CONFIG: StrategyConfig = { default: 'lww' };

/** Options for an app's `defineConfig`: `strategies` (inline JSON) and `strategiesFile` (a path). */
export function strategyConfigOptions() {
  return {
    strategies: {
      env: 'STRATEGIES',
      schema: envString({ max: 1_000_000 }),
      optional: true,
      description: 'conflict strategies as JSON ({"default":"lww","collections":{...}}); see docs/conflicts.md',
      fallback: ['FLEET_STRATEGIES'],
    },
    strategiesFile: {
      env: 'STRATEGIES_FILE',
      schema: envString({ max: 4096 }),
      optional: true,
      description: 'path of a JSON file with the conflict strategies (used when STRATEGIES is unset)',
      fallback: ['FLEET_STRATEGIES_FILE'],
    },
  } as const;
}

/** Parses and validates a configuration given as a JS value (already parsed JSON). Throws FLEET_CONFIG_001. */
export function parseStrategyConfig(value: unknown, rules: { readonly [name: string]: FieldRule } = {}, where = 'strategies'): StrategyConfig {
  const r = StrategyConfigJsonSchema.safeParse(value);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.length === 0 ? '(root)' : i.path.join('.')}: ${i.message}`);
    throw new FleetError('FLEET_CONFIG_001', `${where}: ${issues.join('; ')}`, { details: { issues } });
  }
  const config = stripUndefined({ ...r.data, ...(Object.keys(rules).length > 0 ? { rules } : {}) }) as StrategyConfig;
  try {
    validateStrategyConfig(config);
  } catch (e) {
    throw new FleetError('FLEET_CONFIG_001', `${where}: ${isFleetError(e) ? e.message : String(e)}`, { cause: e });
  }
  return config;
}

/**
 * Loads from inline JSON or a file (inline wins); the default when neither is given. `json` and `file`
 * are the options of `strategyConfigOptions`, each of which falls back to its shared variable on its
 * own; given the service's `prefix`, the service's own file also wins over the SHARED inline JSON
 * (`<PREFIX>STRATEGIES_FILE` over `FLEET_STRATEGIES`), as the precedence promises: the service's
 * settings, then the shared ones.
 */
export function loadStrategyConfig(
  source: { readonly json?: string | undefined; readonly file?: string | undefined; readonly prefix?: string; readonly env?: Env },
  rules: { readonly [name: string]: FieldRule } = {},
): StrategyConfig {
  let text: string;
  let where: string;
  const env = source.env ?? process.env;
  const set = (name: string): boolean => (env[name] ?? '').trim() !== '';
  const ownFileOverSharedJson = source.prefix !== undefined && set(`${source.prefix}STRATEGIES_FILE`) && !set(`${source.prefix}STRATEGIES`);
  if (!ownFileOverSharedJson && source.json !== undefined && source.json.trim() !== '') {
    text = source.json;
    where = 'STRATEGIES';
  } else if (source.file !== undefined && source.file.trim() !== '') {
    where = `STRATEGIES_FILE ${source.file}`;
    try {
      text = readFileSync(source.file, 'utf8');
    } catch (e) {
      throw new FleetError('FLEET_CONFIG_001', `${where}: cannot read: ${(e as Error).message}`, { cause: e });
    }
  } else {
    return parseStrategyConfig(DEFAULT_STRATEGY_CONFIG, rules);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FleetError('FLEET_CONFIG_001', `${where}: not JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseStrategyConfig(value, rules, where);
}

/** From the environment directly (tests, tools): `FLEET_STRATEGIES` / `FLEET_STRATEGIES_FILE`. */
export function strategyConfigFromEnv(env: Env = process.env, rules: { readonly [name: string]: FieldRule } = {}): StrategyConfig {
  return loadStrategyConfig({ json: env['FLEET_STRATEGIES'], file: env['FLEET_STRATEGIES_FILE'] }, rules);
}

/** The strategy name a collection is resolved with (metrics, conflict rows). */
export function strategyNameOf(config: StrategyConfig, collection: string): 'lww' | 'merge' | 'manual' | 'custom' {
  const listed = config.collections !== undefined && Object.prototype.hasOwnProperty.call(config.collections, collection) ? config.collections[collection] : undefined;
  const c = listed ?? (typeof config.default === 'string' ? { strategy: config.default } : config.default);
  return c.strategy;
}

function stripUndefined(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripUndefined);
  if (typeof v !== 'object' || v === null || typeof v === 'function') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = typeof x === 'function' ? x : stripUndefined(x);
  return out;
}
