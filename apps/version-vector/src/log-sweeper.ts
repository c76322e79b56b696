import { Inject, Injectable, Logger } from '@nestjs/common';
import type { BeforeApplicationShutdown, OnApplicationBootstrap } from '@nestjs/common';
import { ClassifyProcessor } from './classify.processor';
import type { VersionVectorConfig } from './config';
import { VERSION_VECTOR_CONFIG } from './tokens';

/**
 * Runs the log sweep (`ClassifyProcessor.sweep`): every `sweepInterval` and right after each batch of
 * appended events (`kick`), one at a time in this process (a kick during a sweep makes one more run
 * after it). The appended events are low-latency wake-ups; this is what guarantees that every
 * committed change is projected, a change whose event was lost included (docs/conflicts.md).
 */
@Injectable()
export class LogSweeper implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('log-sweep');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    @Inject(ClassifyProcessor) private readonly processor: ClassifyProcessor,
    @Inject(VERSION_VECTOR_CONFIG) private readonly config: VersionVectorConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.schedule();
  }

  /** Before the pool closes (`DataSourceCloser` runs on `onApplicationShutdown`). */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running;
  }

  /** Sweep soon (after events were processed). */
  kick(): void {
    if (this.stopped) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.run();
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), this.config.sweepInterval);
    this.timer.unref();
  }

  private run(): void {
    this.running = (async () => {
      do {
        this.again = false;
        try {
          const r = await this.processor.sweep(this.config.sweepBatch);
          if (r !== undefined && r.applied > 0) this.logger.debug(`applied ${r.applied} logged changes (${r.conflicts} conflicts) before their events; cursor at ${r.cursor}`);
        } catch (e) {
          this.logger.warn(`sweep failed (retried in ${this.config.sweepInterval} ms): ${String(e)}`);
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
      this.schedule();
    });
  }
}
