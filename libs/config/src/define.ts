/**
 * One validated configuration per app, declared once: each option's variable, schema, default
 * and description. From the declaration come the typed value (`loadConfig`), the boot error
 * that names every bad variable at once, and the docs / `--help` table (`describeConfig`).
 *
 * Rules, and why:
 * - Variables are `<prefix><env>` (`FLEET_CHANGELOG_NATS_URL`), so each service's settings are
 *   distinct in a shared environment. `fallback` names shared variables read when the prefixed
 *   one is unset (`FLEET_NATS_URL` for every service, `DATABASE_URL`).
 * - A variable set to the empty string counts as unset: Kubernetes manifests and shell scripts
 *   often leave `FOO=` where they mean "no value".
 * - Defaults are written as the text a variable would hold and parsed by the same schema, so a
 *   bad default fails in the unit tests, and `describeConfig` shows exactly what to type.
 * - Unknown variables under the prefix are not an error: Kubernetes injects `<SERVICE>_PORT`
 *   and friends for every Service in the namespace (unless `enableServiceLinks: false`), which
 *   would collide with a prefix named after the service. `unknownVariables` lists them for a
 *   boot-time warning instead (typos show up there).
 * - Values of `secret` options never appear in errors or in `redactConfig`.
 */
import type { z } from 'zod';
import { FleetError } from '@fleet/errors';
import { configTypeOf } from './values';

/** A schema that reads an environment variable's text. */
export type EnvSchema = z.ZodType<unknown, string>;

export interface OptionSpec<S extends EnvSchema = EnvSchema> {
  /** Variable name after the prefix. */
  readonly env: string;
  readonly schema: S;
  /** The text used when the variable is unset; parsed by `schema`. No default and not `optional`: required. */
  readonly default?: string;
  /** Unset and no default gives `undefined` rather than an error. */
  readonly optional?: boolean;
  readonly description: string;
  /** Full variable names read, in order, when the prefixed one is unset. */
  readonly fallback?: readonly string[];
  /** Never echo the value (passwords in URLs, tokens). */
  readonly secret?: boolean;
}

export interface ConfigDef<O extends Record<string, OptionSpec>> {
  readonly prefix: string;
  readonly options: O;
}

type ValueOf<O> = O extends OptionSpec<infer S>
  ? O extends { readonly default: string }
    ? z.output<S>
    : O extends { readonly optional: true }
      ? z.output<S> | undefined
      : z.output<S>
  : never;

/** The typed configuration a definition loads to. */
export type ConfigOf<D> = D extends ConfigDef<infer O> ? { readonly [K in keyof O]: ValueOf<O[K]> } : never;

export interface ConfigProblem {
  readonly variable: string;
  readonly reason: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

const ENV_NAME = /^[A-Z][A-Z0-9_]*$/;

/** Declares an app's configuration; checks the declaration itself (names, duplicates, defaults). */
export function defineConfig<const O extends Record<string, OptionSpec>>(def: ConfigDef<O>): ConfigDef<O> {
  if (!/^[A-Z][A-Z0-9_]*_$/.test(def.prefix)) throw new TypeError(`config prefix must look like FLEET_SERVICE_: ${JSON.stringify(def.prefix)}`);
  const seen = new Map<string, string>();
  for (const [key, o] of Object.entries(def.options)) {
    if (!ENV_NAME.test(o.env)) throw new TypeError(`option ${key}: env must be UPPER_SNAKE_CASE: ${JSON.stringify(o.env)}`);
    for (const f of o.fallback ?? []) if (!ENV_NAME.test(f)) throw new TypeError(`option ${key}: fallback must be UPPER_SNAKE_CASE: ${JSON.stringify(f)}`);
    const other = seen.get(o.env);
    if (other !== undefined) throw new TypeError(`options ${other} and ${key} both read ${def.prefix}${o.env}`);
    seen.set(o.env, key);
    if (o.default !== undefined) {
      const r = o.schema.safeParse(o.default);
      if (!r.success) throw new TypeError(`option ${key}: default ${JSON.stringify(o.default)} is invalid: ${r.error.issues.map((i) => i.message).join('; ')}`);
    }
  }
  return def;
}

function present(v: string | undefined): v is string {
  return v !== undefined && v.trim() !== '';
}

function show(o: OptionSpec, text: string): string {
  if (o.secret === true) return '(secret)';
  const t = text.length > 80 ? `${text.slice(0, 77)}...` : text;
  return JSON.stringify(t);
}

/** Reads and validates every option; returns the typed config or throws FLEET_CONFIG_001 listing every problem. */
export function loadConfig<D extends ConfigDef<Record<string, OptionSpec>>>(def: D, env: Env = process.env): ConfigOf<D> {
  const out: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  for (const [key, o] of Object.entries(def.options)) {
    const primary = `${def.prefix}${o.env}`;
    let variable = primary;
    let text: string | undefined = env[primary];
    if (!present(text)) {
      text = undefined;
      for (const f of o.fallback ?? []) {
        if (present(env[f])) {
          variable = f;
          text = env[f];
          break;
        }
      }
    }
    if (text === undefined) {
      if (o.default !== undefined) {
        text = o.default;
        variable = `${primary} (default)`;
      } else if (o.optional === true) {
        out[key] = undefined;
        continue;
      } else {
        const also = o.fallback?.length ? ` (nor ${o.fallback.join(', ')})` : '';
        problems.push({ variable: primary, reason: `required, not set${also}: ${o.description}` });
        continue;
      }
    }
    const r = o.schema.safeParse(text);
    if (r.success) out[key] = r.data;
    else problems.push({ variable, reason: `${r.error.issues.map((i) => i.message).join('; ')} (got ${show(o, text)})` });
  }
  if (problems.length > 0) {
    const list = problems.map((p) => `  ${p.variable}: ${p.reason}`).join('\n');
    throw new FleetError('FLEET_CONFIG_001', `${problems.length} problem(s):\n${list}`, { details: { problems } });
  }
  return Object.freeze(out) as ConfigOf<D>;
}

/** Variables under the prefix that no option reads: log them as a warning at boot (they are often typos). */
export function unknownVariables(def: ConfigDef<Record<string, OptionSpec>>, env: Env = process.env): string[] {
  const known = new Set(Object.values(def.options).map((o) => `${def.prefix}${o.env}`));
  return Object.keys(env)
    .filter((k) => k.startsWith(def.prefix) && !known.has(k))
    .sort();
}

/** The loaded config as loggable text values, with secrets masked. */
export function redactConfig<D extends ConfigDef<Record<string, OptionSpec>>>(def: D, config: ConfigOf<D>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, o] of Object.entries(def.options)) {
    const v: unknown = (config as Record<string, unknown>)[key];
    out[key] = o.secret === true && v !== undefined ? '(secret)' : JSON.stringify(v) ?? 'undefined';
  }
  return out;
}

/** The options as a Markdown table, for docs and `--help`. */
export function describeConfig(def: ConfigDef<Record<string, OptionSpec>>): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = Object.values(def.options).map((o) => {
    const names = [`\`${def.prefix}${o.env}\``, ...(o.fallback ?? []).map((f) => `\`${f}\``)].join(', then ');
    const dflt = o.default !== undefined ? (o.secret === true ? '(secret)' : `\`${o.default}\``) : o.optional === true ? '(unset)' : '**required**';
    return `| ${names} | ${cell(configTypeOf(o.schema))} | ${cell(dflt)} | ${cell(o.description)} |`;
  });
  return ['| variable | type | default | description |', '|---|---|---|---|', ...rows].join('\n');
}
