import type { INestApplication } from '@nestjs/common';
import { jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamManager } from '@nats-io/jetstream';
import { decodeAppendedEvent, encodeJson, Headers, MAX_PUSH_BATCH_BYTES, NATS_MAX_PAYLOAD_BYTES } from '@fleet/contracts';
import { Messaging } from '@fleet/messaging';
import { deleteNamespaceStreams, eventually, readStream, SHARED_NATS, testNamespace } from '@fleet/messaging/src/test-support';
import { createTestDatabase, testChange, testUuidV7 } from '@fleet/server-store/src/testing';
import type { TestDatabase } from '@fleet/server-store/src/testing';
import { Client } from 'pg';
import { loadConfig } from '@fleet/config';
import { createChangeLogApp } from './bootstrap';
import { changeLogConfig } from './config';

// The project-level testTimeout of jest.config.js is not applied by jest 30 here (5 s default seen): set it per file.
jest.setTimeout(60_000);

const s = testNamespace('cl');
let db: TestDatabase;
let app: INestApplication;
let agent: Messaging;
let jsm: JetStreamManager;
let pg: Client;

beforeAll(async () => {
  db = await createTestDatabase('fleet_changelog_nats');
  const config = loadConfig(changeLogConfig, {
    FLEET_CHANGELOG_DATABASE_URL: db.url,
    FLEET_CHANGELOG_NATS_URL: SHARED_NATS,
    FLEET_CHANGELOG_NAMESPACE: s.ns,
    FLEET_CHANGELOG_HTTP_PORT: '0',
    FLEET_CHANGELOG_LOG_LEVEL: 'warn',
  });
  app = await createChangeLogApp(config);
  agent = await Messaging.connect({ servers: SHARED_NATS, name: 'test-agent' }, s);
  jsm = await agent.jsm();
  pg = new Client({ connectionString: db.url });
  await pg.connect();
});

afterAll(async () => {
  await app?.close();
  if (jsm) await deleteNamespaceStreams(await jetstreamManager(agent.nc), s);
  await agent?.drain();
  await pg?.end();
  await db?.drop();
});

const count = async (sql: string, params: unknown[] = []) => ((await pg.query(sql, params)).rows[0] as { n: number }).n;

describe('change-log service over NATS JetStream and PostgreSQL', () => {
  it('answers /health/live and /health/ready', async () => {
    const url = await app.getUrl();
    const base = url.replace('[::1]', '127.0.0.1');
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    const ready = await fetch(`${base}/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      status: 'ready',
      draining: false,
      checks: [expect.objectContaining({ name: 'postgres', status: 'up' }), expect.objectContaining({ name: 'nats', status: 'up' })],
    });
  });

  it('a batch with one malformed and one forged change: those two dead-lettered with reasons, the others appended and announced', async () => {
    const good1 = testChange('agent-a', 1);
    const good2 = testChange('agent-a', 2);
    const malformed = { ...testChange('agent-a', 3), hash: 'nope' };
    const forged = testChange('agent-b', 1, { scope: 'host.agent-a' });
    const batch = { protocol: 1, batchId: testUuidV7(), agentId: 'agent-a', changes: [good1, malformed, forged, good2] };
    await agent.publish(s.push('agent-a'), encodeJson(batch), { msgId: batch.batchId });

    await eventually(async () => (await count(`select count(*)::int as n from change_log where origin = 'agent-a'`)) === 2, 15_000, 'appends');
    const dead = await eventually(async () => {
      const msgs = await readStream(jsm, s.streams.deadLetter).catch(() => []);
      return msgs.length >= 2 ? msgs : undefined;
    }, 15_000, 'dead letters');
    expect(dead.map((m) => m.header.get(Headers.RejectCode))).toEqual(['FLEET_DECODE_002', 'FLEET_AUTH_001']);
    expect(dead[0]!.header.get(Headers.RejectReason)).toContain('changes[1].hash');
    expect(dead[1]!.header.get(Headers.RejectReason)).toContain('agent-b');
    expect(JSON.parse(new TextDecoder().decode(dead[0]!.data))).toEqual(malformed);

    const events = await eventually(async () => {
      const msgs = await readStream(jsm, s.streams.log).catch(() => []);
      return msgs.length >= 1 ? msgs : undefined;
    }, 15_000, 'appended event');
    const ev = decodeAppendedEvent(events[0]!.data);
    expect(ev.changes.map((c) => c.changeId)).toEqual([good1.changeId, good2.changeId]);
    expect(events[0]!.subject).toBe(s.appended);
  });

  it('the same push delivered twice (beyond JetStream dedupe: distinct msg ids) -> one row per change', async () => {
    const changes = [testChange('agent-c', 1), testChange('agent-c', 2), testChange('agent-c', 3)];
    const batch = { protocol: 1, batchId: testUuidV7(), agentId: 'agent-c', changes };
    // Different Nats-Msg-Id each time, as after the dedupe window (or a lost PubAck days later).
    await agent.publish(s.push('agent-c'), encodeJson(batch), { msgId: `${batch.batchId}-1` });
    await agent.publish(s.push('agent-c'), encodeJson(batch), { msgId: `${batch.batchId}-2` });
    const consumerName = `${s.ns}-change-log`;
    await eventually(async () => {
      const info = await jsm.consumers.info(s.streams.push, consumerName);
      return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq >= 3;
    }, 15_000, 'both deliveries handled');
    expect(await count(`select count(*)::int as n from change_log where origin = 'agent-c'`)).toBe(3);
    expect(await count(`select changes_count::int as n from origin_progress where origin = 'agent-c'`)).toBe(3);
    // Each delivery was announced (the second as duplicates with the same seqs): consumers are idempotent by seq.
    const events = await eventually(async () => {
      const msgs = (await readStream(jsm, s.streams.log)).map((m) => decodeAppendedEvent(m.data)).filter((e) => e.changes[0]?.origin === 'agent-c');
      return msgs.length >= 1 ? msgs : undefined;
    }, 15_000, 'agent-c events');
    for (const e of events) expect(e.changes.map((c) => c.changeId)).toEqual(changes.map((c) => c.changeId));
  });

  it('an oversized push (over MAX_PUSH_BATCH_BYTES, under NATS max_payload) beside a valid one: the big one dead-lettered whole with FLEET_DECODE_004, the valid one appended', async () => {
    // Every change within its own limits (4 fields of 50,000 bytes each: under the 64 KiB field and
    // 256 KiB change caps), but five of them make a push of ~1,000,000 bytes: over the 960 KiB push cap.
    const blob = (c: string) => c.repeat(50_000);
    const bigChanges = Array.from({ length: 5 }, (_, i) => testChange('agent-o', i + 1, { fields: { a: blob('a'), b: blob('b'), c: blob('c'), d: blob('d') } }));
    const big = { protocol: 1, batchId: testUuidV7(), agentId: 'agent-o', changes: bigChanges };
    const bigBytes = encodeJson(big);
    expect(bigBytes.byteLength).toBeGreaterThan(MAX_PUSH_BATCH_BYTES);
    expect(bigBytes.byteLength).toBeLessThan(NATS_MAX_PAYLOAD_BYTES - 16 * 1024); // the dead letter (payload + headers) fits too
    const valid = { protocol: 1, batchId: testUuidV7(), agentId: 'agent-v', changes: [testChange('agent-v', 1), testChange('agent-v', 2)] };
    const bigAck = await agent.publish(s.push('agent-o'), bigBytes, { msgId: big.batchId });
    await agent.publish(s.push('agent-v'), encodeJson(valid), { msgId: valid.batchId });

    await eventually(async () => (await count(`select count(*)::int as n from change_log where origin = 'agent-v'`)) === 2, 15_000, 'the valid push appended');
    const dl = await eventually(async () => {
      const msgs = await readStream(jsm, s.streams.deadLetter).catch(() => []);
      return msgs.find((m) => m.header.get(Headers.OriginalSequence) === String(bigAck.seq));
    }, 15_000, 'the oversized push dead-lettered');
    expect(dl.header.get(Headers.RejectCode)).toBe('FLEET_DECODE_004');
    expect(dl.header.get(Headers.RejectReason)).toContain(`payload is ${bigBytes.byteLength} bytes, the limit is ${MAX_PUSH_BATCH_BYTES}`);
    expect(dl.header.get(Headers.OriginalSubject)).toBe(s.push('agent-o'));
    expect(dl.data.byteLength).toBe(bigBytes.byteLength); // the whole message, not truncated
    const consumerName = `${s.ns}-change-log`;
    await eventually(async () => {
      const info = await jsm.consumers.info(s.streams.push, consumerName);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, 15_000, 'both settled (the big one termed)');
    expect(await count(`select count(*)::int as n from change_log where origin = 'agent-o'`)).toBe(0);
    const fromBig = (await readStream(jsm, s.streams.deadLetter)).filter((m) => m.header.get(Headers.OriginalSequence) === String(bigAck.seq));
    expect(fromBig).toHaveLength(1); // dead-lettered whole, once (no per-change parts)
  });
});
