/** What every fleetctl command shares: its context, the request helper, usage errors and option readers. */
import { envDuration } from '@fleet/config';
import type { CommandLineIo } from '@fleet/config';
import { encodeJson, Headers, PROTOCOL_VERSION } from '@fleet/contracts';
import type { Reply, Subjects } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import type { Messaging } from '@fleet/messaging';
import type { OperatorConfig } from './config';

export type Io = CommandLineIo;
export type Options = Record<string, string | boolean | undefined>;

export interface Ctx {
  readonly bus: Messaging;
  readonly s: Subjects;
  readonly config: OperatorConfig;
  readonly io: Io;
  readonly json: boolean;
}

export class UsageError extends Error {}

export function usage(why: string): never {
  throw new UsageError(`${why} (fleetctl --help for usage)`);
}

/** The service's reply, or its error reply as a FleetError with the service's code. */
export function valueOf<T>(reply: Reply<T>): T {
  if (reply.ok) return reply.value;
  throw new FleetError('FLEET_MSG_004', reply.error.message, { details: { remoteCode: reply.error.code } });
}

/** A string option's value (parseArgs gives booleans for flags). */
export function stringOption(v: Options, k: string): string | undefined {
  return typeof v[k] === 'string' ? v[k] : undefined;
}

export function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,15}$/.test(v) || Number(v) < 1) usage(`${name} must be a positive integer`);
  return Number(v);
}

export function nonNegativeInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,15}$/.test(v)) usage(`${name} must be a non-negative integer`);
  return Number(v);
}

export function durationOption(name: string, v: string | undefined, bounds: { min: number; max: number }): number | undefined {
  if (v === undefined) return undefined;
  const parsed = envDuration(bounds).safeParse(v);
  if (!parsed.success) usage(`${name}: expected a duration such as 500ms, 10s or 5m, between ${bounds.min} ms and ${bounds.max} ms`);
  return parsed.data;
}

/**
 * One operator request: every one carries the operator token (`operatorAuth`), reads as well as changes;
 * `action` says what it is for in the error when no token is configured.
 */
export async function ask(c: Ctx, subject: string, body: object, action: string, timeoutMs = c.config.timeout): Promise<Uint8Array> {
  const headers = operatorAuth(c, action);
  return (await c.bus.request(subject, encodeJson({ protocol: PROTOCOL_VERSION, ...body }), { timeoutMs, headers })).data;
}

/** The operator token header every operator request carries; refused here (FLEET_AUTH_004, exit 77) when no token is configured. */
export function operatorAuth(c: Ctx, action: string): Record<string, string> {
  if (c.config.token === undefined) throw new FleetError('FLEET_AUTH_004', `set FLEET_OPERATOR_TOKEN to the operator token to ${action} (every operator request needs it, reads too)`);
  return { [Headers.Authorization]: `Bearer ${c.config.token}` };
}

/** The error code a service answered with (`valueOf`'s `remoteCode`), else the error's own. */
export function codeOf(e: unknown): string | undefined {
  if (!isFleetError(e)) return undefined;
  const remote = e.details?.['remoteCode'];
  return typeof remote === 'string' ? remote : e.code;
}

/** Left-aligned columns for a table printed to a terminal. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}
