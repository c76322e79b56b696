import { Logger } from '@nestjs/common';
import type { BeforeApplicationShutdown } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { encodeJson } from '@fleet/contracts';
import type { JetStreamServer } from '@fleet/messaging';
import type { ReadinessCheck, SyncMetrics } from '@fleet/observability';
import { parseLsn, SERVER_RECORDS_TABLE, ServerRecordCapture, slotLagBytes, type RejectedRow, type ServerWriter } from '@fleet/server-store';
import type { ConflictResolverConfig } from './config';
import type { ConflictResolverPublisher } from './publisher';

const LAG_EVERY_MS = 15_000;

/**
 * Server-side SQL writes (docs/server-writes.md): when `FLEET_CONFLICTRESOLVER_CAPTURE_SLOT` is set, the
 * capture streams `server_records` from the slot and appends each write through this replica's
 * ServerWriter, announces the changes like operator writes, and dead-letters rows that cannot be
 * changes (`<ns>.dlq.capture-<slot>`, with the reason and the row). Started once the transport
 * listens (`bootstrap.ts`), stopped before the connections close.
 */
export class CaptureRunner implements BeforeApplicationShutdown {
  readonly capture: ServerRecordCapture | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  private readonly sampleLag: (() => Promise<void>) | undefined;

  constructor(ds: DataSource, writer: ServerWriter, publisher: ConflictResolverPublisher, transport: JetStreamServer, metrics: SyncMetrics, config: ConflictResolverConfig) {
    const slot = config.captureSlot;
    if (slot === undefined) return;
    const logger = new Logger('capture');
    const stream = `capture-${slot}`;
    // Sampled whatever the capture's state: a capture that is failing, or stands by while no replica streams, shows as a rising lag.
    this.sampleLag = async () => {
      const bytes = await slotLagBytes(ds, slot).catch(() => undefined);
      if (bytes !== undefined) metrics.captureLag.record(bytes);
    };
    this.capture = new ServerRecordCapture(ds, {
      databaseUrl: config.databaseUrl,
      slot,
      writer,
      partRecords: config.capturePartRecords,
      retryMs: config.captureRetry,
      announce: (changes) => publisher.appended(changes),
      reject: async (r: RejectedRow) => {
        logger.warn(`${SERVER_RECORDS_TABLE} row ${JSON.stringify([r.row.scope, r.row.collection, r.row.key])} not captured: ${r.error.code}: ${r.error.message}`);
        metrics.deadLettered.add(1, { code: r.error.code, source: stream });
        await transport.bus.deadLetter(encodeJson(r.row), undefined, r.error.code, r.error.message, {
          subject: `${SERVER_RECORDS_TABLE}@${r.commitLsn}`,
          stream,
          // The commit's LSN and the record's place in it: the same row streamed again is stored once.
          streamSequence: Number(parseLsn(r.commitLsn)),
          deliveryCount: 1,
        }, r.index);
      },
      logger,
      onRows: (outcome, n) => {
        if (n > 0) metrics.captureRows.add(n, { outcome });
      },
    });
  }

  start(): void {
    this.capture?.start();
    if (this.sampleLag !== undefined) {
      const sample = this.sampleLag;
      this.lagTimer = setInterval(() => void sample(), LAG_EVERY_MS);
      this.lagTimer.unref();
    }
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.lagTimer !== undefined) clearInterval(this.lagTimer);
    await this.capture?.stop();
  }
}

/**
 * Ready unless the capture is configured and cannot work (FLEET_CAPTURE_001: wal_level, the slot);
 * standing by is ready, and so is a transient failure (PostgreSQL restarting), which the postgres check reports.
 */
export function captureReadinessCheck(runner: () => CaptureRunner | undefined): ReadinessCheck {
  return {
    name: 'capture',
    check: async () => {
      const c = runner()?.capture;
      if (c !== undefined && c.state === 'failed' && c.errorCode === 'FLEET_CAPTURE_001') throw new Error(c.error ?? 'capture failing');
    },
  };
}
