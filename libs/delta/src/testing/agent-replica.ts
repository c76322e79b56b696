/**
 * TEST-ONLY agent half: an in-memory replica that pulls (joining delta states), and runs a Merkle
 * exchange from a local tree and applies the repair. The real agent (libs/agent*) is written
 * elsewhere; this is what the delta calculator's tests and bench drive it with.
 */
import { gunzipSync } from 'node:zlib';
import { MerkleTree, emptyRecord, mergeRecordStates, recordHash, verification } from '@fleet/sync-core';
import type { MerkleDiff, MerkleVerifyResponse, RecordState, StrategyConfig } from '@fleet/sync-core';
import {
  decodeEncodingHeader,
  decodeMerkleResponse,
  decodePullKeysResponse,
  decodePullResponse,
  encodeJson,
  fromWireRecord,
  Headers,
  isServerScope,
  PROTOCOL_VERSION,
} from '@fleet/contracts';
import type { PullCursor, PullResponse, WireRecord } from '@fleet/contracts';
import type { NatsPublisher, Reply } from '@fleet/messaging';
import { recordId } from '../fold';

export function undoEncoding(reply: Reply): Uint8Array {
  const enc = decodeEncodingHeader(reply.headers?.has(Headers.Encoding) ? reply.headers.get(Headers.Encoding) : undefined);
  return enc === 'gzip' ? new Uint8Array(gunzipSync(reply.data)) : reply.data;
}

export interface PullStats {
  pages: number;
  wireBytes: number;
  rawBytes: number;
  records: number;
  fullResync: boolean;
}

export class AgentReplica {
  readonly states = new Map<string, RecordState>();
  cursor: PullCursor = 0;

  constructor(
    readonly agentId: string,
    readonly scopes: readonly string[],
    private readonly bus: NatsPublisher,
    private readonly config: StrategyConfig = { default: 'lww' },
  ) {}

  join(w: WireRecord): void {
    const delta = fromWireRecord(w);
    const id = recordId(w.s, w.c, w.k);
    this.states.set(id, mergeRecordStates(this.states.get(id) ?? emptyRecord(delta.ref), delta, this.config));
  }

  async pullPage(opts: { limit?: number; gzip?: boolean; ownFrom?: number } = {}): Promise<{ response: PullResponse; wireBytes: number; rawBytes: number }> {
    const req = {
      protocol: PROTOCOL_VERSION,
      agentId: this.agentId,
      scopes: this.scopes,
      cursor: this.cursor,
      ...(opts.limit ? { limit: opts.limit } : {}),
      acceptEncodings: opts.gzip === false ? ['identity'] : ['gzip'],
      ...(opts.ownFrom === undefined ? {} : { ownFrom: opts.ownFrom }),
    };
    const reply = await this.bus.request(this.bus.subjects.pull(this.agentId), encodeJson(req), { timeoutMs: 30_000 });
    const raw = undoEncoding(reply);
    const response = decodePullResponse(raw);
    for (const r of response.records) this.join(r);
    this.cursor = response.nextCursor;
    return { response, wireBytes: reply.data.byteLength, rawBytes: raw.byteLength };
  }

  /** Pulls until `hasMore` is false. */
  async pullAll(opts: { limit?: number; gzip?: boolean; onPage?: (cursor: PullCursor, r: PullResponse) => void } = {}): Promise<PullStats> {
    const stats: PullStats = { pages: 0, wireBytes: 0, rawBytes: 0, records: 0, fullResync: false };
    for (;;) {
      const { response, wireBytes, rawBytes } = await this.pullPage(opts);
      stats.pages++;
      stats.wireBytes += wireBytes;
      stats.rawBytes += rawBytes;
      stats.records += response.records.length;
      if (response.fullResync === true) stats.fullResync = true;
      opts.onPage?.(this.cursor, response);
      if (!response.hasMore) return stats;
    }
  }

  /** Visible records of one (scope, collection), key -> record hash. */
  localTree(scope: string, collection: string): MerkleTree {
    const entries = [];
    for (const s of this.states.values()) {
      if (s.ref.scope === scope && s.ref.collection === collection && s.view.status === 'live') entries.push({ key: s.ref.key, recordHash: recordHash(s) });
    }
    return MerkleTree.build(entries);
  }

  /**
   * One Merkle exchange for (scope, collection) and its repair: the server's whole states of every
   * differing key are fetched (pull by keys). In a server-owned scope (fleet, group) the server is
   * authoritative, so the local state is REPLACED (a join could not undo a local corruption that kept
   * a write's stamp) and a key the server lacks is dropped. In the agent's host scope they are joined
   * and `toRepush` lists what the agent must push again.
   */
  async verifyAndRepair(scope: string, collection: string): Promise<{ diff: MerkleDiff; roundTrips: number; bytes: number; toRepush: string[] }> {
    const tree = this.localTree(scope, collection);
    let bytes = 0;
    // The whole verification (sync-core `verification`): an exchange, then one from each `next` while cut.
    const run = verification(tree);
    let r = run.next();
    while (r.done !== true) {
      const body = encodeJson({ protocol: PROTOCOL_VERSION, agentId: this.agentId, scope, collection, msg: r.value });
      const reply = await this.bus.request(this.bus.subjects.merkle(this.agentId), body, { timeoutMs: 60_000 });
      bytes += body.byteLength + reply.data.byteLength;
      r = run.next(decodeMerkleResponse(reply.data).msg as MerkleVerifyResponse);
    }
    const { result: diff, roundTrips } = r.value;
    const keys = [...diff.missingHere, ...diff.differing, ...diff.missingThere];
    const got = new Map<string, WireRecord>();
    for (let i = 0; i < keys.length; ) {
      const refs = keys.slice(i, i + 1000).map((key) => ({ scope, collection, key }));
      const reply = await this.bus.request(this.bus.subjects.pullKeys(this.agentId), encodeJson({ protocol: PROTOCOL_VERSION, agentId: this.agentId, records: refs, acceptEncodings: ['gzip'] }), { timeoutMs: 30_000 });
      const r = decodePullKeysResponse(undoEncoding(reply));
      for (const w of r.records) got.set(w.k, w);
      i += Math.max(1, r.answered);
    }
    const authoritative = isServerScope(scope);
    const toRepush: string[] = [];
    for (const key of keys) {
      const id = recordId(scope, collection, key);
      const w = got.get(key);
      if (authoritative) {
        if (w === undefined) this.states.delete(id);
        else this.states.set(id, mergeRecordStates(emptyRecord({ scope, collection, key }), fromWireRecord(w), this.config));
      } else {
        if (w !== undefined) this.join(w);
        if (!diff.missingHere.includes(key)) toRepush.push(key);
      }
    }
    return { diff, roundTrips, bytes, toRepush };
  }
}
