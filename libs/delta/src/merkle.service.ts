/**
 * Server half of Merkle anti-entropy. One tree per (scope, collection) over the VISIBLE records
 * (live ones: a deleted or absent record has no entry, so a tombstone the agent never saw is not a
 * difference), keyed by record key, valued by `recordHash` of the server's state. Built lazily from
 * `record_states` on first use, then refreshed incrementally before each answer from the rows with
 * `rev` above the tree's own (rev is assigned in commit order: nothing is skipped). Held in memory:
 * ~26 MiB per 1,000,000 records (see sync-core merkle.ts).
 */
import { FleetError } from '@fleet/errors';
import { MerkleTree, answerVerify } from '@fleet/sync-core';
import type { MerkleVerifyRequest, MerkleVerifyResponse } from '@fleet/sync-core';
import { decodeMerkleRequest, encodeJson, PROTOCOL_VERSION } from '@fleet/contracts';
import type { MerkleResponse } from '@fleet/contracts';
import type { DeltaStore } from './store';
import type { PullService } from './pull.service';

interface Held {
  tree: MerkleTree;
  rev: number;
  /** Serialises refreshes of this tree. */
  busy: Promise<void>;
}

export interface MerkleCounters {
  /** At the end of an exchange that found differing buckets: how many (the consistency-violation metric). */
  onDifferences?(buckets: number): void;
  /** Per agent, at the end of an exchange: the roots were equal (`differing` 0), or a listing of `differing` buckets (delta-calculator's `PullFacts`). */
  verified?(agentId: string, differing: number): void;
}

export class MerkleService {
  private readonly trees = new Map<string, Held>();

  constructor(
    private readonly store: DeltaStore,
    private readonly pulls: PullService,
    private readonly counters: MerkleCounters = {},
  ) {}

  /** The up-to-date tree of (scope, collection). */
  async tree(scope: string, collection: string): Promise<MerkleTree> {
    const id = `${scope}\u0000${collection}`;
    let held = this.trees.get(id);
    if (held === undefined) {
      held = { tree: MerkleTree.empty(), rev: 0, busy: Promise.resolve() };
      this.trees.set(id, held);
    }
    const h = held;
    const run = h.busy.then(async () => {
      await this.store.project();
      const rows = await this.store.hashesSince(scope, collection, h.rev);
      if (h.rev === 0 && rows.length > 0) {
        h.tree = MerkleTree.build(rows.filter((r) => r.live).map((r) => ({ key: r.key, recordHash: r.hash })));
      } else {
        for (const r of rows) {
          if (r.live) h.tree.upsert(r.key, r.hash);
          else h.tree.remove(r.key);
        }
      }
      const last = rows[rows.length - 1];
      if (last !== undefined) h.rev = last.rev;
    });
    h.busy = run.catch(() => undefined);
    await run;
    return h.tree;
  }

  async answer(subjectAgentId: string, bytes: Uint8Array): Promise<Uint8Array> {
    const req = decodeMerkleRequest(bytes);
    if (req.agentId !== subjectAgentId) throw new FleetError('FLEET_AUTH_001', `request names agent ${JSON.stringify(req.agentId)} but was sent on ${JSON.stringify(subjectAgentId)}'s subject`);
    await this.pulls.authorize(req.agentId, [req.scope]);
    const tree = await this.tree(req.scope, req.collection);
    const msg: MerkleVerifyResponse = answerVerify(tree, req.msg as MerkleVerifyRequest);
    // An exchange (of one scope and collection) ends in exactly one of three places: equal roots, the
    // differing buckets listed by this side (`listing`), or listed by the agent (`entries`, answered
    // with the `result`: the usual end with the default depth). Each counts its differing buckets once.
    const differing = msg.t === 'equal' ? 0 : msg.t === 'listing' ? msg.buckets.length : msg.t === 'result' && req.msg.t === 'entries' ? (msg.compared ?? req.msg.buckets.length) : undefined;
    if (differing !== undefined) {
      if (differing > 0) this.counters.onDifferences?.(differing);
      this.counters.verified?.(req.agentId, differing);
    }
    const out: MerkleResponse = { protocol: PROTOCOL_VERSION, msg: msg as MerkleResponse['msg'] };
    return encodeJson(out);
  }
}
