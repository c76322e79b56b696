/**
 * Nudges: after changes land in a scope, each agent subscribed to it gets one core-NATS message on
 * `notify(agentId)` so it pulls now. A throttle with a leading edge: the first appended event after a
 * quiet window is flushed at once (a lone change reaches its agents without waiting), the scopes of
 * every event after it are gathered until `windowMs` after that flush and flushed together. So a
 * burst costs each subscribed agent at most one nudge per window, however many events it has, and an
 * agent's nudges are never closer than `windowMs`. A lost nudge only delays a pull until the agent's
 * scheduler fires, so nudges are fire-and-forget.
 */
import { decodeAppendedRefs } from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';

export interface NudgeSink {
  publishCore(subject: string, payload?: Uint8Array | string): void;
}

export class Nudger {
  private pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** When the last nudges went out. */
  private lastFlushAt = Number.NEGATIVE_INFINITY;
  /** A flush is resolving subscribers or publishing: events meanwhile wait for it to end. */
  private busy = false;
  private stopped = false;
  private flushing: Promise<void> = Promise.resolve();
  /** Nudges sent, for tests and metrics. */
  sent = 0;

  constructor(
    private readonly subscribersOf: (scopes: readonly string[]) => Promise<string[]>,
    private readonly sink: NudgeSink,
    private readonly s: Subjects,
    private readonly windowMs = 75,
    private readonly onError: (e: unknown) => void = () => undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** One appended event (bytes from the log stream). Undecodable events are ignored: a nudge is an optimisation. */
  onAppended(bytes: Uint8Array): void {
    let scopes: string[];
    try {
      // Only the scopes matter here: the refs decoder checks what it reads and skips the changes' bodies.
      scopes = decodeAppendedRefs(bytes).changes.map((c) => c.scope);
    } catch (e) {
      this.onError(e);
      return;
    }
    for (const sc of scopes) this.pending.add(sc);
    if (this.timer === undefined && !this.busy) this.arm();
  }

  /** Flushes now if the window since the last nudges has passed, else when it will have. */
  private arm(): void {
    if (this.stopped) return;
    const wait = this.lastFlushAt + this.windowMs - this.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.arm();
      }, wait);
      return;
    }
    const scopes = [...this.pending];
    this.pending = new Set();
    this.busy = true;
    this.flushing = this.flushing.then(async () => {
      await this.flush(scopes);
      this.busy = false;
      // The window runs from when the nudges went out (resolving subscribers may take a while).
      this.lastFlushAt = this.now();
      if (this.pending.size > 0 && this.timer === undefined) this.arm();
    });
  }

  private async flush(scopes: readonly string[]): Promise<void> {
    if (scopes.length === 0) return;
    try {
      for (const agent of await this.subscribersOf(scopes)) {
        this.sink.publishCore(this.s.notify(agent), '');
        this.sent++;
      }
    } catch (e) {
      this.onError(e);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.flushing;
    if (this.pending.size > 0) {
      const scopes = [...this.pending];
      this.pending = new Set();
      await this.flush(scopes);
    }
  }
}
