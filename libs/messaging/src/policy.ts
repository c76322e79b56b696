/**
 * The pure decisions of the transport: how long to wait before a redelivery, and what to do with a
 * message once its handler has settled. No I/O here, so every rule is unit-tested as a table.
 */
import { FleetError, isErrorCode, type ErrorCode } from '@fleet/errors';
import { Headers } from '@fleet/contracts';

export interface BackoffPolicy {
  /** Delay before the first redelivery (delivery count 1 failed). */
  readonly baseMs: number;
  /** Ceiling of the delay, whatever the delivery count. */
  readonly maxMs: number;
  /**
   * Fraction of the delay randomised (0..1), so that many messages that failed together (a
   * database restart) are not all redelivered in the same instant.
   */
  readonly jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 60_000, jitter: 0.2 };

/**
 * Delay of the nak after the `deliveryCount`-th delivery failed: exponential in the delivery count,
 * capped, with jitter drawn from `random` (in [0, 1)), so the function stays deterministic in tests.
 */
export function nakDelayMs(deliveryCount: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = () => 0.5): number {
  const n = Math.max(1, Math.floor(deliveryCount));
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(n - 1, 30));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  // jitter spreads the delay over [exp * (1 - jitter), exp], never above the cap
  const delay = exp * (1 - jitter * random());
  return Math.max(0, Math.round(delay));
}

/** What to do with one message after its handler settled. */
export type Settlement =
  | { readonly kind: 'ack' }
  | { readonly kind: 'nak'; readonly delayMs: number; readonly reason: string }
  | { readonly kind: 'dead-letter'; readonly code: ErrorCode; readonly reason: string };

/**
 * The outcome rules (see docs/messaging.md):
 * - no error: ack;
 * - a FleetError that is not retryable (schema violation, forged origin, oversized...): the input
 *   itself is wrong, so a redelivery cannot help: dead-letter, then term;
 * - anything else (retryable FleetError, or an unclassified exception, which we assume to be
 *   transient rather than drop a message on a bug): nak with backoff, until the delivery count
 *   reaches max_deliver, where it is dead-lettered with FLEET_MSG_001 instead of being stranded.
 */
export function settle(
  error: unknown,
  deliveryCount: number,
  maxDeliver: number,
  backoff: BackoffPolicy = DEFAULT_BACKOFF,
  random?: () => number,
): Settlement {
  if (error === undefined) return { kind: 'ack' };
  const reason = describeError(error);
  if (error instanceof FleetError && !error.retryable) return { kind: 'dead-letter', code: error.code, reason };
  if (maxDeliver > 0 && deliveryCount >= maxDeliver) {
    return { kind: 'dead-letter', code: 'FLEET_MSG_001', reason: `after ${deliveryCount} deliveries: ${reason}` };
  }
  return { kind: 'nak', delayMs: nakDelayMs(deliveryCount, backoff, random), reason };
}

/** A one-line reason, for a header: the code (when there is one) and the message. */
export function describeError(error: unknown): string {
  if (error instanceof FleetError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string') return error.message;
  return String(error);
}

/**
 * A request failed because nobody subscribes to its subject (NATS answers at once with "no
 * responders"): unlike a timeout, the request was certainly not handled. Follows the `cause` chain
 * (the publisher wraps the client's RequestError in a FleetError).
 */
export function isNoResponders(error: unknown): boolean {
  let e: unknown = error;
  for (let depth = 0; e instanceof Error && depth < 5; depth++) {
    const probe = (e as { isNoResponders?: unknown }).isNoResponders;
    if (typeof probe === 'function' && probe.call(e) === true) return true;
    if (e.name === 'NoRespondersError' || e.name === 'NoResponders') return true;
    e = e.cause;
  }
  return false;
}

/** Where a dead letter came from; copied into its headers. */
export interface DeadLetterOrigin {
  readonly subject: string;
  readonly stream: string;
  readonly streamSequence: number;
  readonly deliveryCount: number;
}

/** Header values a NATS header can carry: one line, bounded (a reason may quote a large input). */
export function headerValue(s: string, max = 1024): string {
  const oneLine = s.replace(/[\r\n]+/g, ' ');
  return oneLine.length <= max ? oneLine : `${oneLine.slice(0, max - 1)}…`;
}

/**
 * The headers of a dead letter: the original headers (trace context included, so the dead letter
 * joins the trace), then the reject code and reason and where it came from. Fleet's own reject
 * headers override any the original carried (a dead letter replayed and rejected again).
 */
export function deadLetterHeaders(
  original: Iterable<readonly [string, readonly string[]]> | undefined,
  code: ErrorCode,
  reason: string,
  origin: DeadLetterOrigin,
): Array<[string, string]> {
  const ours: Array<[string, string]> = [
    [Headers.RejectCode, code],
    [Headers.RejectReason, headerValue(reason)],
    [Headers.OriginalSubject, origin.subject],
    [Headers.OriginalStream, origin.stream],
    [Headers.OriginalSequence, String(origin.streamSequence)],
    [Headers.DeliveryCount, String(origin.deliveryCount)],
  ];
  const overridden = new Set(ours.map(([k]) => k.toLowerCase()));
  // `Nats-*` headers are JetStream instructions for the original publish (dedupe id, expected
  // sequence): replayed onto the dead-letter publish they would dedupe it away or make it fail.
  const out: Array<[string, string]> = [];
  for (const [k, values] of original ?? []) {
    const lk = k.toLowerCase();
    if (overridden.has(lk) || lk.startsWith('nats-')) continue;
    for (const v of values) out.push([k, v]);
  }
  return [...out, ...ours];
}

/** The error a dead letter's headers describe, rebuilt on the reading side (e.g. replay tools). */
export function rejectCodeOf(headerGet: (k: string) => string | undefined): ErrorCode | undefined {
  const c = headerGet(Headers.RejectCode);
  return c !== undefined && isErrorCode(c) ? c : undefined;
}

/** Dedupe id of a dead letter, so a dead letter published twice (term lost, redelivered) is stored once. */
export function deadLetterMsgId(stream: string, streamSequence: number, part?: number): string {
  return part === undefined ? `dlq:${stream}:${streamSequence}` : `dlq:${stream}:${streamSequence}:${part}`;
}
