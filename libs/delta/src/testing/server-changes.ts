/**
 * TEST-ONLY: server-origin changes for the delta calculator's tests, numbered from one counter (origin
 * sequence, HLC and vector entry move together), and the change log's append in batches of 500.
 */
import type { PostgresChangeLog } from '@fleet/server-store/src/postgres-change-log';
import { testChange } from '@fleet/server-store/src/testing';
import { encodeHlc } from '@fleet/sync-core';
import type { Change, Fields } from '@fleet/sync-core';

export class ServerChanges {
  /** The last sequence handed out. */
  seq = 0;

  /** The next server change of `fleet/<collection>/<key>`; `over` replaces any field (scope, vv, ...). */
  change(collection: string, key: string, fields: Fields, over: Partial<Change> = {}): Change {
    this.seq++;
    return testChange('server', this.seq, {
      scope: 'fleet',
      collection,
      key,
      fields,
      hlc: encodeHlc({ wallMs: 1_767_225_600_000 + this.seq, counter: 0, node: 'server' }),
      vv: { server: this.seq },
      ...over,
    });
  }
}

export async function appendInBatches(log: PostgresChangeLog, changes: readonly Change[]): Promise<void> {
  for (let i = 0; i < changes.length; i += 500) await log.appendBatch(changes.slice(i, i + 500));
}
