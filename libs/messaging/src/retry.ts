import { isFleetError } from '@fleet/errors';
import { nakDelayMs, type BackoffPolicy } from './policy';

export interface PublishRetryPolicy extends BackoffPolicy {
  /** Attempts in all (the first included). */
  readonly attempts: number;
}

/**
 * For a publish that announces something already committed (the change log's `appended` events):
 * about 6 s in all, enough to ride out a NATS restart or a JetStream leader move.
 */
export const DEFAULT_PUBLISH_RETRY: PublishRetryPolicy = { attempts: 6, baseMs: 200, maxMs: 2_000, jitter: 0.2 };

/**
 * Runs `publish` until it succeeds, at most `policy.attempts` times, waiting `nakDelayMs` (exponential,
 * capped, jittered) between attempts; a non-retryable FleetError (e.g. FLEET_MSG_002) is thrown at once,
 * the last error after the last attempt. The caller must pass the SAME `Nats-Msg-Id` on every attempt,
 * so that JetStream drops the copy of an attempt that was stored but whose PubAck was lost.
 */
export async function retryPublish<T>(
  publish: () => Promise<T>,
  policy: PublishRetryPolicy = DEFAULT_PUBLISH_RETRY,
  opts: { readonly random?: () => number; readonly sleep?: (ms: number) => Promise<void>; readonly onRetry?: (attempt: number, error: unknown) => void } = {},
): Promise<T> {
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 1; ; attempt++) {
    try {
      return await publish();
    } catch (e) {
      if (attempt >= policy.attempts || (isFleetError(e) && !e.retryable)) throw e;
      opts.onRetry?.(attempt, e);
      await sleep(nakDelayMs(attempt, policy, opts.random));
    }
  }
}
