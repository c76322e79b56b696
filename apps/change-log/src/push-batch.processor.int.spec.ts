import type { DataSource } from 'typeorm';
import type { Change } from '@fleet/sync-core';
import type { FleetError } from '@fleet/errors';
import { decodeAppendedEvent, decodeChange, encodeJson, subjects } from '@fleet/contracts';
import { openServerDataSource, PostgresChangeLog } from '@fleet/server-store';
import type { ChangeLog } from '@fleet/server-store';
import { createTestDatabase, testChange, testUuidV7 } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { appendedMsgId, PushBatchProcessor } from './push-batch.processor';
import type { EventPublisher, PushMessage } from './push-batch.processor';

// The project-level testTimeout of jest.config.js is not applied by jest 30 here (5 s default seen): set it per file.
jest.setTimeout(60_000);

const s = subjects('cltest');
let db: TestDatabase;
let ds: DataSource;

beforeAll(async () => {
  db = await createTestDatabase('fleet_changelog_app');
  ds = await openServerDataSource({ url: db.url });
});
afterAll(async () => {
  await ds?.destroy();
  await db?.drop();
});
beforeEach(async () => {
  await ds.query('truncate change_log, origin_progress');
});

class RecordingPublisher implements EventPublisher {
  readonly published: Array<{ subject: string; payload: Uint8Array; msgId: string }> = [];
  async publish(subject: string, payload: Uint8Array, opts: { msgId: string }): Promise<unknown> {
    this.published.push({ subject, payload, msgId: opts.msgId });
    return { duplicate: false };
  }
}

function message(agentId: string, body: unknown, deadLetters: Array<{ payload: unknown; error: FleetError }>): PushMessage {
  return {
    subject: s.push(agentId),
    data: typeof body === 'string' ? new TextEncoder().encode(body) : encodeJson(body),
    deadLetter: async (payload, error) => {
      deadLetters.push({ payload: JSON.parse(typeof payload === 'string' ? payload : new TextDecoder().decode(payload)), error });
    },
  };
}

const batch = (agentId: string, changes: unknown[]) => ({ protocol: 1, batchId: testUuidV7(), agentId, changes });

async function rows(): Promise<number> {
  const [r] = (await ds.query('select count(*)::int as n from change_log')) as Array<{ n: number }>;
  return r?.n ?? -1;
}

describe('PushBatchProcessor (real PostgreSQL, recorded publisher)', () => {
  it('test changes are valid wire changes', () => {
    const c = testChange('agent-1', 1);
    expect(decodeChange(JSON.parse(JSON.stringify(c)))).toEqual(c);
  });

  it('dead-letters a malformed and a forged change with their reasons, appends the rest, announces them', async () => {
    const pub = new RecordingPublisher();
    const p = new PushBatchProcessor(new PostgresChangeLog(ds), pub, s);
    const good1 = testChange('agent-1', 1);
    const good2 = testChange('agent-1', 2);
    const malformed = { ...testChange('agent-1', 3), vv: 'not a vector' };
    const forged = testChange('agent-2', 1, { scope: 'host.agent-1' });
    const dl: Array<{ payload: unknown; error: FleetError }> = [];
    const out = await p.process(message('agent-1', batch('agent-1', [good1, malformed, forged, good2]), dl));

    expect(out).toMatchObject({ agentId: 'agent-1', appended: 2, duplicates: 0, deadLettered: 2, events: 1 });
    expect(dl.map((d) => d.error.code)).toEqual(['FLEET_DECODE_002', 'FLEET_AUTH_001']);
    expect(dl[0]?.error.message).toContain('changes[1].vv');
    expect(dl[0]?.payload).toEqual(malformed);
    expect(dl[1]?.payload).toEqual(forged);
    expect(await rows()).toBe(2);

    expect(pub.published).toHaveLength(1);
    const ev = decodeAppendedEvent(pub.published[0]!.payload);
    expect(pub.published[0]!.subject).toBe(s.appended);
    expect(ev.changes.map((c) => [c.seq, c.changeId])).toEqual([[1, good1.changeId], [2, good2.changeId]]);
    expect(pub.published[0]!.msgId).toBe(appendedMsgId(ev.changes));
  });

  it('groups in flight append in the order they were handed over: an agent\'s later push is never logged before its earlier one', async () => {
    const real = new PostgresChangeLog(ds);
    // The first group's append is slow to reach the database (a pool wait, a slow round trip): left to
    // race, the second group would take the append lock first.
    let calls = 0;
    const slowFirst: ChangeLog = {
      appendBatch: async (changes) => {
        if (calls++ === 0) await new Promise((r) => setTimeout(r, 300));
        return real.appendBatch(changes);
      },
      readSince: (cursor, options) => real.readSince(cursor, options),
    };
    const p = new PushBatchProcessor(slowFirst, new RecordingPublisher(), s);
    const ref = { scope: 'host.agent-9', collection: 'inventory', key: 'k' };
    const first = [1, 2].map((n) => testChange('agent-9', n, { ...ref, vv: { 'agent-9': n } }));
    const second = [3, 4].map((n) => testChange('agent-9', n, { ...ref, vv: { 'agent-9': n } }));
    await Promise.all([p.processMany([message('agent-9', batch('agent-9', first), [])]), p.processMany([message('agent-9', batch('agent-9', second), [])])]);
    const logged = (await ds.query(`select origin_seq::int as n from change_log where origin = 'agent-9' order by seq`)) as Array<{ n: number }>;
    expect(logged.map((r) => r.n)).toEqual([1, 2, 3, 4]);
  });

  it('the same push delivered twice: one row each, and the second delivery re-announces with the same msg id', async () => {
    const pub = new RecordingPublisher();
    const p = new PushBatchProcessor(new PostgresChangeLog(ds), pub, s);
    const body = batch('agent-1', [testChange('agent-1', 1), testChange('agent-1', 2)]);
    const first = await p.process(message('agent-1', body, []));
    const second = await p.process(message('agent-1', body, []));
    expect(first).toMatchObject({ appended: 2, duplicates: 0 });
    expect(second).toMatchObject({ appended: 0, duplicates: 2 });
    expect(await rows()).toBe(2);
    expect(pub.published.map((x) => x.msgId)).toEqual([pub.published[0]!.msgId, pub.published[0]!.msgId]);
    expect(decodeAppendedEvent(pub.published[1]!.payload)).toEqual(decodeAppendedEvent(pub.published[0]!.payload));
  });

  it('an identity conflict is dead-lettered with FLEET_LOG_001', async () => {
    const p = new PushBatchProcessor(new PostgresChangeLog(ds), new RecordingPublisher(), s);
    const c: Change = testChange('agent-1', 1);
    await p.process(message('agent-1', batch('agent-1', [c]), []));
    const dl: Array<{ payload: unknown; error: FleetError }> = [];
    const reused = testChange('agent-1', 1); // same (origin, originSeq), new id
    const out = await p.process(message('agent-1', batch('agent-1', [reused]), dl));
    expect(out).toMatchObject({ appended: 0, deadLettered: 1, events: 0 });
    expect(dl.map((d) => d.error.code)).toEqual(['FLEET_LOG_001']);
  });

  it('rejects the whole message (non-retryable) when the envelope is undecodable or names another agent', async () => {
    const p = new PushBatchProcessor(new PostgresChangeLog(ds), new RecordingPublisher(), s);
    await expect(p.process(message('agent-1', '{not json', []))).rejects.toMatchObject({ code: 'FLEET_DECODE_001', retryable: false });
    await expect(p.process(message('agent-1', { protocol: 1, changes: [] }, []))).rejects.toMatchObject({ code: 'FLEET_DECODE_002' });
    await expect(p.process(message('agent-1', batch('agent-2', [testChange('agent-2', 1)]), []))).rejects.toMatchObject({ code: 'FLEET_AUTH_001' });
    expect(await rows()).toBe(0);
  });
});
