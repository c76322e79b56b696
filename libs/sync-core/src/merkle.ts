/**
 * A Merkle tree over a keyed record set, for anti-entropy: two holders of the same scope compare
 * roots, then narrow down to the records that differ (see `merkle-verify.ts` for the exchange).
 *
 * Shape. A fixed fan-out of 16 and a fixed depth (default 4, so 16^4 = 65,536 leaf buckets). A
 * key's bucket is the top `4 * depth` bits of a hash of the key alone, so a record stays in its
 * bucket whatever else is inserted or deleted (fixed-size index chunks, as in the seed, shift every
 * later chunk on one insert and turn one difference into thousands). The depth is fixed rather than
 * derived from each side's size because the two sides of a divergence can differ wildly in size
 * (a fresh agent with 0 records against a server with 1,000,000), and trees of different shapes
 * cannot be compared node by node. 65,536 buckets hold ~15 records each at 1,000,000 records, which
 * keeps a differing bucket's listing small, and cost a fixed ~2.7 MB (digests, bucket table) for a tiny tree.
 *
 * Leaf digest. Each entry contributes e = sha256(len ":" key recordHash) (len: the key's UTF-8 byte
 * length, so the encoding is injective whatever the key or hash contains). A bucket's digest is the
 * sum of its entries' e, taken as eight 32-bit lanes, each mod 2^32. Addition, like XOR, is order
 * independent and invertible, so one upsert or remove costs one sha256 and eight additions, not a
 * rehash of the bucket. Addition over XOR: keys are unique per tree, so duplicates never occur, but
 * if one slipped in, XOR would make two copies cancel to nothing and the bucket would look like the
 * bucket without that key; with addition, two copies are 2e, still distinct. Both are linear, so a
 * party that controls many records could search for two entry sets with equal sums (generalised
 * birthday): the tree detects accidental divergence, it does not authenticate data (NATS credentials
 * and per-agent subjects do that). Inner nodes are sha256 of their 16 children, so that linearity
 * stays inside one bucket and the root commits to the bucket layout.
 *
 * Bucket hash. FNV-1a over the key's UTF-8 bytes with murmur3's finaliser, not sha256: it runs
 * several times faster, a build over 1,000,000 records would otherwise spend a quarter of its time
 * on it, and a cryptographic hash would not stop a skew attack anyway (finding keys that share a 16-bit
 * bucket prefix is cheap for any public hash). Skew only makes a bucket's listing longer.
 *
 * Memory. No per-entry object: one flat array per bucket holding (32-bit key hash, key, record hash)
 * triples (the strings are the caller's, not copies) and the digests in one Uint32Array per level.
 * A lookup scans its bucket (~15 entries at 1,000,000 records), comparing integers before strings;
 * that costs ~26 MiB of heap at 1,000,000 records, about half of a Map over all keys.
 */
import { hash } from 'node:crypto';
import { FleetError } from '@fleet/errors';

/** Children per inner node. 16 = one hex digit per level, so a node index reads as a key-hash prefix. */
export const MERKLE_FANOUT = 16;
/** The default depth: 65,536 buckets, sized for up to a few million records per scope. */
export const MERKLE_DEFAULT_DEPTH = 4;
/** The largest depth accepted: 16^6 buckets already cost 512 MB of leaf digests per tree. */
export const MERKLE_MAX_DEPTH = 6;
/** Digest width in 32-bit lanes (sha256 = 8 lanes of 4 bytes). */
const LANES = 8;

export interface MerkleEntry {
  readonly key: string;
  /** Hex sha256 of the record (canonical JSON), as computed by the caller. Compared as an opaque string. */
  readonly recordHash: string;
}

export interface MerkleOptions {
  /** Tree depth (1..6); both sides of an exchange must use the same. Default 4. */
  readonly depth?: number;
}

let lastUtf8Length = 0;

/**
 * The 32-bit bucket hash of a key (FNV-1a over UTF-8, murmur3 fmix32). Lone surrogates hash as
 * U+FFFD, as `TextEncoder` encodes them. Also leaves the key's UTF-8 length in `lastUtf8Length`,
 * which the entry hash needs, so the build walks each key once.
 */
function keyHash32(key: string): number {
  let h = 0x811c9dc5;
  let n = 0;
  for (let i = 0; i < key.length; i++) {
    let c = key.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      n += 1;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < key.length) {
      const d = key.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
      n += 2;
    } else if (c < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
      n += 3;
    } else {
      h = Math.imul(h ^ (0xf0 | (c >> 18)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
      n += 4;
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  lastUtf8Length = n;
  return h >>> 0;
}

/** sha256 as a 32-char binary string: read back 4 chars per lane, cheaper than parsing hex. */
function sha256Binary(data: string | Uint8Array): string {
  return hash('sha256', data, 'binary');
}

function entryHashBinary(key: string, utf8Length: number, recordHash: string): string {
  return sha256Binary(`${utf8Length}:${key}${recordHash}`);
}

function laneOf(bin: string, lane: number): number {
  const o = lane * 4;
  return ((bin.charCodeAt(o) << 24) | (bin.charCodeAt(o + 1) << 16) | (bin.charCodeAt(o + 2) << 8) | bin.charCodeAt(o + 3)) >>> 0;
}

/** The first 8 bytes of a binary digest string, for the wire. */
function binaryPrefix8(bin: string, out: Uint8Array, offset: number): void {
  for (let i = 0; i < 8; i++) out[offset + i] = bin.charCodeAt(i);
}

/** A bucket's entries, flattened: [keyHash32 | 0, key, recordHash, ...]. */
type Slots = (number | string)[];

/** Position of `key` in `slots`, or -1. */
function find(slots: Slots, key: string, h: number): number {
  for (let i = 0; i < slots.length; i += 3) if (slots[i] === h && slots[i + 1] === key) return i;
  return -1;
}

function checkDepth(depth: number): number {
  if (!Number.isInteger(depth) || depth < 1 || depth > MERKLE_MAX_DEPTH) {
    throw new FleetError('FLEET_MERKLE_001', `depth must be an integer in 1..${MERKLE_MAX_DEPTH}, got ${depth}`);
  }
  return depth;
}

export class MerkleTree {
  readonly depth: number;
  /** levels[d] holds 16^d digests of 8 lanes; levels[depth] are the bucket sums. */
  private readonly levels: Uint32Array[];
  /**
   * Per bucket, the entries flattened as [keyHash32 | 0, key, recordHash, ...]: one array per bucket
   * instead of three, and the 32-bit hash (a small integer, stored unboxed) turns most key
   * comparisons into an integer comparison, since keys often share long prefixes.
   */
  private readonly buckets: (Slots | undefined)[];
  private readonly shift: number;
  private count = 0;
  /** Buckets changed since the inner levels were last recomputed: a batch of updates rehashes each path once. */
  private dirty: number[] = [];
  private readonly dirtyMark: Uint8Array;
  /** 16 children x 32 bytes, reused for every inner hash. */
  private readonly scratch = new Uint8Array(MERKLE_FANOUT * LANES * 4);
  private readonly scratchView = new DataView(this.scratch.buffer);

  private constructor(depth: number) {
    this.depth = checkDepth(depth);
    this.levels = [];
    for (let d = 0; d <= depth; d++) {
      const level = new Uint32Array(MERKLE_FANOUT ** d * LANES);
      // An inner node over empty buckets only has a fixed hash per height: start every node with it, so a
      // build or an update hashes just the paths above non-empty buckets (a small collection's tree
      // costs a few hashes, not all 4,369 inner nodes of depth 4).
      if (d < depth) {
        level.set(emptyNodeLanes(depth - d), 0);
        for (let filled = LANES; filled < level.length; filled *= 2) level.copyWithin(filled, 0, Math.min(filled, level.length - filled));
      }
      this.levels.push(level);
    }
    const buckets = MERKLE_FANOUT ** depth;
    this.buckets = new Array<Slots | undefined>(buckets).fill(undefined);
    this.dirtyMark = new Uint8Array(buckets);
    this.shift = 32 - 4 * depth;
  }

  /**
   * Builds a tree; throws FLEET_MERKLE_002 if a key repeats (the input must be a set). Two passes:
   * the first counts each bucket so the second fills arrays allocated at their final size, which
   * halves the build time at 1,000,000 records against growing 65,536 arrays by push.
   */
  static build(entries: Iterable<MerkleEntry>, opts: MerkleOptions = {}): MerkleTree {
    const tree = new MerkleTree(opts.depth ?? MERKLE_DEFAULT_DEPTH);
    const list: readonly MerkleEntry[] = Array.isArray(entries) ? (entries as readonly MerkleEntry[]) : [...entries];
    const n = list.length;
    const hashes = new Int32Array(n);
    const lengths = new Uint32Array(n);
    const counts = new Uint32Array(tree.buckets.length);
    for (let i = 0; i < n; i++) {
      const h = keyHash32((list[i] as MerkleEntry).key);
      hashes[i] = h;
      lengths[i] = lastUtf8Length;
      counts[h >>> tree.shift]! += 1;
    }
    const filled = new Uint32Array(tree.buckets.length);
    const leaf = tree.levels[tree.depth] as Uint32Array;
    for (let i = 0; i < n; i++) {
      const { key, recordHash } = list[i] as MerkleEntry;
      const h = hashes[i] as number;
      const b = h >>> tree.shift;
      const slots = (tree.buckets[b] ??= new Array<number | string>((counts[b] as number) * 3));
      const end = filled[b] as number;
      for (let j = 0; j < end; j += 3) {
        if (slots[j] === h && slots[j + 1] === key) throw new FleetError('FLEET_MERKLE_002', `duplicate key ${JSON.stringify(key)}`);
      }
      slots[end] = h;
      slots[end + 1] = key;
      slots[end + 2] = recordHash;
      filled[b] = end + 3;
      tree.addEntry(leaf, b * LANES, entryHashBinary(key, lengths[i] as number, recordHash), 1);
    }
    tree.count = n;
    if (n >= tree.buckets.length) tree.rehashAll();
    else {
      for (let b = 0; b < counts.length; b++) if ((counts[b] as number) > 0) tree.markDirty(b);
      tree.flush();
    }
    return tree;
  }

  /** An empty tree of the given shape. */
  static empty(opts: MerkleOptions = {}): MerkleTree {
    return MerkleTree.build([], opts);
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** Number of leaf buckets (16^depth). */
  get bucketCount(): number {
    return MERKLE_FANOUT ** this.depth;
  }

  /** The bucket a key falls in. */
  bucketOf(key: string): number {
    return keyHash32(key) >>> this.shift;
  }

  get(key: string): string | undefined {
    const h = keyHash32(key);
    const slots = this.buckets[h >>> this.shift];
    if (slots === undefined) return undefined;
    const i = find(slots, key, h | 0);
    return i < 0 ? undefined : (slots[i + 2] as string);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Inserts or replaces one entry. */
  upsert(key: string, recordHash: string): void {
    const h = keyHash32(key);
    const len = lastUtf8Length;
    const b = h >>> this.shift;
    const leaf = this.levels[this.depth] as Uint32Array;
    let slots = this.buckets[b];
    if (slots === undefined) slots = this.buckets[b] = [];
    const i = find(slots, key, h | 0);
    if (i >= 0) {
      const old = slots[i + 2] as string;
      if (old === recordHash) return;
      this.addEntry(leaf, b * LANES, entryHashBinary(key, len, old), -1);
      slots[i + 2] = recordHash;
    } else {
      slots.push(h | 0, key, recordHash);
      this.count++;
    }
    this.addEntry(leaf, b * LANES, entryHashBinary(key, len, recordHash), 1);
    this.markDirty(b);
  }

  /** Removes one entry; returns whether it was there. */
  remove(key: string): boolean {
    const h = keyHash32(key);
    const len = lastUtf8Length;
    const b = h >>> this.shift;
    const slots = this.buckets[b];
    if (slots === undefined) return false;
    const i = find(slots, key, h | 0);
    if (i < 0) return false;
    const old = slots[i + 2] as string;
    // Swap-remove: order inside a bucket carries no meaning, the digest is a sum.
    const last = slots.length - 3;
    slots[i] = slots[last] as number;
    slots[i + 1] = slots[last + 1] as string;
    slots[i + 2] = slots[last + 2] as string;
    slots.length = last;
    if (last === 0) this.buckets[b] = undefined;
    this.count--;
    this.addEntry(this.levels[this.depth] as Uint32Array, b * LANES, entryHashBinary(key, len, old), -1);
    this.markDirty(b);
    return true;
  }

  /** The root digest, 64 hex chars. */
  get root(): string {
    return this.digestHex(0, 0);
  }

  /** One node's full digest as hex (level 0 is the root, level `depth` the buckets). */
  digestHex(level: number, index: number): string {
    this.checkNode(level, index);
    this.flush();
    const lanes = this.levels[level] as Uint32Array;
    let s = '';
    for (let j = 0; j < LANES; j++) s += (lanes[index * LANES + j] as number).toString(16).padStart(8, '0');
    return s;
  }

  /**
   * Writes the first 8 bytes of each child's digest of the given parents (16 per parent, in order)
   * into a new array: what the wire carries for one level.
   */
  childDigests8(parentLevel: number, parents: readonly number[]): Uint8Array {
    this.flush();
    const level = parentLevel + 1;
    const lanes = this.levels[level];
    if (lanes === undefined || parentLevel < 0) {
      throw new FleetError('FLEET_MERKLE_003', `no level ${level} in a tree of depth ${this.depth}`);
    }
    const out = new Uint8Array(parents.length * MERKLE_FANOUT * 8);
    const view = new DataView(out.buffer);
    let o = 0;
    for (const p of parents) {
      this.checkNode(parentLevel, p);
      for (let c = 0; c < MERKLE_FANOUT; c++) {
        const n = (p * MERKLE_FANOUT + c) * LANES;
        view.setUint32(o, lanes[n] as number);
        view.setUint32(o + 4, lanes[n + 1] as number);
        o += 8;
      }
    }
    return out;
  }

  /** The entries of one bucket, in no particular order. */
  bucketEntries(bucket: number): MerkleEntry[] {
    this.checkNode(this.depth, bucket);
    const slots = this.buckets[bucket];
    const out: MerkleEntry[] = [];
    if (slots !== undefined) for (let i = 0; i < slots.length; i += 3) out.push({ key: slots[i + 1] as string, recordHash: slots[i + 2] as string });
    return out;
  }

  /** All entries, bucket by bucket. */
  *entries(): IterableIterator<MerkleEntry> {
    for (let b = 0; b < this.buckets.length; b++) yield* this.bucketEntries(b);
  }

  private checkNode(level: number, index: number): void {
    if (!Number.isInteger(level) || level < 0 || level > this.depth || !Number.isInteger(index) || index < 0 || index >= MERKLE_FANOUT ** level) {
      throw new FleetError('FLEET_MERKLE_003', `no node ${index} at level ${level} in a tree of depth ${this.depth}`);
    }
  }

  private addEntry(leaf: Uint32Array, o: number, bin: string, sign: 1 | -1): void {
    // Uint32Array stores reduce mod 2^32, which is the lane arithmetic we want.
    for (let j = 0; j < LANES; j++) leaf[o + j] = (leaf[o + j] as number) + sign * laneOf(bin, j);
  }

  private markDirty(bucket: number): void {
    if (this.dirtyMark[bucket] === 0) {
      this.dirtyMark[bucket] = 1;
      this.dirty.push(bucket);
    }
  }

  private hashNode(level: number, index: number): void {
    const child = this.levels[level + 1] as Uint32Array;
    const base = index * MERKLE_FANOUT * LANES;
    for (let j = 0; j < MERKLE_FANOUT * LANES; j++) this.scratchView.setUint32(j * 4, child[base + j] as number);
    const bin = sha256Binary(this.scratch);
    const lanes = this.levels[level] as Uint32Array;
    for (let j = 0; j < LANES; j++) lanes[index * LANES + j] = laneOf(bin, j);
  }

  private rehashAll(): void {
    for (let d = this.depth - 1; d >= 0; d--) {
      const n = MERKLE_FANOUT ** d;
      for (let i = 0; i < n; i++) this.hashNode(d, i);
    }
  }

  /** Recomputes the inner nodes above changed buckets, each once. */
  private flush(): void {
    if (this.dirty.length === 0) return;
    let indexes = this.dirty;
    for (const b of indexes) this.dirtyMark[b] = 0;
    this.dirty = [];
    for (let d = this.depth - 1; d >= 0; d--) {
      const parents = new Set<number>();
      for (const i of indexes) parents.add(Math.floor(i / MERKLE_FANOUT));
      for (const p of parents) this.hashNode(d, p);
      indexes = [...parents];
    }
  }
}

const emptyByHeight: Uint32Array[] = [new Uint32Array(LANES)];

/**
 * The lanes of an inner node whose buckets are all empty, by its height above the leaves (1 = parent of
 * leaves): the hash of 16 copies of the empty node one height below (an empty bucket's lanes are zero).
 * The same values a full rehash computes, so roots do not change; computed once per height.
 */
function emptyNodeLanes(height: number): Uint32Array {
  for (let h = emptyByHeight.length; h <= height; h++) {
    const below = emptyByHeight[h - 1] as Uint32Array;
    const block = new Uint8Array(MERKLE_FANOUT * LANES * 4);
    const view = new DataView(block.buffer);
    for (let c = 0; c < MERKLE_FANOUT; c++) for (let j = 0; j < LANES; j++) view.setUint32((c * LANES + j) * 4, below[j] as number);
    const bin = sha256Binary(block);
    const lanes = new Uint32Array(LANES);
    for (let j = 0; j < LANES; j++) lanes[j] = laneOf(bin, j);
    emptyByHeight.push(lanes);
  }
  return emptyByHeight[height] as Uint32Array;
}

/**
 * The wire key id of a record key: 8 bytes of sha256(key), written into `out` at `offset`. Computed
 * only for the few buckets being listed, so it is not stored. Keys in one bucket share their bucket
 * hash prefix but this is an unrelated hash, so all 64 bits separate keys within a bucket.
 */
export function wireKeyId(key: string, out: Uint8Array, offset: number): void {
  binaryPrefix8(sha256Binary(key), out, offset);
}

/** The first 8 bytes of an entry's contribution: equal on both sides iff key and record hash are (but for 2^-64). */
export function wireEntryHash(key: string, recordHash: string, out: Uint8Array, offset: number): void {
  keyHash32(key);
  binaryPrefix8(entryHashBinary(key, lastUtf8Length, recordHash), out, offset);
}
