import { Headers, subjects } from '@fleet/contracts';
import { deadLetterPartOf, replayPlan, streamOfSubject } from './dead-letters';
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

  it('refuses what a replay cannot fix or must not reach', () => {
    // version-vector's refused change: on the push subject, but from the log itself
    const refused = headers({ [Headers.OriginalSubject]: s.push('host-1'), [Headers.OriginalStream]: 'change-log' });
    expect(replayPlan(s, refused, null)).toMatchObject({ ok: false, why: expect.stringContaining('already holds') });
    expect(replayPlan(s, headers({}), null)).toMatchObject({ ok: false, why: expect.stringContaining(Headers.OriginalSubject) });
    expect(replayPlan(s, headers({ [Headers.OriginalSubject]: s.deadLetter('T1_PUSH') }), null)).toMatchObject({ ok: false, why: expect.stringContaining('not one of') });
    expect(replayPlan(s, headers({ [Headers.OriginalSubject]: s.push('host-1'), [Headers.OriginalStream]: s.streams.log }), null)).toMatchObject({ ok: false, why: expect.stringContaining('does not store') });
  });
});
