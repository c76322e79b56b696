import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { MerkleTree } from './merkle';
import type { MerkleEntry } from './merkle';
import { answerVerify, diffTrees, nextPass, startVerify, stepVerify } from './merkle-verify';
import type { MerkleDiff, MerkleLimits, MerkleVerifyRequest, MerkleVerifyResponse } from './merkle-verify';

const rh = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The diff computed directly from two key -> hash maps: what the exchange must report. */
function expectedDiff(here: Map<string, string>, there: Map<string, string>): MerkleDiff {
  const missingHere = [...there.keys()].filter((k) => !here.has(k)).sort();
  const missingThere = [...here.keys()].filter((k) => !there.has(k)).sort();
  const differing = [...here].filter(([k, h]) => there.has(k) && there.get(k) !== h).map(([k]) => k).sort();
  return { missingHere, missingThere, differing };
}

const toEntries = (m: Map<string, string>): MerkleEntry[] => [...m].map(([key, recordHash]) => ({ key, recordHash }));

/** Runs the exchange through JSON, as the wire would, and counts the bytes (and the largest message). */
function exchange(
  here: MerkleTree,
  there: MerkleTree,
  opts: { from?: number; limits?: MerkleLimits } = {},
): { result: MerkleDiff; roundTrips: number; bytes: number; largest: number; next: number | undefined } {
  let bytes = 0;
  let largest = 0;
  const wire = <T>(m: T): T => {
    const s = JSON.stringify(m);
    bytes += Buffer.byteLength(s);
    largest = Math.max(largest, Buffer.byteLength(s));
    return JSON.parse(s) as T;
  };
  const start = startVerify(here, opts);
  let state = start.state;
  let request = wire<MerkleVerifyRequest>(start.request);
  for (;;) {
    const response = wire<MerkleVerifyResponse>(answerVerify(there, request, opts.limits));
    const step = stepVerify(state, response);
    if (step.done) return { result: step.result, roundTrips: step.roundTrips, bytes, largest, next: step.next };
    state = step.state;
    request = wire(step.request);
  }
}

/** Exchanges from bucket 0, then from each `next`, until one is not cut: the union of their diffs. */
function exchangeAll(here: MerkleTree, there: MerkleTree, limits?: MerkleLimits): { result: MerkleDiff; passes: number; largest: number } {
  const union = { missingHere: new Set<string>(), missingThere: new Set<string>(), differing: new Set<string>() };
  let from: number | undefined = 0;
  let passes = 0;
  let largest = 0;
  while (from !== undefined) {
    const r = exchange(here, there, { from, ...(limits === undefined ? {} : { limits }) });
    passes += 1;
    largest = Math.max(largest, r.largest);
    for (const k of r.result.missingHere) union.missingHere.add(k);
    for (const k of r.result.missingThere) union.missingThere.add(k);
    for (const k of r.result.differing) union.differing.add(k);
    if (r.next !== undefined) expect(r.next).toBeGreaterThan(from); // every pass gets further
    from = r.next;
  }
  return { result: { missingHere: [...union.missingHere].sort(), missingThere: [...union.missingThere].sort(), differing: [...union.differing].sort() }, passes, largest };
}

describe('Merkle verify exchange', () => {
  // Small key space so the two sides overlap a lot; values decide whether an entry differs.
  const sideArb = fc.dictionary(fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom('😀', 'é', '\ud800')), fc.integer({ min: 0, max: 3 }), { maxKeys: 80 });

  it('property: reports exactly the keys that differ, at every depth (odd and even)', () => {
    fc.assert(
      fc.property(sideArb, sideArb, fc.integer({ min: 1, max: 4 }), (a, b, depth) => {
        const here = new Map(Object.entries(a).map(([k, v]) => [k, rh(String(v))]));
        const there = new Map(Object.entries(b).map(([k, v]) => [k, rh(String(v))]));
        const { result } = exchange(MerkleTree.build(toEntries(here), { depth }), MerkleTree.build(toEntries(there), { depth }));
        expect(result).toEqual(expectedDiff(here, there));
      }),
      { numRuns: 150 },
    );
  });

  it('property: a side derived from the other by a few edits diffs to exactly those edits', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 0, maxLength: 300 }),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom('drop', 'edit', 'add')), { maxLength: 12 }),
        fc.integer({ min: 1, max: 3 }),
        (keys, edits, depth) => {
          const here = new Map(keys.map((k) => [k, rh(k)]));
          const there = new Map(here);
          for (const [n, kind] of edits) {
            const k = keys.length === 0 || kind === 'add' ? `new-${n}` : (keys[n % keys.length] as string);
            if (kind === 'drop') there.delete(k);
            else there.set(k, rh(`${k}#${n}`));
          }
          const { result } = exchange(MerkleTree.build(toEntries(here), { depth }), MerkleTree.build(toEntries(there), { depth }));
          expect(result).toEqual(expectedDiff(here, there));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('property: with messages cut to tiny limits, the passes from each `next` report exactly the keys that differ', () => {
    fc.assert(
      fc.property(sideArb, sideArb, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 300 }), (a, b, depth, maxParents, maxListBytes) => {
        const here = new Map(Object.entries(a).map(([k, v]) => [k, rh(String(v))]));
        const there = new Map(Object.entries(b).map(([k, v]) => [k, rh(String(v))]));
        const { result } = exchangeAll(MerkleTree.build(toEntries(here), { depth }), MerkleTree.build(toEntries(there), { depth }), { maxParents, maxListBytes });
        expect(result).toEqual(expectedDiff(here, there));
      }),
      { numRuns: 200 },
    );
  });

  it('a side that lost 60,000 of 100,000 records: every message stays under 256 KiB, the passes find every one', () => {
    const entries: MerkleEntry[] = [];
    for (let i = 0; i < 100_000; i++) entries.push({ key: `inventory/package-${i}`, recordHash: rh(String(i)) });
    const server = MerkleTree.build(entries);
    const agent = MerkleTree.build(entries.filter((_, i) => i % 5 >= 3)); // 40,000 left
    const one = exchange(agent, server);
    expect(one.next).toBeDefined(); // one exchange could not carry it all
    expect(one.largest).toBeLessThan(256 * 1024);
    const all = exchangeAll(agent, server);
    expect(all.result.missingHere).toHaveLength(60_000);
    expect(all.result.missingThere).toEqual([]);
    expect(all.result.differing).toEqual([]);
    expect(all.largest).toBeLessThan(256 * 1024);
    expect(all.passes).toBeGreaterThan(1);
    // The other way round: the agent holds 60,000 the server lacks.
    const back = exchangeAll(server, agent);
    expect(back.result.missingThere).toHaveLength(60_000);
    expect(back.largest).toBeLessThan(256 * 1024);
  });

  it('diffTrees runs the passes itself; a peer that makes no progress (ignores `from`) is refused, not looped on', () => {
    const entries: MerkleEntry[] = [];
    for (let i = 0; i < 3000; i++) entries.push({ key: `k${i}`, recordHash: rh(String(i)) });
    const limits = { maxParents: 4, maxListBytes: 512 };
    const r = diffTrees(MerkleTree.build(entries.slice(0, 1000)), MerkleTree.build(entries), undefined, limits);
    expect(r.result.missingHere).toHaveLength(2000);
    expect(r.roundTrips).toBeGreaterThan(3);
    expect(nextPass(10, undefined)).toBeUndefined();
    expect(nextPass(10, 11)).toBe(11);
    expect(() => nextPass(10, 10)).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
  });

  it('stops after one round trip when the roots match', () => {
    const entries = ['a', 'b', 'c'].map((k) => ({ key: k, recordHash: rh(k) }));
    const r = exchange(MerkleTree.build(entries), MerkleTree.build([...entries].reverse()));
    expect(r.result).toEqual({ missingHere: [], missingThere: [], differing: [] });
    expect(r.roundTrips).toBe(1);
  });

  it('handles empty and one-sided sets', () => {
    const full = MerkleTree.build(['a', 'b'].map((k) => ({ key: k, recordHash: rh(k) })));
    expect(exchange(MerkleTree.empty(), full).result).toEqual({ missingHere: ['a', 'b'], missingThere: [], differing: [] });
    expect(exchange(full, MerkleTree.empty()).result).toEqual({ missingHere: [], missingThere: ['a', 'b'], differing: [] });
    expect(exchange(MerkleTree.empty(), MerkleTree.empty()).roundTrips).toBe(1);
  });

  it('sends bytes that grow with the differences, not the data (20,000 records, 10 differences)', () => {
    const n = 20_000;
    const entries: MerkleEntry[] = [];
    for (let i = 0; i < n; i++) entries.push({ key: `inventory/package-${i}`, recordHash: rh(String(i)) });
    const here = MerkleTree.build(entries);
    const there = MerkleTree.build(entries);
    for (let i = 0; i < 4; i++) there.upsert(`inventory/package-${i * 997}`, rh('changed'));
    for (let i = 0; i < 3; i++) there.remove(`inventory/package-${i * 1009 + 1}`);
    for (let i = 0; i < 3; i++) there.upsert(`inventory/new-${i}`, rh('new'));
    const r = exchange(here, there);
    expect(r.result.differing).toHaveLength(4);
    expect(r.result.missingThere).toHaveLength(3);
    expect(r.result.missingHere).toEqual(['inventory/new-0', 'inventory/new-1', 'inventory/new-2']);
    expect(r.roundTrips).toBe(3);
    expect(r.bytes).toBeLessThan(8 * 1024);
  });

  it('refuses a peer of another depth or version, and malformed messages', () => {
    const a = MerkleTree.build([{ key: 'a', recordHash: rh('a') }], { depth: 2 });
    const b = MerkleTree.build([{ key: 'b', recordHash: rh('b') }], { depth: 3 });
    const { request, state } = startVerify(a);
    expect(() => answerVerify(b, request)).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_001' }));
    expect(() => answerVerify(a, { ...request, v: 99 })).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_001' }));
    expect(() => answerVerify(a, { ...request, root: undefined, digests: 'AAAA' } as unknown as MerkleVerifyRequest)).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
    expect(() => answerVerify(a, { ...request, root: undefined, parents: [5] } as unknown as MerkleVerifyRequest)).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
    expect(() => stepVerify(state, { t: 'result', missingHere: [], missingThere: [], differing: [] })).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
    expect(() => stepVerify(state, { t: 'digests', level: 5, parents: [], digests: '' })).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
  });

  it('diffTrees reports every message it exchanges', () => {
    const a = MerkleTree.build([{ key: 'a', recordHash: rh('a') }], { depth: 2 });
    const b = MerkleTree.build([{ key: 'a', recordHash: rh('b') }], { depth: 2 });
    const seen: unknown[] = [];
    const r = diffTrees(a, b, (m) => seen.push(m));
    expect(r.result.differing).toEqual(['a']);
    expect(seen).toHaveLength(2 * r.roundTrips);
  });
});
