import { randomBytes } from 'node:crypto';
import { encodeJson, Headers, subjects } from '@fleet/contracts';
import type { DeadLetterItem } from '@fleet/contracts';
import { deadLetterPartOf, replayPlan, SHOW_HEADER_ROOM, shownDeadLetter, streamOfSubject } from './dead-letters';
import { deadLetterMsgId } from './policy';

describe('dead-letter replay rules', () => {
  const s = subjects('t1');
  const headers = (h: Record<string, string>) => (k: string) => h[k];

  it('reads the part from the dead letter id that deadLetterMsgId writes', () => {
    expect(deadLetterPartOf(deadLetterMsgId('T1_PUSH', 42))).toBeNull();
    expect(deadLetterPartOf(deadLetterMsgId('T1_PUSH', 42, 0))).toBe(0);
    expect(deadLetterPartOf(deadLetterMsgId('T1_PUSH', 42, 3))).toBe(3);
    expect(deadLetterPartOf(undefined)).toBeNull();
    expect(deadLetterPartOf('replay:T1_DLQ:7')).toBeNull();
  });

  it('knows which stream stores a subject, and no other namespace', () => {
    expect(streamOfSubject(s, s.push('host-1'))).toBe(s.streams.push);
    expect(streamOfSubject(s, s.appended)).toBe(s.streams.log);
    expect(streamOfSubject(s, s.classified('conflict'))).toBe(s.streams.vv);
    expect(streamOfSubject(s, s.resolved)).toBe(s.streams.conflicts);
    expect(streamOfSubject(s, s.deadLetter('T1_PUSH'))).toBeUndefined();
    expect(streamOfSubject(s, s.criticalApi('begin'))).toBeUndefined();
    expect(streamOfSubject(s, subjects('t2').push('host-1'))).toBeUndefined();
  });

  it('replays a whole message as it was, and a part of a push as a batch of one', () => {
    const h = headers({ [Headers.OriginalSubject]: s.push('host-1'), [Headers.OriginalStream]: s.streams.push });
    expect(replayPlan(s, h, null)).toEqual({ ok: true, subject: s.push('host-1'), stream: s.streams.push });
    expect(replayPlan(s, h, 2)).toEqual({ ok: true, subject: s.push('host-1'), stream: s.streams.push, wrapForAgent: 'host-1' });
    const log = headers({ [Headers.OriginalSubject]: s.appended, [Headers.OriginalStream]: s.streams.log });
    expect(replayPlan(s, log, null)).toMatchObject({ ok: true, subject: s.appended });
    expect(replayPlan(s, log, 0)).toMatchObject({ ok: false, why: expect.stringContaining('only parts of pushed batches') });
  });

  it('refuses a dead letter stored cut short', () => {
    const h = headers({ [Headers.OriginalSubject]: s.push('host-1'), [Headers.OriginalStream]: s.streams.push, [Headers.DeadLetterTruncated]: '1048000 sha256:ab' });
    expect(replayPlan(s, h, null)).toMatchObject({ ok: false, why: expect.stringContaining('cut short (the original and its hash: 1048000 sha256:ab)') });
  });

  it('refuses what a replay cannot fix or must not reach', () => {
    // version-vector's refused change: on the push subject, but from the log itself
    const refused = headers({ [Headers.OriginalSubject]: s.push('host-1'), [Headers.OriginalStream]: 'change-log' });
    expect(replayPlan(s, refused, null)).toMatchObject({ ok: false, why: expect.stringContaining('already holds') });
    expect(replayPlan(s, headers({}), null)).toMatchObject({ ok: false, why: expect.stringContaining(Headers.OriginalSubject) });
    expect(replayPlan(s, headers({ [Headers.OriginalSubject]: s.deadLetter('T1_PUSH') }), null)).toMatchObject({ ok: false, why: expect.stringContaining('not one of') });
    expect(replayPlan(s, headers({ [Headers.OriginalSubject]: s.push('host-1'), [Headers.OriginalStream]: s.streams.log }), null)).toMatchObject({ ok: false, why: expect.stringContaining('does not store') });
  });
});

describe('showing a dead letter under max_payload', () => {
  const item: DeadLetterItem = {
    seq: 7,
    subject: 'ns.dlq.SYNC_PUSH',
    storedAt: '2026-11-28T14:05:01.112Z',
    code: 'FLEET_MSG_001',
    reason: 'after 3 deliveries',
    originalSubject: 'ns.sync.push.host-1',
    originalStream: 'ns_PUSH',
    originalSequence: 12,
    deliveryCount: 3,
    part: null,
    headers: { 'Fleet-Reject-Code': ['FLEET_MSG_001'] },
    bytes: 0,
  };
  const size = (r: unknown) => encodeJson(r).byteLength;
  const budget = 64 * 1024 - SHOW_HEADER_ROOM;

  it('shows a small body whole (JSON as JSON, anything else as base64), without a truncation flag', () => {
    const json = shownDeadLetter(item, encodeJson({ a: 1 }), budget);
    expect(json).toEqual({ protocol: 1, item, payload: { a: 1 } });
    const raw = shownDeadLetter(item, new Uint8Array([0xff, 0, 1]), budget);
    expect(raw).toEqual({ protocol: 1, item, rawBase64: Buffer.from([0xff, 0, 1]).toString('base64') });
  });

  it('cuts a JSON body near max_payload (escaping makes it bigger) to a text prefix that fits, and says so', () => {
    // Quotes, newlines and non-ASCII text: JSON-escaped as a string it grows well past its bytes.
    const text = JSON.stringify({ changes: Array.from({ length: 3000 }, (_, i) => ({ key: `k${i}`, note: 'line "one"\nzwei\tdrei é 😀' })) });
    const data = Buffer.from(text, 'utf8');
    expect(data.byteLength).toBeGreaterThan(budget);
    const r = shownDeadLetter(item, data, budget);
    expect(size(r)).toBeLessThanOrEqual(budget);
    expect(r.payload).toBeUndefined();
    expect(r.truncated).toEqual({ bytes: data.byteLength, shownBytes: Buffer.byteLength(r.payloadText ?? '', 'utf8') });
    expect(text.startsWith(r.payloadText ?? 'x')).toBe(true);
    expect(r.truncated!.shownBytes).toBeGreaterThan(budget / 4);
  });

  it('cuts a binary body to a base64 prefix that fits', () => {
    const data = new Uint8Array(randomBytes(budget));
    const r = shownDeadLetter(item, data, budget);
    expect(size(r)).toBeLessThanOrEqual(budget);
    const shown = Buffer.from(r.rawBase64 ?? '', 'base64');
    expect(r.truncated).toEqual({ bytes: data.byteLength, shownBytes: shown.byteLength });
    expect(Buffer.compare(shown, Buffer.from(data.subarray(0, shown.byteLength)))).toBe(0);
    expect(shown.byteLength).toBeGreaterThan(budget * 0.7);
  });
});
