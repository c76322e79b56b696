/**
 * Schemas for values read from environment variables. Every value arrives as a string, and
 * zod's `z.coerce` guesses wrong for configuration (`z.coerce.boolean()` reads "false" as true,
 * `z.coerce.number()` reads "" as 0 and `parseInt` reads "12abc" as 12), so each type here
 * parses its text strictly and says what it expected.
 *
 * Each schema carries `meta({ configType })`, which `describeConfig` prints as the type.
 */
import { z } from 'zod';

/** The type label `describeConfig` shows for an option's schema. */
export function configTypeOf(schema: z.ZodType): string {
  const meta = schema.meta();
  const t = meta?.['configType'];
  if (typeof t === 'string') return t;
  const def = schema._zod.def;
  if (def.type === 'enum') return (schema as z.ZodEnum).options.map((o) => `\`${String(o)}\``).join(' | ');
  return def.type;
}

export function envString(opts: { min?: number; max?: number; pattern?: RegExp; patternHint?: string } = {}) {
  let s = z.string();
  if (opts.min !== undefined) s = s.min(opts.min, { error: `expected at least ${opts.min} characters` });
  if (opts.max !== undefined) s = s.max(opts.max, { error: `expected at most ${opts.max} characters` });
  if (opts.pattern !== undefined) s = s.regex(opts.pattern, { error: opts.patternHint ?? `expected to match ${String(opts.pattern)}` });
  return s.meta({ configType: 'string' });
}

/** An integer written in decimal (`-3`, `42`; not `4.0`, `1e3`, `12abc`), within bounds. */
export function envInt(opts: { min?: number; max?: number } = {}) {
  const min = opts.min ?? Number.MIN_SAFE_INTEGER;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return z
    .string()
    .regex(/^[+-]?\d+$/, { error: 'expected an integer' })
    .transform(Number)
    .pipe(z.number().min(min, { error: `expected at least ${min}` }).max(max, { error: `expected at most ${max}` }))
    .meta({ configType: 'integer' });
}

/** A finite decimal number (`0.5`, `-2`, `1e3`). */
export function envNumber(opts: { min?: number; max?: number } = {}) {
  return z
    .string()
    .regex(/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/, { error: 'expected a number' })
    .transform(Number)
    .pipe(
      z
        .number()
        .finite({ error: 'expected a finite number' })
        .min(opts.min ?? -Infinity, { error: `expected at least ${opts.min}` })
        .max(opts.max ?? Infinity, { error: `expected at most ${opts.max}` }),
    )
    .meta({ configType: 'number' });
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/** `true/false`, `1/0`, `yes/no`, `on/off`, any case. */
export function envBoolean() {
  return z
    .string()
    .transform((s, ctx) => {
      const v = s.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      ctx.addIssue({ code: 'custom', message: 'expected a boolean: true/false, 1/0, yes/no, on/off' });
      return z.NEVER;
    })
    .meta({ configType: 'boolean' });
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Node's timers take at most 2^31-1 ms (about 24.8 days); a longer delay fires at once, with
 * only a warning. Durations are capped there by default because most of them end up in a timer.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Parses `250ms`, `30s`, `5m`, `1h30m`, `2d`, or a bare integer of milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (/^\d+$/.test(s)) return Number(s);
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(s)) return undefined;
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? NaN);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** A duration, as milliseconds. */
export function envDuration(opts: { min?: number; max?: number } = {}) {
  const min = opts.min ?? 0;
  const max = opts.max ?? MAX_TIMER_MS;
  return z
    .string()
    .transform((s, ctx) => {
      const ms = parseDuration(s);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 250ms, 30s, 5m, 1h30m, 2d (a bare number is milliseconds)' });
        return z.NEVER;
      }
      if (ms < min || ms > max) {
        ctx.addIssue({ code: 'custom', message: `expected between ${min} ms and ${max} ms, got ${ms} ms` });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ configType: 'duration' });
}

/** One of fixed values (case-sensitive). */
export function envEnum<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `expected one of ${values.join(', ')}` });
}

/**
 * A URL with one of the given schemes. `new URL` alone accepts nearly anything
 * (`htp:/x` parses), so the scheme list is what catches a typo.
 */
export function envUrl(protocols: readonly string[]) {
  return z
    .string()
    .refine(
      (s) => {
        try {
          const u = new URL(s);
          return protocols.includes(u.protocol.replace(/:$/, '')) && u.hostname.length > 0;
        } catch {
          return false;
        }
      },
      { error: `expected a URL with a host and scheme ${protocols.map((p) => `${p}://`).join(' or ')}` },
    )
    .meta({ configType: `url (${protocols.join(', ')})` });
}

/** A comma-separated list, each item parsed by `item`; empty items are refused. */
export function envList<T extends z.ZodType<unknown, string>>(item: T, opts: { min?: number } = {}) {
  const min = opts.min ?? 1;
  return z
    .string()
    .transform((s) => s.split(',').map((x) => x.trim()))
    .pipe(z.array(item).min(min, { error: `expected at least ${min} item(s)` }))
    .meta({ configType: `list of ${configTypeOf(item)}` });
}
