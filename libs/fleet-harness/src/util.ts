// The test-process helpers are messaging's (one copy): re-exported for the harness's users.
export { eventually, freePort, PrivateNatsServer, sleep } from '@fleet/messaging/src/test-support';

/** mulberry32: a small seeded PRNG; every random choice of a scenario comes from one, so a seed replays it. */
export class Prng {
  private s: number;
  /** `tape`: a record of every draw (count and hash) shared with forks: a scenario's fingerprint. */
  constructor(
    seed: number,
    private readonly tape?: DrawTape,
  ) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const out = (t ^ (t >>> 14)) >>> 0;
    this.tape?.record(out);
    return out / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /**
   * A child generator (its own stream), so one component's draws do not shift another's. It records on
   * this one's tape unless `untaped` (for draws whose number depends on timing, such as retry jitter).
   */
  fork(opts: { untaped?: boolean } = {}): Prng {
    return new Prng(Math.floor(this.next() * 4294967296), opts.untaped === true ? undefined : this.tape);
  }
  shuffle<T>(xs: readonly T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j] as T, a[i] as T];
    }
    return a;
  }
}

/**
 * Every draw of a generator and its forks, in order: how many, and an FNV-1a hash of their values. Two
 * runs that made the same random choices have the same fingerprint; a choice drawn only on some
 * runs (say, depending on what a replica held at that moment) shows as a different one.
 */
export class DrawTape {
  draws = 0;
  private hash = 0x811c9dc5;

  record(value: number): void {
    this.draws++;
    for (let i = 0; i < 4; i++) this.hash = Math.imul(this.hash ^ ((value >>> (i * 8)) & 0xff), 0x01000193) >>> 0;
  }

  get fingerprint(): string {
    return `${this.draws} draws, ${this.hash.toString(16).padStart(8, '0')}`;
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}
