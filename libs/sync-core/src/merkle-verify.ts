/**
 * The Merkle verify exchange, sans I/O: the initiator calls `startVerify`, sends the request, feeds
 * each response to `stepVerify`, and sends the next request until it gets a result; the responder
 * answers every request with `answerVerify(tree, request)` and keeps no state, so any replica of
 * the server can answer any round. Every message is plain JSON.
 *
 * The two sides take turns comparing, so each message carries one level of the tree and no level is
 * sent twice: the initiator sends its root and level 1; the responder compares level 1 and replies
 * with its level 2 under the differing nodes; the initiator compares level 2 and sends its level 3
 * under the differing nodes; and so on. At the buckets, whoever compared them finishes:
 * - the initiator sends its listing of the differing buckets as (key id, entry hash) pairs without
 *   keys (it knows its own keys), and the responder replies with the keys the initiator lacks and
 *   positions into that listing for the rest (`result`);
 * - or the responder sends its listing of the differing buckets with keys (`listing`), and the
 *   initiator compares it with its own.
 * Depth 4 takes 3 round trips; bytes grow with the number of differing buckets, not the data.
 *
 * Bounded messages: a side that lost thousands of records differs in thousands of buckets, and one
 * listing of them all would not fit a message. Each side sends at most `maxParents` nodes of a level
 * and `maxListBytes` of listing (whole buckets, at least one), in bucket order, and a responder that
 * cut its answer says so (`more`, or `compared` for a result). The exchange then ends with `next`,
 * the first bucket it did not compare: the initiator repairs what it found and runs another exchange
 * from there (`startVerify(tree, { from: next })`), which skips every node below `from`. Each pass
 * compares at least one bucket more, so the passes end.
 *
 * Truncation: below the root, digests travel as their first 8 bytes. A false "equal" needs two
 * different 256-bit digests to agree on 64 bits by chance (2^-64 per differing node; the digests are
 * sha256 outputs or sums of them, not attacker-shaped beyond what the linear bucket sum allows), and
 * it would only hide that subtree until the next verify, which compares the full root again. The
 * root travels in full because it decides whether anything is checked at all. 8 bytes instead of 32
 * cut a 10-difference exchange over 1,000,000 records from ~28 KB to ~9 KB.
 */
import { FleetError } from '@fleet/errors';
import { MERKLE_FANOUT, wireEntryHash, wireKeyId } from './merkle';
import type { MerkleTree } from './merkle';

/** Version of the verify messages; bump it when their meaning changes. 1: the first version. */
export const MERKLE_VERIFY_VERSION = 1;

/** Bytes of a digest, key id or entry hash on the wire below the root. */
const WIRE_BYTES = 8;

/**
 * How much one message of an exchange may carry. The defaults keep every message under ~200 KiB of
 * JSON: requests are decoded with a 256 KiB cap (contracts' MAX_PULL_REQUEST_BYTES), and any NATS
 * `max_payload` of 256 KiB or more carries them. 1,024 parents of 16 digests of 8 bytes = 128 KiB
 * (171 KiB in base64url).
 */
export interface MerkleLimits {
  /** Nodes of one level whose children one message carries. */
  readonly maxParents: number;
  /** Bytes of keys and entries in one listing, request (`entries`) or answer (`listing`, `result`). */
  readonly maxListBytes: number;
}

export const MERKLE_LIMITS: MerkleLimits = { maxParents: 1024, maxListBytes: 160 * 1024 };

/** The buckets under `node` at `level`: [first, first + span). */
function span(depth: number, level: number): number {
  return MERKLE_FANOUT ** (depth - level);
}

/**
 * Initiator to responder.
 * - `digests`: "here are my digests (8 bytes each, base64url, 16 per parent in order) of the
 *   children, at `level`, of these `parents` at `level - 1`". The first request also carries the
 *   full `root`, so an in-sync pair stops after one round trip.
 * - `entries`: my listing of these buckets: `counts[i]` entries for `buckets[i]`, each 16 bytes
 *   (key id, entry hash) in `entries` (base64url).
 */
export type MerkleVerifyRequest =
  | {
      readonly t: 'digests';
      readonly v: number;
      readonly depth: number;
      readonly root?: string;
      readonly level: number;
      readonly parents: readonly number[];
      readonly digests: string;
      /** Compare only the buckets from this one on (a later pass of a cut exchange). Absent: 0. */
      readonly from?: number;
    }
  | {
      readonly t: 'entries';
      readonly v: number;
      readonly depth: number;
      readonly buckets: readonly number[];
      readonly counts: readonly number[];
      readonly entries: string;
    };

/**
 * Responder to initiator.
 * - `equal`: the roots match.
 * - `digests`: the `parents` (at `level - 1`) that differ, and my digests of their children at `level`.
 * - `listing`: my entries of the differing buckets: `counts[i]` keys of `buckets[i]` in `keys`, and
 *   their entry hashes (8 bytes each, base64url) in `hashes`.
 * - `result`: against the initiator's `entries` listing: `missingHere` are keys only I hold;
 *   `missingThere` and `differing` are positions in that listing (keys only it holds, or held by
 *   both with different record hashes), so its keys never travel back.
 */
export type MerkleVerifyResponse =
  | { readonly t: 'equal' }
  | { readonly t: 'digests'; readonly level: number; readonly parents: readonly number[]; readonly digests: string; /** More parents differed than sent (a prefix). */ readonly more?: true }
  | {
      readonly t: 'listing';
      readonly buckets: readonly number[];
      readonly counts: readonly number[];
      readonly keys: readonly string[];
      readonly hashes: string;
      /** More buckets differed than listed (a prefix). */
      readonly more?: true;
    }
  | {
      readonly t: 'result';
      readonly missingHere: readonly string[];
      readonly missingThere: readonly number[];
      readonly differing: readonly number[];
      /** Set when only the first `compared` buckets of the request were compared. */
      readonly compared?: number;
    };

/** The outcome, from the initiator's side. Each list is sorted. */
export interface MerkleDiff {
  /** Keys the responder holds and the initiator does not. */
  readonly missingHere: string[];
  /** Keys the initiator holds and the responder does not. */
  readonly missingThere: string[];
  /** Keys both hold with different record hashes. */
  readonly differing: string[];
}

/** The initiator's state between rounds. The tree must not change during an exchange. */
export interface MerkleVerifyState {
  readonly tree: MerkleTree;
  readonly sent: MerkleVerifyRequest;
  /** The keys of an `entries` request, in listing order, to read positions in the `result` back. */
  readonly listed: readonly string[];
  readonly roundTrips: number;
  /** The first bucket this exchange compares (`startVerify`'s `from`). */
  readonly from: number;
  /** The first bucket not compared, once a message was cut (either side). */
  readonly next: number | undefined;
  readonly limits: MerkleLimits;
}

export type MerkleVerifyStep =
  | { readonly done: false; readonly state: MerkleVerifyState; readonly request: MerkleVerifyRequest }
  | {
      readonly done: true;
      readonly result: MerkleDiff;
      readonly roundTrips: number;
      /** The first bucket not compared (a message was cut): run another exchange from it. Absent: done. */
      readonly next?: number;
    };

const encode = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');

function decode(s: string, expectedBytes: number, what: string): Uint8Array {
  const bytes = Buffer.from(s, 'base64url');
  if (bytes.length !== expectedBytes) {
    throw new FleetError('FLEET_MERKLE_003', `${what}: expected ${expectedBytes} bytes, got ${bytes.length}`);
  }
  return bytes;
}

function bad(message: string): FleetError {
  return new FleetError('FLEET_MERKLE_003', message);
}

/** Children (at parentLevel + 1) of `parents` whose digests differ between `mine` and `theirs`. */
function differingChildren(parents: readonly number[], mine: Uint8Array, theirs: Uint8Array): number[] {
  const out: number[] = [];
  let o = 0;
  for (const p of parents) {
    for (let c = 0; c < MERKLE_FANOUT; c++, o += WIRE_BYTES) {
      for (let i = 0; i < WIRE_BYTES; i++) {
        if (mine[o + i] !== theirs[o + i]) {
          out.push(p * MERKLE_FANOUT + c);
          break;
        }
      }
    }
  }
  return out;
}

function sameBytes(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  for (let i = 0; i < WIRE_BYTES; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

function hex8(a: Uint8Array, o: number): string {
  let s = '';
  for (let i = 0; i < WIRE_BYTES; i++) s += (a[o + i] as number).toString(16).padStart(2, '0');
  return s;
}

function checkShape(tree: MerkleTree, v: number, depth: number): void {
  if (v !== MERKLE_VERIFY_VERSION) throw new FleetError('FLEET_MERKLE_001', `verify version ${v}, this side speaks ${MERKLE_VERIFY_VERSION}`);
  if (depth !== tree.depth) throw new FleetError('FLEET_MERKLE_001', `peer tree depth ${depth}, this side ${tree.depth}`);
}

function sortedUnique(ns: readonly number[], what: string): void {
  for (let i = 1; i < ns.length; i++) if ((ns[i] as number) <= (ns[i - 1] as number)) throw bad(`${what} must be strictly increasing`);
}

/**
 * Starts an exchange: the first request carries the full root and level 1. `from`: compare only the
 * buckets from this one on (the `next` of a previous exchange that was cut).
 */
export function startVerify(tree: MerkleTree, opts: { readonly from?: number; readonly limits?: MerkleLimits } = {}): { state: MerkleVerifyState; request: MerkleVerifyRequest } {
  const from = opts.from ?? 0;
  if (!Number.isSafeInteger(from) || from < 0 || from >= MERKLE_FANOUT ** tree.depth) throw new FleetError('FLEET_MERKLE_001', `from must be a bucket of a depth-${tree.depth} tree, got ${from}`);
  const request: MerkleVerifyRequest = {
    t: 'digests',
    v: MERKLE_VERIFY_VERSION,
    depth: tree.depth,
    root: tree.root,
    level: 1,
    parents: [0],
    digests: encode(tree.childDigests8(0, [0])),
    ...(from > 0 ? { from } : {}),
  };
  return { state: { tree, sent: request, listed: [], roundTrips: 0, from, next: undefined, limits: opts.limits ?? MERKLE_LIMITS }, request };
}

/** The responder's side: stateless, one response per request. Throws FLEET_MERKLE_001/003 on a bad request. */
export function answerVerify(tree: MerkleTree, request: MerkleVerifyRequest, limits: MerkleLimits = MERKLE_LIMITS): MerkleVerifyResponse {
  checkShape(tree, request.v, request.depth);
  if (request.t === 'digests') {
    if (request.root !== undefined && request.root === tree.root) return { t: 'equal' };
    if (!Number.isInteger(request.level) || request.level < 1 || request.level > tree.depth) throw bad(`level ${request.level}`);
    sortedUnique(request.parents, 'parents');
    const mine = tree.childDigests8(request.level - 1, request.parents);
    const theirs = decode(request.digests, mine.length, 'digests');
    const from = request.from ?? 0;
    if (!Number.isSafeInteger(from) || from < 0) throw bad(`from ${from}`);
    const differing = fromOn(differingChildren(request.parents, mine, theirs), tree.depth, request.level, from);
    if (request.level === tree.depth) return listing(tree, differing, limits);
    const parents = differing.slice(0, Math.max(1, limits.maxParents));
    const digests = encode(tree.childDigests8(request.level, parents));
    return parents.length < differing.length ? { t: 'digests', level: request.level + 1, parents, digests, more: true } : { t: 'digests', level: request.level + 1, parents, digests };
  }
  if (request.t === 'entries') {
    sortedUnique(request.buckets, 'buckets');
    if (request.counts.length !== request.buckets.length) throw bad('counts and buckets differ in length');
    let total = 0;
    for (const c of request.counts) {
      if (!Number.isInteger(c) || c < 0) throw bad(`count ${c}`);
      total += c;
    }
    const theirs = decode(request.entries, total * 2 * WIRE_BYTES, 'entries');
    const missingHere: string[] = [];
    const missingThere: number[] = [];
    const differing: number[] = [];
    const scratch = new Uint8Array(2 * WIRE_BYTES);
    let first = 0;
    let bytes = 0;
    let compared = 0;
    for (const [i, bucket] of request.buckets.entries()) {
      // Whole buckets, at least one, until the answer holds maxListBytes of keys and positions.
      if (i > 0 && bytes >= limits.maxListBytes) break;
      compared = i + 1;
      const count = request.counts[i] as number;
      // Their entries by key id (hex of the 8 bytes: a Map key), to their position in the listing.
      const byId = new Map<string, number>();
      for (let k = first; k < first + count; k++) byId.set(hex8(theirs, k * 2 * WIRE_BYTES), k);
      for (const { key, recordHash } of tree.bucketEntries(bucket)) {
        wireKeyId(key, scratch, 0);
        const k = byId.get(hex8(scratch, 0));
        if (k === undefined) {
          missingHere.push(key);
          bytes += Buffer.byteLength(JSON.stringify(key)) + 1; // as it travels: escaped, quoted
          continue;
        }
        byId.delete(hex8(scratch, 0));
        wireEntryHash(key, recordHash, scratch, WIRE_BYTES);
        if (!sameBytes(scratch, WIRE_BYTES, theirs, k * 2 * WIRE_BYTES + WIRE_BYTES)) {
          differing.push(k);
          bytes += 8;
        }
      }
      for (const k of byId.values()) {
        missingThere.push(k);
        bytes += 8;
      }
      first += count;
    }
    return compared < request.buckets.length ? { t: 'result', missingHere, missingThere, differing, compared } : { t: 'result', missingHere, missingThere, differing };
  }
  throw bad(`unknown request ${JSON.stringify((request as { t?: unknown }).t)}`);
}

function listing(tree: MerkleTree, buckets: readonly number[], limits: MerkleLimits): MerkleVerifyResponse {
  const counts: number[] = [];
  const keys: string[] = [];
  const recordHashes: string[] = [];
  let bytes = 0;
  for (const b of buckets) {
    // Whole buckets, at least one, until the listing holds maxListBytes.
    if (counts.length > 0 && bytes >= limits.maxListBytes) break;
    const entries = tree.bucketEntries(b);
    counts.push(entries.length);
    for (const e of entries) {
      keys.push(e.key);
      recordHashes.push(e.recordHash);
      bytes += Buffer.byteLength(JSON.stringify(e.key)) + 12; // the key as it travels, and its hash
    }
  }
  const hashes = new Uint8Array(keys.length * WIRE_BYTES);
  keys.forEach((key, i) => wireEntryHash(key, recordHashes[i] as string, hashes, i * WIRE_BYTES));
  const listed = buckets.slice(0, counts.length);
  return counts.length < buckets.length ? { t: 'listing', buckets: listed, counts, keys, hashes: encode(hashes), more: true } : { t: 'listing', buckets: listed, counts, keys, hashes: encode(hashes) };
}

function finish(state: MerkleVerifyState, result: { missingHere: string[]; missingThere: string[]; differing: string[] }, next = state.next): MerkleVerifyStep {
  result.missingHere.sort();
  result.missingThere.sort();
  result.differing.sort();
  return next === undefined ? { done: true, result, roundTrips: state.roundTrips + 1 } : { done: true, result, roundTrips: state.roundTrips + 1, next };
}

const earliest = (a: number | undefined, b: number): number => (a === undefined ? b : Math.min(a, b));

/** Keeps the nodes at `level` whose buckets reach `from` or past it. */
function fromOn(nodes: readonly number[], depth: number, level: number, from: number): number[] {
  const w = span(depth, level);
  return from === 0 ? [...nodes] : nodes.filter((n) => (n + 1) * w > from);
}

/** The initiator's side: reads one response, returns the next request or the result. */
export function stepVerify(state: MerkleVerifyState, response: MerkleVerifyResponse): MerkleVerifyStep {
  const { tree, sent } = state;
  const empty = { missingHere: [], missingThere: [], differing: [] };
  if (response.t === 'equal') {
    if (sent.t !== 'digests' || sent.root === undefined) throw bad('equal answers only the first request');
    return finish(state, empty);
  }
  if (response.t === 'digests') {
    if (sent.t !== 'digests' || response.level !== sent.level + 1 || response.level > tree.depth) throw bad(`digests for level ${response.level} out of turn`);
    sortedUnique(response.parents, 'parents');
    const mine = tree.childDigests8(response.level - 1, response.parents);
    const theirs = decode(response.digests, mine.length, 'digests');
    // The responder cut its parents: the buckets after the last one it sent were not compared.
    const last = response.parents[response.parents.length - 1];
    let cut = response.more === true && last !== undefined ? earliest(state.next, (last + 1) * span(tree.depth, response.level - 1)) : state.next;
    const differing = fromOn(differingChildren(response.parents, mine, theirs), tree.depth, response.level, state.from);
    // Nothing differs below a differing parent only on a 64-bit digest collision; the next verify retries.
    if (differing.length === 0) return finish(state, empty, cut);
    const step = { tree, roundTrips: state.roundTrips + 1, from: state.from, limits: state.limits };
    if (response.level === tree.depth) {
      const listed: string[] = [];
      const counts: number[] = [];
      const bytes: number[] = [];
      const scratch = new Uint8Array(2 * WIRE_BYTES);
      for (const b of differing) {
        // Whole buckets, at least one, until the listing holds maxListBytes (22 of base64url per entry).
        if (counts.length > 0 && (bytes.length / 3) * 4 >= state.limits.maxListBytes) {
          cut = earliest(cut, b);
          break;
        }
        const entries = tree.bucketEntries(b);
        counts.push(entries.length);
        for (const { key, recordHash } of entries) {
          listed.push(key);
          wireKeyId(key, scratch, 0);
          wireEntryHash(key, recordHash, scratch, WIRE_BYTES);
          bytes.push(...scratch);
        }
      }
      const buckets = differing.slice(0, counts.length);
      const request: MerkleVerifyRequest = { t: 'entries', v: MERKLE_VERIFY_VERSION, depth: tree.depth, buckets, counts, entries: encode(Uint8Array.from(bytes)) };
      return { done: false, state: { ...step, sent: request, listed, next: cut }, request };
    }
    const parents = differing.slice(0, Math.max(1, state.limits.maxParents));
    const dropped = differing[parents.length];
    if (dropped !== undefined) cut = earliest(cut, dropped * span(tree.depth, response.level));
    const request: MerkleVerifyRequest = {
      t: 'digests',
      v: MERKLE_VERIFY_VERSION,
      depth: tree.depth,
      level: response.level + 1,
      parents,
      digests: encode(tree.childDigests8(response.level, parents)),
      ...(state.from > 0 ? { from: state.from } : {}),
    };
    return { done: false, state: { ...step, sent: request, listed: [], next: cut }, request };
  }
  if (response.t === 'listing') {
    if (sent.t !== 'digests' || sent.level !== tree.depth) throw bad('listing out of turn');
    sortedUnique(response.buckets, 'buckets');
    if (response.counts.length !== response.buckets.length) throw bad('counts and buckets differ in length');
    const total = response.counts.reduce((a, c) => a + c, 0);
    if (total !== response.keys.length) throw bad('counts do not add up to keys');
    const theirs = decode(response.hashes, total * WIRE_BYTES, 'hashes');
    const result = { missingHere: [] as string[], missingThere: [] as string[], differing: [] as string[] };
    const scratch = new Uint8Array(WIRE_BYTES);
    const lastListed = response.buckets[response.buckets.length - 1];
    const cut = response.more === true && lastListed !== undefined ? earliest(state.next, lastListed + 1) : state.next;
    let k = 0;
    response.buckets.forEach((bucket, i) => {
      if (bucket < state.from) {
        k += response.counts[i] as number; // before this exchange's range: compared by an earlier one
        return;
      }
      const mine = new Map<string, string>();
      for (const e of tree.bucketEntries(bucket)) mine.set(e.key, e.recordHash);
      for (let n = 0; n < (response.counts[i] as number); n++, k++) {
        const key = response.keys[k] as string;
        const recordHash = mine.get(key);
        if (recordHash === undefined) {
          result.missingHere.push(key);
          continue;
        }
        mine.delete(key);
        wireEntryHash(key, recordHash, scratch, 0);
        if (!sameBytes(scratch, 0, theirs, k * WIRE_BYTES)) result.differing.push(key);
      }
      for (const key of mine.keys()) result.missingThere.push(key);
    });
    return finish(state, result, cut);
  }
  if (response.t === 'result') {
    if (sent.t !== 'entries') throw bad('result out of turn');
    const at = (i: number): string => {
      const key = state.listed[i];
      if (key === undefined) throw bad(`position ${i} outside the listing`);
      return key;
    };
    let cut = state.next;
    if (response.compared !== undefined) {
      const first = sent.buckets[response.compared];
      if (!Number.isInteger(response.compared) || response.compared < 1 || first === undefined) throw bad(`compared ${response.compared} of ${sent.buckets.length} buckets`);
      cut = earliest(cut, first);
    }
    return finish(
      state,
      {
        missingHere: [...response.missingHere],
        missingThere: response.missingThere.map(at),
        differing: response.differing.map(at),
      },
      cut,
    );
  }
  throw bad(`unknown response ${JSON.stringify((response as { t?: unknown }).t)}`);
}

/**
 * A whole verification, sans I/O: an exchange, then one from each `next` while the exchanges are cut;
 * returns the union of what they found. The driver sends each request it yields and passes the
 * response back (`gen.next(response)`): `diffTrees` in one process, a test agent over NATS.
 */
export function* verification(tree: MerkleTree, limits: MerkleLimits = MERKLE_LIMITS): Generator<MerkleVerifyRequest, { result: MerkleDiff; roundTrips: number }, MerkleVerifyResponse> {
  const found = { missingHere: new Set<string>(), missingThere: new Set<string>(), differing: new Set<string>() };
  let roundTrips = 0;
  for (let from: number | undefined = 0; from !== undefined; ) {
    let { state, request } = startVerify(tree, { from, limits });
    for (;;) {
      const step = stepVerify(state, yield request);
      if (step.done) {
        for (const k of ['missingHere', 'missingThere', 'differing'] as const) for (const key of step.result[k]) found[k].add(key);
        roundTrips += step.roundTrips;
        from = nextPass(from, step.next);
        break;
      }
      state = step.state;
      request = step.request;
    }
  }
  const sorted = (keys: Set<string>): string[] => [...keys].sort();
  return { result: { missingHere: sorted(found.missingHere), missingThere: sorted(found.missingThere), differing: sorted(found.differing) }, roundTrips };
}

/** Runs a whole verification between two trees in one process (tests, benchmarks, a local repair). */
export function diffTrees(
  here: MerkleTree,
  there: MerkleTree,
  onMessage?: (message: MerkleVerifyRequest | MerkleVerifyResponse) => void,
  limits: MerkleLimits = MERKLE_LIMITS,
): { result: MerkleDiff; roundTrips: number } {
  const run = verification(here, limits);
  for (let r = run.next(); ; ) {
    if (r.done === true) return r.value;
    onMessage?.(r.value);
    const response = answerVerify(there, r.value, limits);
    onMessage?.(response);
    r = run.next(response);
  }
}

/**
 * Where the next exchange of a verification starts: `next`, which must be past `from` (each exchange
 * compares at least one bucket more; a peer that ignores `from` would otherwise loop for ever).
 * FLEET_MERKLE_003 otherwise; undefined when the verification is done.
 */
export function nextPass(from: number, next: number | undefined): number | undefined {
  if (next !== undefined && next <= from) throw bad(`an exchange from bucket ${from} ended at bucket ${next}: no progress`);
  return next;
}
