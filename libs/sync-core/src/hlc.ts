/**
 * Hybrid logical clock (Kulkarni et al.): a physical millisecond time plus a logical counter, plus
 * the node id for a total order. It stays close to wall time (so "last writer" means something to
 * an operator) yet never runs backwards, even when the host's clock does (NTP step, VM restore).
 *
 * Causality between writes is tracked by version vectors, not by the HLC: the HLC only orders
 * writes that are concurrent (LWW). That is why the drift bound below may refuse to follow a remote
 * clock without breaking anything: a write that causally follows another wins by its vector, whatever
 * its timestamp.
 *
 * Drift bound. A remote timestamp more than `maxDriftMs` ahead of our physical clock is a host with a
 * wrong clock, or one that talked to such a host. We still apply its change, ordered by its own
 * timestamp (dropping it would lose data, and refusing it would block that host forever). But our
 * clock adopts at most `now + maxDriftMs`, and the receive reports `drifted: true` so the caller can
 * count and alert. Otherwise one host set to next year would drag every replica's clock a year ahead,
 * and from then on every write of every host that had not yet heard of it would lose every LWW tie.
 *
 * Default 5 minutes: well above the error of a host that syncs NTP at all (cheap RTCs drift seconds
 * per day, so even a week offline stays under a minute), so honest hosts are never flagged, while a
 * badly set clock can pull the fleet at most 5 minutes ahead.
 */
import { FleetError } from '@fleet/errors';
import type { HlcString } from './model';

export interface Hlc {
  /** Milliseconds since the epoch (physical component). */
  readonly wallMs: number;
  /** Logical counter: orders events within one `wallMs`. */
  readonly counter: number;
  /** The node (origin) id: breaks ties so that no two nodes ever issue equal timestamps. */
  readonly node: string;
}

/** A clock's state is the last timestamp it issued: the next one must be greater. */
export type HlcState = Hlc;

export interface HlcOptions {
  /** How far ahead of local physical time a remote clock may pull ours. Default `DEFAULT_MAX_DRIFT_MS`. */
  readonly maxDriftMs?: number;
}

export const DEFAULT_MAX_DRIFT_MS = 5 * 60_000;

const WALL_DIGITS = 15;
const COUNTER_DIGITS = 6;
/** 10^15 - 1 ms is about the year 33658: the fixed width never overflows in practice. */
export const HLC_MAX_WALL_MS = 10 ** WALL_DIGITS - 1;
/**
 * Past this the counter carries into `wallMs` (+1 ms). Needs a million events in one millisecond of
 * logical time, e.g. a clock pinned at the drift bound for a long burst: moving 1 ms ahead of physical
 * time is harmless, a wider encoding for everyone is not.
 */
export const HLC_MAX_COUNTER = 10 ** COUNTER_DIGITS - 1;

/**
 * Node ids are printable ASCII without spaces: then UTF-16 order (JavaScript), byte order (SQLite) and
 * PostgreSQL's "C" collation agree on the order of encoded timestamps. Index HLC columns with COLLATE "C".
 */
const NODE_RE = /^[\x21-\x7e]{1,128}$/;
const ENCODED_RE = /^(\d{15})-(\d{6})-([\x21-\x7e]{1,128})$/;

function invalid(why: string, details?: Record<string, unknown>): never {
  throw new FleetError('FLEET_CLOCK_001', why, details === undefined ? undefined : { details });
}

function checkNode(node: string): void {
  if (typeof node !== 'string' || !NODE_RE.test(node)) invalid('node id must be 1-128 printable ASCII characters', { node });
}

function checkMs(ms: number, what: string): void {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > HLC_MAX_WALL_MS) invalid(`${what} must be an integer in [0, ${HLC_MAX_WALL_MS}]`, { [what]: ms });
}

function checkHlc(ts: Hlc): void {
  checkMs(ts.wallMs, 'wallMs');
  if (!Number.isSafeInteger(ts.counter) || ts.counter < 0 || ts.counter > HLC_MAX_COUNTER) invalid('counter out of range', { counter: ts.counter });
  checkNode(ts.node);
}

/** A fresh clock for `node`, before any event. */
export function hlcInit(node: string): HlcState {
  checkNode(node);
  return { wallMs: 0, counter: 0, node };
}

/** Bump past `(wallMs, counter)` by one logical tick, carrying into wallMs when the counter is full. */
function tick(wallMs: number, counter: number, node: string): Hlc {
  if (counter < HLC_MAX_COUNTER) return { wallMs, counter: counter + 1, node };
  if (wallMs >= HLC_MAX_WALL_MS) invalid('clock exhausted');
  return { wallMs: wallMs + 1, counter: 0, node };
}

/** A local event (a write): the next timestamp, which is also the new state. */
export function hlcNow(state: HlcState, physicalNowMs: number): { state: HlcState; ts: Hlc } {
  checkHlc(state);
  checkMs(physicalNowMs, 'physicalNowMs');
  const ts = physicalNowMs > state.wallMs ? { wallMs: physicalNowMs, counter: 0, node: state.node } : tick(state.wallMs, state.counter, state.node);
  return { state: ts, ts };
}

/**
 * A receive event: the clock moves past the remote timestamp (so later local writes order after what
 * we saw), except that it follows the remote at most to `now + maxDriftMs` (see the module comment).
 * `drifted` is true when the remote was beyond that bound.
 */
export function hlcReceive(
  state: HlcState,
  remote: Hlc | HlcString,
  physicalNowMs: number,
  options: HlcOptions = {},
): { state: HlcState; ts: Hlc; drifted: boolean } {
  checkHlc(state);
  checkMs(physicalNowMs, 'physicalNowMs');
  const r = typeof remote === 'string' ? decodeHlc(remote) : remote;
  if (typeof remote !== 'string') checkHlc(r);
  const maxDrift = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
  if (!Number.isSafeInteger(maxDrift) || maxDrift < 0) invalid('maxDriftMs must be a non-negative integer', { maxDriftMs: maxDrift });
  const bound = Math.min(physicalNowMs + maxDrift, HLC_MAX_WALL_MS);
  const drifted = r.wallMs > bound;
  // A drifted remote counts as if it were exactly at the bound: we move as far as we accept, no further.
  const rWall = drifted ? bound : r.wallMs;
  const rCounter = drifted ? 0 : r.counter;
  const wall = Math.max(state.wallMs, rWall, physicalNowMs);
  let ts: Hlc;
  if (wall === state.wallMs && wall === rWall) ts = tick(wall, Math.max(state.counter, rCounter), state.node);
  else if (wall === state.wallMs) ts = tick(wall, state.counter, state.node);
  else if (wall === rWall) ts = tick(wall, rCounter, state.node);
  else ts = { wallMs: wall, counter: 0, node: state.node };
  return { state: ts, ts, drifted };
}

/** Total order: wallMs, then counter, then node id (code unit order, same as the encoding). */
export function hlcCompare(a: Hlc, b: Hlc): -1 | 0 | 1 {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1;
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  if (a.node === b.node) return 0;
  return a.node < b.node ? -1 : 1;
}

/**
 * `WWWWWWWWWWWWWWW-CCCCCC-node`: zero-padded decimal, so plain string comparison equals `hlcCompare`
 * (the fixed-width prefix decides first, then the node id). Decimal rather than hex so that an
 * operator can read the milliseconds in a log line or a SQL result.
 */
export function encodeHlc(ts: Hlc): HlcString {
  checkHlc(ts);
  return `${String(ts.wallMs).padStart(WALL_DIGITS, '0')}-${String(ts.counter).padStart(COUNTER_DIGITS, '0')}-${ts.node}`;
}

/** Parses an encoded timestamp; throws `FLEET_CLOCK_001` for anything `encodeHlc` would not produce. */
export function decodeHlc(s: HlcString): Hlc {
  if (typeof s !== 'string') invalid('not a string');
  const m = ENCODED_RE.exec(s);
  if (m === null) invalid('malformed timestamp', { hlc: s });
  return { wallMs: Number(m[1]), counter: Number(m[2]), node: m[3] as string };
}

/** Whether `s` is a well-formed encoded timestamp. */
export function isHlcString(s: unknown): s is HlcString {
  return typeof s === 'string' && ENCODED_RE.test(s);
}
