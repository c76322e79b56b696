/**
 * Answers pulls and pulls by key: authorisation, page cutting under the byte budget, compression.
 * Transport-free: takes the request bytes and the server's max payload, returns bytes and headers.
 */
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { FleetError } from '@fleet/errors';
import {
  decodePullKeysRequest,
  decodePullRequest,
  encodeJson,
  FLEET_SCOPE,
  Headers,
  hostScope,
  MAX_PULL_LIMIT,
  MAX_PULL_RESPONSE_BYTES,
  parsePullCursor,
  parseScope,
  PROTOCOL_VERSION,
  resyncCursor,
  toWireRecord,
} from '@fleet/contracts';
import type { PayloadEncoding, PullCursor, PullResponse, PullKeysResponse, WireRecord } from '@fleet/contracts';
import type { LoggedChange } from '@fleet/sync-core';
import { changeCostBound, foldWire } from './fold';
import type { DeltaStore } from './store';

const gzip = promisify(gzipCb);

export interface PullOptions {
  /** Compress a reply body above this many bytes when the agent accepts gzip. Default 8 KiB. */
  readonly compressAbove?: number;
  /** gzip level: 1 (fastest) .. 9. Default 1, see docs/delta-calculator.md. */
  readonly gzipLevel?: number;
  /** Room left under max_payload for headers (trace context, encoding). Default 4 KiB. */
  readonly headerRoom?: number;
  /** Log entries (or resync records) read per page when the request gives no limit. */
  readonly defaultLimit?: number;
}

export interface EncodedReply {
  readonly data: Uint8Array;
  readonly headers: Record<string, string>;
  /** Uncompressed body size, for metrics and the bench. */
  readonly rawBytes: number;
}

const KiB = 1024;

export class PullService {
  private readonly compressAbove: number;
  private readonly gzipLevel: number;
  private readonly headerRoom: number;
  private readonly defaultLimit: number;

  constructor(
    private readonly store: DeltaStore,
    opts: PullOptions = {},
  ) {
    this.compressAbove = opts.compressAbove ?? 8 * KiB;
    this.gzipLevel = opts.gzipLevel ?? 1;
    this.headerRoom = opts.headerRoom ?? 4 * KiB;
    this.defaultLimit = opts.defaultLimit ?? MAX_PULL_LIMIT;
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
    this.checkAgent(subjectAgentId, req.agentId);
    await this.authorize(req.agentId, req.scopes);
    const cursor = parsePullCursor(req.cursor);
    const gzipOk = req.acceptEncodings?.includes('gzip') ?? false;
    const { body, wire } = this.budgets(maxPayload, gzipOk);
    let limit = Math.min(req.limit ?? this.defaultLimit, MAX_PULL_LIMIT);
    const c = cursor.kind === 'log' ? { kind: 'log' as const, seq: cursor.seq } : cursor.after === undefined ? { kind: 'resync' as const, at: cursor.at } : { kind: 'resync' as const, at: cursor.at, after: cursor.after };
    for (;;) {
      // A resync page reads whole states: do not read (and decode) far more rows than the budget holds.
      const readLimit = c.kind === 'resync' ? Math.min(limit, Math.max(16, Math.floor(body / 120))) : limit;
      const page = await this.store.readPage(req.scopes, c, readLimit, body);
      let response: PullResponse;
      if (page.kind === 'log') {
        const cut = cutByBudget(page.changes, body);
        const changes = page.changes.slice(0, cut);
        const last = changes[changes.length - 1];
        response = {
          protocol: PROTOCOL_VERSION,
          records: foldWire(changes),
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
        const last = page.states[taken - 1];
        const done = page.exhausted && taken === page.states.length;
        const next: PullCursor = done ? page.at : resyncCursor(page.at, last === undefined ? undefined : { scope: last.scope, collection: last.collection, key: last.key });
        response = { protocol: PROTOCOL_VERSION, records, nextCursor: next, hasMore: true, fullResync: true };
      }
      const reply = await this.encode(response, gzipOk ? 'gzip' : 'identity');
      if (reply.data.byteLength <= wire && reply.rawBytes <= MAX_PULL_RESPONSE_BYTES) return reply;
      if (limit === 1 || response.records.length <= 1) {
        throw new FleetError('FLEET_DECODE_004', `one record does not fit under the server's max_payload ${maxPayload} (${reply.data.byteLength} bytes)`, {
          details: { bytes: reply.data.byteLength, maxPayload },
        });
      }
      // The bound undershot (e.g. incompressible data under a small max_payload): halve and retry.
      limit = Math.max(1, Math.floor(Math.min(limit, response.records.length) / 2));
    }
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
    const raw = encodeJson(value);
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
