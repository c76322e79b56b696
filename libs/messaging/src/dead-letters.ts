/**
 * The operator's side of the dead-letter stream (`fleetctl replay`): list what is there, show one, and
 * re-publish chosen ones to their original subject once the cause is fixed, or discard them.
 *
 * Replay rules (each dead letter on its own):
 * - the target is its `Fleet-Original-Subject`, and only a subject of one of the namespace's own
 *   streams (push, log, vv, conflicts), the stream its `Fleet-Original-Stream` names: never a
 *   dead-letter or request subject, never another namespace;
 * - a whole message is re-published as it was (body and original headers, without the `Fleet-Reject-*`,
 *   `Fleet-Original-*` and `Nats-*` ones); one change refused out of a pushed batch (a part, see
 *   `wrapMessage`) is re-published as a batch of that one change, since the push subject carries batches;
 * - a change a projection refused (source `change-log`, FLEET_CHANGE_002) is not replayable: the log
 *   already holds it, a replay would only be logged as a duplicate;
 * - the dead letter is deleted only after the re-publish was acknowledged by its stream (PubAck). The
 *   publish carries `Nats-Msg-Id: replay:<dlq stream>:<seq>`, so a replay retried after a lost answer
 *   is stored once within the dedupe window; beyond it, the consumers' own idempotence (the change log
 *   dedupes by change id) makes a second copy harmless;
 * - the copy carries `Fleet-Replayed-From: <dlq stream>:<seq>`; when it fails again, its new dead letter
 *   keeps that header, so the history is visible.
 */
import { randomUUID } from 'node:crypto';
import type { MsgRequest, StoredMsg } from '@nats-io/jetstream';
import { decodeJson, encodeJson, Headers, MAX_DEAD_LETTER_BYTES, PROTOCOL_VERSION } from '@fleet/contracts';
import type { DeadLetterActionResult, DeadLetterItem, DeadLettersListResponse, DeadLetterShowResponse, DeadLetterSummary, Subjects } from '@fleet/contracts';
import { FleetError, isFleetError } from '@fleet/errors';
import type { Messaging } from './messaging';

/** The part number in a dead letter's `Nats-Msg-Id` (`dlq:<stream>:<seq>:<part>`, see `deadLetterMsgId`), or null for a whole message. */
export function deadLetterPartOf(msgId: string | undefined): number | null {
  const m = /^dlq:[^:]+:\d+:(\d+)$/.exec(msgId ?? '');
  return m === null ? null : Number(m[1]);
}

/** The namespace's stream that stores `subject`, or undefined when none of its streams does. */
export function streamOfSubject(s: Subjects, subject: string): string | undefined {
  if (s.agentOfPush(subject) !== undefined) return s.streams.push;
  if (subject === s.appended) return s.streams.log;
  if (subject === s.classified('applied') || subject === s.classified('stale') || subject === s.classified('conflict')) return s.streams.vv;
  if (subject === s.resolved) return s.streams.conflicts;
  return undefined;
}

export type ReplayPlan =
  | { readonly ok: true; readonly subject: string; readonly stream: string; /** Set for a part: the agent whose batch of one it becomes. */ readonly wrapForAgent?: string }
  | { readonly ok: false; readonly why: string };

/** Where a dead letter would be re-published, or why it cannot be. Pure. */
export function replayPlan(s: Subjects, header: (k: string) => string | undefined, part: number | null): ReplayPlan {
  const subject = header(Headers.OriginalSubject);
  const from = header(Headers.OriginalStream);
  if (subject === undefined) return { ok: false, why: `no ${Headers.OriginalSubject} header: not written by the fleet's dead-lettering` };
  const truncated = header(Headers.DeadLetterTruncated);
  if (truncated !== undefined) return { ok: false, why: `stored cut short (the original and its hash: ${truncated}), as it did not fit the server's max_payload with the dead letter's headers: it cannot be re-published` };
  const stream = streamOfSubject(s, subject);
  if (stream === undefined) {
    return {
      ok: false,
      why:
        from === 'change-log'
          ? 'a change the log already holds, refused by a projection: a replay would only be logged as a duplicate; fix its origin'
          : `original subject ${subject} is not one of the namespace's streams`,
    };
  }
  if (from !== undefined && from !== stream) {
    return {
      ok: false,
      why: from === 'change-log' ? 'a change the log already holds, refused by a projection: a replay would only be logged as a duplicate; fix its origin' : `original stream ${from} does not store ${subject} (${stream} does)`,
    };
  }
  if (part === null) return { ok: true, subject, stream };
  const agent = s.agentOfPush(subject);
  if (agent === undefined) return { ok: false, why: `a part of a message on ${subject}: only parts of pushed batches can be re-published (as a batch of one)` };
  return { ok: true, subject, stream, wrapForAgent: agent };
}

/** Headers a replay does not copy: our dead-letter headers and JetStream's instructions of the first publish. */
function replayedHeaders(msg: StoredMsg, dlqStream: string): Record<string, string> {
  const drop = new Set(
    [Headers.RejectCode, Headers.RejectReason, Headers.OriginalSubject, Headers.OriginalStream, Headers.OriginalSequence, Headers.DeliveryCount, Headers.ReplayedFrom].map((h) =>
      h.toLowerCase(),
    ),
  );
  const out: Record<string, string> = {};
  for (const [k, values] of msg.header ?? []) {
    const lk = k.toLowerCase();
    if (drop.has(lk) || lk.startsWith('nats-')) continue;
    const v = values[0];
    if (v !== undefined) out[k] = v;
  }
  out[Headers.ReplayedFrom] = `${dlqStream}:${msg.seq}`;
  return out;
}

function errorBody(e: unknown): { code: string; message: string; retryable: boolean } {
  const f = isFleetError(e) ? e : new FleetError('FLEET_INTERNAL_001', e instanceof Error ? e.message : String(e));
  return { code: f.code, message: f.message.slice(0, 4000), retryable: f.retryable };
}

function positive(v: string | undefined): number | null {
  return v !== undefined && /^[1-9]\d{0,15}$/.test(v) ? Number(v) : null;
}

/** Room left under max_payload for the reply's headers (trace context) when a dead letter is shown. */
export const SHOW_HEADER_ROOM = 4096;

/**
 * The `show` reply of a dead letter whose body is `data`, at most `budget` bytes encoded: `payload`
 * (JSON) or `rawBase64` (anything else) when the whole body fits; else `truncated` with the body's
 * first bytes, as text in `payloadText` when it is JSON (cut on a character boundary) or in
 * `rawBase64`. A dead letter can be as big as max_payload itself (a push that was refused), and base64
 * (4/3) or JSON escaping make it bigger, so the whole body often cannot be the reply. Pure.
 */
export function shownDeadLetter(item: DeadLetterItem, data: Uint8Array, budget: number): DeadLetterShowResponse {
  const base = { protocol: PROTOCOL_VERSION, item } as const;
  const size = (r: DeadLetterShowResponse): number => encodeJson(r).byteLength;
  let json = true;
  let payload: unknown;
  try {
    payload = decodeJson(data, MAX_DEAD_LETTER_BYTES);
  } catch {
    json = false;
  }
  const whole: DeadLetterShowResponse = json ? { ...base, payload } : { ...base, rawBase64: Buffer.from(data).toString('base64') };
  if (size(whole) <= budget) return whole;
  const cut = (n: number): DeadLetterShowResponse => {
    if (json) {
      // Back to the start of a UTF-8 character, so the prefix decodes as text.
      let end = Math.min(n, data.byteLength);
      while (end > 0 && end < data.byteLength && ((data[end] as number) & 0xc0) === 0x80) end--;
      return { ...base, payloadText: Buffer.from(data.subarray(0, end)).toString('utf8'), truncated: { bytes: data.byteLength, shownBytes: end } };
    }
    const end = Math.min(n - (n % 3), data.byteLength);
    return { ...base, rawBase64: Buffer.from(data.subarray(0, end)).toString('base64'), truncated: { bytes: data.byteLength, shownBytes: end } };
  };
  // Start from the room the rest leaves, then shrink by what escaping (or base64) added until it fits.
  const overhead = size(cut(0));
  let n = Math.max(0, json ? budget - overhead : Math.floor(((budget - overhead) * 3) / 4));
  for (;;) {
    const r = cut(n);
    const over = size(r) - budget;
    if (over <= 0 || n === 0) return r;
    n = Math.max(0, n - Math.max(over, 16));
  }
}

/** The dead-letter stream of one namespace, for operators. Every method reads or writes the stream only. */
export class DeadLetterDesk {
  private readonly stream: string;

  constructor(
    private readonly bus: () => Messaging,
    private readonly s: Subjects,
    private readonly newId: () => string = randomUUID,
  ) {
    this.stream = s.streams.deadLetter;
  }

  async summary(): Promise<DeadLetterSummary> {
    const jsm = await this.bus().jsm();
    try {
      const info = await jsm.streams.info(this.stream, { subjects_filter: this.s.deadLetterAll });
      const st = info.state;
      return { messages: st.messages, bytes: st.bytes, oldestAt: st.messages > 0 ? st.first_ts : null, bySubject: { ...(st.subjects ?? {}) } };
    } catch (e) {
      throw new FleetError('FLEET_INFRA_001', `dead-letter stream ${this.stream}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  /** Dead letters with a sequence above `after`, oldest first. */
  async list(q: { after?: number; limit?: number }): Promise<DeadLettersListResponse> {
    const limit = q.limit ?? 20;
    const total = (await this.summary()).messages;
    const items: DeadLetterItem[] = [];
    let cursor = q.after ?? 0;
    let hasMore = false;
    for (;;) {
      const m = await this.get({ seq: cursor + 1, next_by_subj: this.s.deadLetterAll });
      if (m === null) break;
      if (items.length === limit) {
        hasMore = true;
        break;
      }
      items.push(this.describe(m));
      cursor = m.seq;
    }
    return { protocol: PROTOCOL_VERSION, items, nextCursor: cursor, hasMore, total };
  }

  /** One dead letter and its body, cut to fit under the server's max_payload (see `shownDeadLetter`). */
  async show(seq: number): Promise<DeadLetterShowResponse> {
    const m = await this.mustGet(seq);
    const maxPayload = this.bus().nc.info?.max_payload ?? 1024 * 1024;
    return shownDeadLetter(this.describe(m), m.data, maxPayload - SHOW_HEADER_ROOM);
  }

  /** Re-publishes each dead letter (see the rules at the top), then deletes it. One result per sequence, in order. */
  async replay(seqs: readonly number[]): Promise<DeadLetterActionResult[]> {
    const out: DeadLetterActionResult[] = [];
    for (const seq of seqs) {
      try {
        out.push(await this.replayOne(seq));
      } catch (e) {
        out.push({ seq, outcome: 'failed', error: errorBody(e) });
      }
    }
    return out;
  }

  async discard(seqs: readonly number[]): Promise<DeadLetterActionResult[]> {
    const out: DeadLetterActionResult[] = [];
    for (const seq of seqs) {
      try {
        await this.mustGet(seq);
        await this.remove(seq);
        out.push({ seq, outcome: 'discarded' });
      } catch (e) {
        out.push({ seq, outcome: 'failed', error: errorBody(e) });
      }
    }
    return out;
  }

  private async replayOne(seq: number): Promise<DeadLetterActionResult> {
    const m = await this.mustGet(seq);
    const part = deadLetterPartOf(m.header?.get(Headers.MsgId));
    const plan = replayPlan(this.s, (k) => header(m, k), part);
    if (!plan.ok) throw new FleetError('FLEET_OPS_003', `dead letter ${seq}: ${plan.why}`);
    let body: Uint8Array = m.data;
    if (plan.wrapForAgent !== undefined) {
      let change: unknown;
      try {
        change = decodeJson(m.data, MAX_DEAD_LETTER_BYTES);
      } catch {
        throw new FleetError('FLEET_OPS_003', `dead letter ${seq}: a refused change that is not JSON cannot be re-pushed`);
      }
      body = encodeJson({ protocol: PROTOCOL_VERSION, batchId: this.newId(), agentId: plan.wrapForAgent, changes: [change] });
    }
    const ack = await this.bus().publish(plan.subject, body, { msgId: `replay:${this.stream}:${seq}`, headers: replayedHeaders(m, this.stream) });
    if (ack.stream !== plan.stream) {
      // Stored, but not where it was read from (streams re-declared by hand?): leave the dead letter for the operator.
      throw new FleetError('FLEET_OPS_003', `dead letter ${seq}: re-published to ${plan.subject}, stored by ${ack.stream} at ${ack.seq} instead of ${plan.stream}; the dead letter is kept`);
    }
    if (ack.duplicate) await this.checkEarlierReplay(seq, ack.stream, ack.seq);
    await this.remove(seq);
    return { seq, outcome: 'replayed', subject: plan.subject, stream: ack.stream, streamSeq: ack.seq, duplicate: ack.duplicate };
  }

  /**
   * JetStream dropped the replay as a duplicate of the message it holds at `storedSeq`: that is an earlier
   * replay of this dead letter only if it says so (`Fleet-Replayed-From`). Message ids are the
   * publisher's to choose, so a host could have sent its own push with this replay's id first; then, or
   * when the earlier message is gone and cannot be checked, the dead letter is kept.
   */
  private async checkEarlierReplay(seq: number, stream: string, storedSeq: number): Promise<void> {
    const jsm = await this.bus().jsm();
    const stored = await jsm.streams.getMessage(stream, { seq: storedSeq }).catch(() => null);
    const from = stored?.header?.has(Headers.ReplayedFrom) === true ? stored.header.get(Headers.ReplayedFrom) : undefined;
    if (from === `${this.stream}:${seq}`) return;
    throw new FleetError(
      'FLEET_OPS_003',
      stored === null
        ? `dead letter ${seq}: ${stream} took the replay as a duplicate of its message ${storedSeq}, which is gone and cannot be checked; the dead letter is kept (discard it if it was replayed)`
        : `dead letter ${seq}: ${stream} took the replay as a duplicate of its message ${storedSeq}, which is not a replay of it (its id was used by another publisher); the dead letter is kept`,
    );
  }

  private async remove(seq: number): Promise<void> {
    const jsm = await this.bus().jsm();
    try {
      await jsm.streams.deleteMessage(this.stream, seq, false);
    } catch (e) {
      throw new FleetError('FLEET_INFRA_001', `delete dead letter ${seq}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  private async mustGet(seq: number): Promise<StoredMsg> {
    const m = await this.get({ seq });
    if (m === null) throw new FleetError('FLEET_OPS_002', `no dead letter at sequence ${seq} in ${this.stream}`);
    return m;
  }

  /** STREAM.MSG.GET; `next_by_subj` (the first message at or after `seq`) is supported by nats-server 2.9, not typed by the client. */
  private async get(query: { seq: number; next_by_subj?: string }): Promise<StoredMsg | null> {
    const jsm = await this.bus().jsm();
    try {
      return await jsm.streams.getMessage(this.stream, query as MsgRequest);
    } catch (e) {
      throw new FleetError('FLEET_INFRA_001', `read dead letter ${query.seq}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  private describe(m: StoredMsg): DeadLetterItem {
    const h = (k: string) => header(m, k);
    const code = h(Headers.RejectCode);
    const part = deadLetterPartOf(h(Headers.MsgId));
    const plan = replayPlan(this.s, h, part);
    const headers: Record<string, string[]> = {};
    for (const [k, v] of m.header ?? []) headers[k] = [...v].map((x) => x.slice(0, 4096)).slice(0, 16);
    return {
      seq: m.seq,
      subject: m.subject,
      storedAt: m.time.toISOString(),
      code: code !== undefined && /^FLEET_[A-Z]+_\d{3}$/.test(code) ? code : null,
      reason: h(Headers.RejectReason)?.slice(0, 4096) ?? null,
      originalSubject: h(Headers.OriginalSubject)?.slice(0, 512) ?? null,
      originalStream: h(Headers.OriginalStream)?.slice(0, 256) ?? null,
      originalSequence: positive(h(Headers.OriginalSequence)),
      deliveryCount: positive(h(Headers.DeliveryCount)),
      part,
      headers,
      bytes: m.data.length,
      ...(plan.ok ? {} : { notReplayable: plan.why }),
    };
  }
}

function header(m: StoredMsg, k: string): string | undefined {
  return m.header?.has(k) === true ? m.header.get(k) : undefined;
}
