/**
 * Nudges: after changes land in a scope, each agent subscribed to it gets one core-NATS message on
 * `notify(agentId)` so it pulls now. Bursts are coalesced: scopes seen within `windowMs` of the first
 * are flushed together, each agent nudged once per flush. A lost nudge only delays a pull until the
 * agent's scheduler fires, so nudges are fire-and-forget.
 */
import { decodeAppendedEvent } from '@fleet/contracts';
import type { Subjects } from '@fleet/contracts';

export interface NudgeSink {
  publishCore(subject: string, payload?: Uint8Array | string): void;
}

export class Nudger {
  private pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Nudges sent, for tests and metrics. */
  sent = 0;

  constructor(
    private readonly subscribersOf: (scopes: readonly string[]) => Promise<string[]>,
    private readonly sink: NudgeSink,
    private readonly s: Subjects,
    private readonly windowMs = 75,
    private readonly onError: (e: unknown) => void = () => undefined,
  ) {}

  /** One appended event (bytes from the log stream). Undecodable events are ignored: a nudge is an optimisation. */
  onAppended(bytes: Uint8Array): void {
    let scopes: string[];
    try {
      scopes = decodeAppendedEvent(bytes).changes.map((c) => c.scope);
    } catch (e) {
      this.onError(e);
      return;
    }
    for (const sc of scopes) this.pending.add(sc);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
    }, this.windowMs);
  }

  private async flush(): Promise<void> {
    const scopes = [...this.pending];
    this.pending = new Set();
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
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.flushing = this.flushing.then(() => this.flush());
    }
    await this.flushing;
  }
}
