/**
 * Failpoints: a TEST-ONLY hook for fault tests that must crash a real process at an exact point
 * (e.g. after the commit, before the ack). Off unless `FLEET_FAILPOINTS` (or the service's own
 * `FLEET_CHANGELOG_FAILPOINTS`) is set; then `hit(name)` performs the action named for it:
 *
 *   FLEET_FAILPOINTS=change-log.after-commit=kill             SIGKILL this process (no cleanup, no ack)
 *   FLEET_FAILPOINTS=change-log.after-commit=throw            throw a retryable error (the message is nak'ed)
 *   FLEET_FAILPOINTS=change-log.after-commit=delay(1500)      wait 1.5 s (to land a SIGTERM mid-batch)
 *
 * Unknown failpoint names or actions fail the boot: a typo must not make a fault test pass by
 * testing nothing. The service logs a warning when any failpoint is armed.
 *
 * Kept in the app until a second service needs it; then it moves to a lib unchanged.
 */
import { FleetError } from '@fleet/errors';

export type FailpointAction = { readonly kind: 'kill' } | { readonly kind: 'throw' } | { readonly kind: 'delay'; readonly ms: number };

export class Failpoints {
  static readonly none = new Failpoints(new Map());

  private constructor(private readonly armed: ReadonlyMap<string, FailpointAction>) {}

  /** Parses `name=action[,name=action]`; every name must be in `known`. */
  static parse(spec: string | undefined, known: readonly string[]): Failpoints {
    if (spec === undefined || spec.trim() === '') return Failpoints.none;
    const armed = new Map<string, FailpointAction>();
    for (const item of spec.split(',')) {
      const [name = '', action = ''] = item.trim().split('=');
      if (!known.includes(name)) throw new FleetError('FLEET_CONFIG_001', `unknown failpoint ${JSON.stringify(name)}; known: ${known.join(', ')}`);
      const delay = /^delay\((\d+)\)$/.exec(action);
      if (action === 'kill' || action === 'throw') armed.set(name, { kind: action });
      else if (delay) armed.set(name, { kind: 'delay', ms: Number(delay[1]) });
      else throw new FleetError('FLEET_CONFIG_001', `failpoint ${name}: unknown action ${JSON.stringify(action)} (kill, throw, delay(ms))`);
    }
    return new Failpoints(armed);
  }

  get active(): boolean {
    return this.armed.size > 0;
  }

  describe(): string {
    return [...this.armed].map(([n, a]) => `${n}=${a.kind === 'delay' ? `delay(${a.ms})` : a.kind}`).join(',');
  }

  async hit(name: string): Promise<void> {
    const a = this.armed.get(name);
    if (a === undefined) return;
    switch (a.kind) {
      case 'kill':
        process.stderr.write(`failpoint ${name}: SIGKILL\n`);
        process.kill(process.pid, 'SIGKILL');
        // SIGKILL is not delivered synchronously; never carry on past the failpoint meanwhile.
        await new Promise<never>(() => undefined);
        return;
      case 'throw':
        throw new Error(`failpoint ${name}`);
      case 'delay':
        await new Promise((r) => setTimeout(r, a.ms));
        return;
    }
  }
}
