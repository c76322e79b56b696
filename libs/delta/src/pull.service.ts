/**
 * Answers pulls and pulls by key: authorisation, page cutting under the byte budget, compression.
 * Transport-free: takes the request bytes and the server's max payload, returns bytes and headers.
 */
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { FleetError } from '@fleet/errors';
import {
  decodeOriginRequest,
  decodePullKeysRequest,
  decodePullRequest,
  encodeJson,
  FLEET_SCOPE,
  Headers,
  hostScope,
  MAX_PULL_LIMIT,
  MAX_PULL_RESPONSE_BYTES,
  MAX_SNAPSHOT_PAGE_RECORDS,
  MAX_SNAPSHOT_RESPONSE_BYTES,
  parsePullCursor,
  parseScope,
  PROTOCOL_VERSION,
  resyncCursor,
  toWireRecord,
} from '@fleet/contracts';
import type { OriginResponse, PayloadEncoding, PullCursor, PullRequest, PullResponse, PullKeysResponse, WireRecord } from '@fleet/contracts';
import type { LoggedChange } from '@fleet/sync-core';
import { changeCostBound, foldWire } from './fold';
import type { PullPageFact } from './pull-facts';
import type { DeltaStore, OwnRecords } from './store';

const gzip = promisify(gzipCb);

export interface PullOptions {
  /** Compress a reply body above this many bytes when the agent accepts gzip. Default 8 KiB. */
  readonly compressAbove?: number;
  /** gzip level: 1 (fastest) .. 9. Default 1, see docs/delta-calculator.md. */
  readonly gzipLevel?: number;
  /** Room left under max_payload for headers (next cursor, trace context, encoding). Default `PULL_HEADER_ROOM`. */
  readonly headerRoom?: number;
  /** Log entries (or resync records) read per page when the request gives no limit. */
  readonly defaultLimit?: number;
  /** Records per snapshot page when the request gives no limit. Default MAX_SNAPSHOT_PAGE_RECORDS. */
  readonly snapshotLimit?: number;
  /**
   * Read (and encode) the next snapshot page while the agent applies this one. Default true. Off:
   * each page is read when asked for.
   */
  readonly snapshotReadAhead?: boolean;
  /** Told of every pull page answered (not of refused pulls): delta-calculator's `PullFacts`. Must not block. */
  readonly observer?: PullObserver;
}

export interface PullObserver {
  pulled(agentId: string, page: PullPageFact): void;
}

export interface EncodedReply {
  readonly data: Uint8Array;
  readonly headers: Record<string, string>;
  /** Uncompressed body size, for metrics and the bench. */
  readonly rawBytes: number;
  /** A pull page's `nextCursor` when it has more (becomes the `Fleet-Next-Cursor` header). */
  readonly nextCursor?: PullCursor | undefined;
  /** A pull page's cursor (whether more follows or not), its log head, and whether more follows. */
  readonly page?: { readonly to: PullCursor; readonly headSeq: number; readonly hasMore: boolean } | undefined;
}

/**
 * Adds `Fleet-Next-Cursor` (the page's `nextCursor` as JSON) when the page has more: the agent can ask
 * for the next page as soon as the reply arrives, before it has gunzipped and decoded this one, so the
 * server reads the next page while the agent decodes and applies this one. The body's cursor stays the
 * one the agent stores.
 */
function withNextCursor(r: EncodedReply): EncodedReply {
  if (r.nextCursor === undefined) return r;
  return { ...r, headers: { ...r.headers, [Headers.NextCursor]: JSON.stringify(r.nextCursor) } };
}

const KiB = 1024;

/**
 * Room under max_payload for a reply's headers: nats.js counts them against it. The largest is
 * `Fleet-Next-Cursor`, a resync or snapshot position naming its last key (contracts' `RESYNC_CURSOR`:
 * up to ~4.6 KB for a 512-byte key of control characters), beside the encoding and the trace context
 * (`traceparent`, `tracestate` up to 512 bytes). 4 KiB was too little for such a cursor: the page
 * whose body came within ~450 bytes of the budget failed to publish, every time it was asked for.
 */
export const PULL_HEADER_ROOM = 8 * KiB;

/** A snapshot page read ahead is kept this long for the agent's request (a replica that did not get it drops it). */
const SNAPSHOT_READ_AHEAD_MS = 10_000;
/** At most this many snapshot pages read ahead at once (one per agent pulling a snapshot from this replica). */
const MAX_SNAPSHOT_READ_AHEAD = 32;

/** A snapshot page's reply and, when more states follow, the position after it (`s.<at>.<after>`). */
/** What a snapshot page is read for: the agent's scopes and position, the budgets, and the records it holds (`own`). */
interface SnapshotAsk {
  readonly scopes: readonly string[];
  readonly at: number | undefined;
  readonly after: { readonly scope: string; readonly collection: string; readonly key: string } | undefined;
  readonly limit: number;
  readonly gzipOk: boolean;
  readonly body: number;
  readonly wire: number;
  readonly maxPayload: number;
  readonly own: OwnRecords | undefined;
}

interface SnapshotPageRead {
  readonly reply: EncodedReply;
  readonly next: { readonly at: number; readonly after: { readonly scope: string; readonly collection: string; readonly key: string } | undefined } | undefined;
}

export class PullService {
  private readonly compressAbove: number;
  private readonly gzipLevel: number;
  private readonly headerRoom: number;
  private readonly defaultLimit: number;
  private readonly snapshotLimit: number;
  private readonly snapshotReadAhead: boolean;
  private readonly observer: PullObserver | undefined;

  constructor(
    private readonly store: DeltaStore,
    opts: PullOptions = {},
  ) {
    this.compressAbove = opts.compressAbove ?? 8 * KiB;
    this.gzipLevel = opts.gzipLevel ?? 1;
    this.headerRoom = opts.headerRoom ?? PULL_HEADER_ROOM;
    this.defaultLimit = opts.defaultLimit ?? MAX_PULL_LIMIT;
    this.snapshotLimit = Math.min(opts.snapshotLimit ?? MAX_SNAPSHOT_PAGE_RECORDS, MAX_SNAPSHOT_PAGE_RECORDS);
    this.snapshotReadAhead = opts.snapshotReadAhead ?? true;
    this.observer = opts.observer;
  }

  /** FLEET_AUTH_002 unless every scope is the agent's host scope, `fleet`, or a group it belongs to. */
  async authorize(agentId: string, scopes: readonly string[]): Promise<void> {
    let groups: Set<string> | undefined;
    const foreign: string[] = [];
    for (const s of scopes) {
      if (s === FLEET_SCOPE || s === hostScope(agentId)) continue;
      const p = parseScope(s);
      if (p?.kind === 'group') {
        groups ??= new Set(await this.store.groupsOf(agentId));
        if (groups.has(p.name)) continue;
      }
      foreign.push(s);
    }
    if (foreign.length > 0) {
      throw new FleetError('FLEET_AUTH_002', `agent ${JSON.stringify(agentId)} may not read ${foreign.map((s) => JSON.stringify(s)).join(', ')}`, {
        details: { agentId, scopes: foreign },
      });
    }
  }

  private checkAgent(subjectAgentId: string, bodyAgentId: string): void {
    if (subjectAgentId !== bodyAgentId) {
      throw new FleetError('FLEET_AUTH_001', `request names agent ${JSON.stringify(bodyAgentId)} but was sent on ${JSON.stringify(subjectAgentId)}'s subject`, {
        details: { agentId: bodyAgentId, subjectAgentId },
      });
    }
  }

  /** Budgets: the uncompressed body (the agent's decode cap, and max_payload when not compressing) and the wire. */
  private budgets(maxPayload: number, gzipOk: boolean): { body: number; wire: number } {
    const wire = maxPayload - this.headerRoom;
    return { body: gzipOk ? MAX_PULL_RESPONSE_BYTES : Math.min(MAX_PULL_RESPONSE_BYTES, wire), wire };
  }

  async pull(subjectAgentId: string, bytes: Uint8Array, maxPayload: number): Promise<EncodedReply> {
    const req = decodePullRequest(bytes);
    const r = await this.pullPage(subjectAgentId, req, maxPayload);
    if (this.observer !== undefined && r.page !== undefined) this.observer.pulled(req.agentId, { from: req.cursor, to: r.page.to, headSeq: r.page.headSeq, hasMore: r.page.hasMore, health: req.health });
    return r;
  }

  private async pullPage(subjectAgentId: string, req: PullRequest, maxPayload: number): Promise<EncodedReply> {
    this.checkAgent(subjectAgentId, req.agentId);
    await this.authorize(req.agentId, req.scopes);
    const cursor = parsePullCursor(req.cursor);
    const gzipOk = req.acceptEncodings?.includes('gzip') ?? false;
    const { body, wire } = this.budgets(maxPayload, gzipOk);
    let limit = Math.min(req.limit ?? this.defaultLimit, MAX_PULL_LIMIT);
    const snapshot = cursor.kind === 'resync' && cursor.mode === 'snapshot';
    if (snapshot || (cursor.kind === 'log' && cursor.seq === 0 && req.snapshot === true)) {
      // Snapshot pages are larger (the agent that asks for them takes them): by default as many records
      // as MAX_SNAPSHOT_PAGE_RECORDS and a body that gzip will take under max_payload.
      const snapLimit = req.limit ?? this.snapshotLimit;
      const snapBody = gzipOk ? Math.min(MAX_SNAPSHOT_RESPONSE_BYTES, wire * 6) : Math.min(MAX_SNAPSHOT_RESPONSE_BYTES, wire);
      const own = req.ownFrom === undefined ? undefined : { agentId: req.agentId, from: req.ownFrom };
      const ask = (at: number | undefined, after: SnapshotAsk['after']): SnapshotAsk => ({ scopes: req.scopes, at, after, limit: snapLimit, gzipOk, body: snapBody, wire, maxPayload, own });
      if (snapshot) return withNextCursor(await this.snapshotPage(ask(cursor.at, cursor.after)));
      // A bulk first pull: states from the projection rather than a fold of the whole log. Bring the
      // projection up to the log's head first when it is idle, so the log part after the snapshot is
      // short; when a pass is running (under load), start from what it has folded so far.
      await this.store.projectUnlessBusy();
      // A projection that has folded nothing yet (its first pass is running) has no snapshot to give, and
      // a snapshot at position 0 ends the pull ("an empty log") with the log's changes unsent: the agent
      // then waited for its next scheduled sync. The log from 0 serves such a pull, page by page.
      if ((await this.store.projectedSeq()) > 0) return withNextCursor(await this.snapshotPage(ask(undefined, undefined)));
    }
    const c = cursor.kind === 'log' ? { kind: 'log' as const, seq: cursor.seq } : cursor.after === undefined ? { kind: 'resync' as const, at: cursor.at } : { kind: 'resync' as const, at: cursor.at, after: cursor.after };
    for (;;) {
      // A resync page reads whole states: do not read (and decode) far more rows than the budget holds.
      const readLimit = c.kind === 'resync' ? Math.min(limit, Math.max(16, Math.floor(body / 120))) : limit;
      const page = await this.store.readPage(req.scopes, c, readLimit, body);
      let response: PullResponse;
      // What the page holds before folding (changes, or states): what halving the limit can cut down.
      let units: number;
      if (page.kind === 'log') {
        const cut = cutByBudget(page.changes, body);
        units = cut;
        const changes = page.changes.slice(0, cut);
        const last = changes[changes.length - 1];
        // No echo: the agent's own changes from `ownFrom` on are in its store (it made them). The cursor
        // still moves past them; a record with other writes too gets those as its delta.
        const own = req.ownFrom;
        const shown = own === undefined ? changes : changes.filter((c) => c.origin !== req.agentId || c.originSeq < own);
        response = {
          protocol: PROTOCOL_VERSION,
          records: foldWire(shown),
          nextCursor: last === undefined ? cursor.kind === 'log' ? cursor.seq : 0 : last.seq,
          hasMore: page.hasMore || cut < page.changes.length,
        };
      } else {
        const records: WireRecord[] = [];
        let size = 0;
        let taken = 0;
        for (const r of page.states) {
          const w = toWireRecord(r.state);
          const n = JSON.stringify(w).length * 3;
          if (records.length > 0 && size + n > body - 256) break;
          records.push(w);
          size += n;
          taken++;
        }
        units = taken;
        const last = page.states[taken - 1];
        const done = page.exhausted && taken === page.states.length;
        const next: PullCursor = done ? page.at : resyncCursor(page.at, last === undefined ? undefined : { scope: last.scope, collection: last.collection, key: last.key });
        response = { protocol: PROTOCOL_VERSION, records, nextCursor: next, hasMore: true, fullResync: true };
      }
      const reply = await this.encode(response, gzipOk ? 'gzip' : 'identity');
      if (reply.data.byteLength <= wire && reply.rawBytes <= MAX_PULL_RESPONSE_BYTES) {
        return withNextCursor({ ...reply, nextCursor: response.hasMore ? response.nextCursor : undefined, page: { to: response.nextCursor, headSeq: page.head, hasMore: response.hasMore } });
      }
      // Only a page of ONE change (or state) can be too big for good: many changes to one record fold into
      // one record, and fewer of them may fit.
      if (limit === 1 || units <= 1) {
        throw new FleetError('FLEET_DECODE_004', `one change does not fit under the server's max_payload ${maxPayload} (${reply.data.byteLength} bytes)`, {
          details: { bytes: reply.data.byteLength, maxPayload },
        });
      }
      // The bound undershot (e.g. incompressible data under a small max_payload): halve and retry.
      limit = Math.max(1, Math.floor(Math.min(limit, units) / 2));
    }
  }

  /**
   * One snapshot page, built by concatenating the projection's wire texts (no fold, no JSON decoding or
   * encoding of the records): `{"s":..,"c":..,"k":..,` + the state's wire text. Cut under the body budget
   * by exact UTF-8 size; the cursor is `s.<at>.<last key sent>`, and the number `at` once the states are
   * exhausted (the log resumes after it).
   */
  private async snapshotPage(a: SnapshotAsk): Promise<EncodedReply> {
    const keyOf = (x: SnapshotAsk) => JSON.stringify([x.scopes, x.at ?? null, x.after === undefined ? null : [x.after.scope, x.after.collection, x.after.key], x.limit, x.gzipOk, x.body, x.wire, x.maxPayload, x.own ?? null]);
    let page: SnapshotPageRead | undefined;
    if (a.at !== undefined) {
      const ahead = this.snapshotAhead.get(keyOf(a));
      if (ahead !== undefined) {
        this.snapshotAhead.delete(keyOf(a));
        clearTimeout(ahead.timer);
        page = await ahead.page.catch(() => undefined); // a failed read-ahead is read again
      }
    }
    page ??= await this.readSnapshotPage(a);
    const next = page.next;
    if (next !== undefined && this.snapshotReadAhead && this.snapshotAhead.size < MAX_SNAPSHOT_READ_AHEAD) {
      // Server-side read-ahead: the page after this one is read and encoded now, while this reply travels
      // and the agent applies it; the agent's request for it (its Fleet-Next-Cursor) takes it from here.
      const following: SnapshotAsk = { ...a, at: next.at, after: next.after };
      const key = keyOf(following);
      if (!this.snapshotAhead.has(key)) {
        const p = this.readSnapshotPage(following);
        p.catch(() => undefined); // handled when used
        const timer = setTimeout(() => {
          if (this.snapshotAhead.get(key)?.page === p) this.snapshotAhead.delete(key);
        }, SNAPSHOT_READ_AHEAD_MS);
        timer.unref();
        this.snapshotAhead.set(key, { page: p, timer });
      }
    }
    return page.reply;
  }

  /** Snapshot pages read ahead (see snapshotPage), by what was asked. */
  private readonly snapshotAhead = new Map<string, { readonly page: Promise<SnapshotPageRead>; readonly timer: NodeJS.Timeout }>();

  /** One snapshot page (see snapshotPage) and, when more states follow, the position after it. */
  private async readSnapshotPage(a: SnapshotAsk): Promise<SnapshotPageRead> {
    const { scopes, at, after, gzipOk, body, wire, maxPayload, own } = a;
    let limit = a.limit;
    for (;;) {
      const page = await this.store.readSnapshot(scopes, at, after, limit, own);
      const parts: string[] = [];
      let size = 128 + 2 * 4608; // envelope and the longest cursor (RESYNC_CURSOR)
      let taken = 0;
      for (const r of page.rows) {
        // The wire text comes from JSON.stringify (the projector): an object, never empty.
        const part = `{"s":${JSON.stringify(r.scope)},"c":${JSON.stringify(r.collection)},"k":${JSON.stringify(r.key)},${r.wire.slice(1)}`;
        const n = Buffer.byteLength(part, 'utf8') + 1;
        if (taken > 0 && size + n > body) break;
        parts.push(part);
        size += n;
        taken++;
      }
      const last = page.rows[taken - 1];
      const done = page.exhausted && taken === page.rows.length;
      const next: PullCursor = done ? page.at : resyncCursor(page.at, last === undefined ? after : { scope: last.scope, collection: last.collection, key: last.key }, 'snapshot');
      // After the last state the log continues from Q (more to pull), unless Q is 0: an empty log, and a
      // pull from 0 would be this snapshot again (with hasMore every fresh agent would loop on it).
      const more = !done || page.at > 0;
      const text = `{"protocol":${PROTOCOL_VERSION},"records":[${parts.join(',')}],"nextCursor":${JSON.stringify(next)},"hasMore":${more},"snapshot":true}`;
      const reply = await this.encodeText(text, gzipOk ? 'gzip' : 'identity');
      if (reply.data.byteLength <= wire && reply.rawBytes <= MAX_SNAPSHOT_RESPONSE_BYTES) {
        const following = done ? undefined : { at: page.at, after: last === undefined ? after : { scope: last.scope, collection: last.collection, key: last.key } };
        return { reply: { ...reply, nextCursor: more ? next : undefined, page: { to: next, headSeq: page.head, hasMore: more } }, next: following };
      }
      if (taken <= 1) {
        throw new FleetError('FLEET_DECODE_004', `one record does not fit under the server's max_payload ${maxPayload} (${reply.data.byteLength} bytes)`, {
          details: { bytes: reply.data.byteLength, maxPayload },
        });
      }
      // Incompressible data under a small max_payload: halve and retry.
      limit = Math.max(1, Math.floor(taken / 2));
    }
  }

  /**
   * The change log's highest origin sequence of the asking agent id: a store that has never synced asks
   * before its first push or pull and numbers its own changes above it (agent-store `settleOrigin`).
   */
  async origin(subjectAgentId: string, bytes: Uint8Array): Promise<Uint8Array> {
    const req = decodeOriginRequest(bytes);
    this.checkAgent(subjectAgentId, req.agentId);
    const response: OriginResponse = { protocol: PROTOCOL_VERSION, agentId: req.agentId, lastOriginSeq: await this.store.lastOriginSeq(req.agentId) };
    return encodeJson(response);
  }

  async pullKeys(subjectAgentId: string, bytes: Uint8Array, maxPayload: number): Promise<EncodedReply> {
    const req = decodePullKeysRequest(bytes);
    this.checkAgent(subjectAgentId, req.agentId);
    await this.authorize(req.agentId, [...new Set(req.records.map((r) => r.scope))]);
    await this.store.project();
    const gzipOk = req.acceptEncodings?.includes('gzip') ?? false;
    const { body, wire } = this.budgets(maxPayload, gzipOk);
    let n = req.records.length;
    for (;;) {
      const rows = await this.store.statesOf(req.records.slice(0, n));
      const records = rows.map((r) => toWireRecord(r.state));
      const response: PullKeysResponse = { protocol: PROTOCOL_VERSION, records, answered: n };
      const reply = await this.encode(response, gzipOk ? 'gzip' : 'identity');
      if (reply.data.byteLength <= wire && reply.rawBytes <= body) return reply;
      if (n === 1) throw new FleetError('FLEET_DECODE_004', `record state does not fit under max_payload ${maxPayload}`);
      n = Math.floor(n / 2);
    }
  }

  private async encode(value: unknown, encoding: PayloadEncoding): Promise<EncodedReply> {
    return this.encodeBytes(encodeJson(value), encoding);
  }

  private async encodeText(text: string, encoding: PayloadEncoding): Promise<EncodedReply> {
    return this.encodeBytes(Buffer.from(text, 'utf8'), encoding);
  }

  private async encodeBytes(raw: Uint8Array, encoding: PayloadEncoding): Promise<EncodedReply> {
    if (encoding === 'gzip' && raw.byteLength > this.compressAbove) {
      const z = await gzip(raw, { level: this.gzipLevel });
      return { data: new Uint8Array(z.buffer, z.byteOffset, z.byteLength), headers: { [Headers.Encoding]: 'gzip', [Headers.Protocol]: String(PROTOCOL_VERSION) }, rawBytes: raw.byteLength };
    }
    return { data: raw, headers: { [Headers.Protocol]: String(PROTOCOL_VERSION) }, rawBytes: raw.byteLength };
  }
}

/** How many of `changes` (a seq-ordered prefix, at least one) fit in `budget` bytes by the upper bound. */
export function cutByBudget(changes: readonly LoggedChange[], budget: number): number {
  let size = 64;
  for (let i = 0; i < changes.length; i++) {
    size += changeCostBound(changes[i] as LoggedChange);
    if (size > budget) return Math.max(1, i);
  }
  return changes.length;
}
