/** A counting semaphore: at most `max` tasks run at once, the rest wait in arrival order. */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly idleWaiters: Array<() => void> = [];

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`semaphore size must be a positive integer, got ${max}`);
  }

  get inFlight(): number {
    return this.active;
  }

  get free(): number {
    return this.max - this.active;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  acquire(): Promise<void> {
    if (this.active < this.max) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(() => { this.active++; resolve(); }));
  }

  release(): void {
    this.active--;
    const next = this.waiting.shift();
    if (next) next();
    else if (this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Resolves when a slot is free (without taking it). */
  async whenFree(): Promise<void> {
    if (this.active < this.max) return;
    await this.acquire();
    this.release();
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
