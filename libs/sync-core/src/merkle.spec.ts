import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { isFleetError } from '@fleet/errors';
import { MERKLE_DEFAULT_DEPTH, MerkleTree } from './merkle';
import type { MerkleEntry } from './merkle';

const rh = (s: string): string => createHash('sha256').update(s).digest('hex');
const entry = (key: string, v = key): MerkleEntry => ({ key, recordHash: rh(v) });

/** Keys mixing ASCII, non-BMP and lone surrogates, so the UTF-8 walk of the bucket hash is exercised. */
const keyArb = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 6 }), fc.constantFrom('', 'a', 'é', '😀', '\ud800', 'x\udc00'));
const entriesArb = fc.uniqueArray(fc.record({ key: keyArb, recordHash: fc.string({ maxLength: 3 }).map(rh) }), { selector: (e) => e.key, maxLength: 60 });
const depthArb = fc.integer({ min: 1, max: 3 });

describe('MerkleTree', () => {
  it('builds an empty tree with a fixed root per depth', () => {
    const a = MerkleTree.empty();
    expect(a.depth).toBe(MERKLE_DEFAULT_DEPTH);
    expect(a.size).toBe(0);
    expect(a.root).toMatch(/^[0-9a-f]{64}$/);
    expect(MerkleTree.build([]).root).toBe(a.root);
    expect(MerkleTree.empty({ depth: 2 }).root).not.toBe(a.root);
  });

  it('roots are pinned: what agents and servers of earlier versions compute (empty subtrees are precomputed, not rehashed)', () => {
    const empty = ['076a27c79e5ace2a3d47f9dd2e83e4ff6ea8872b3c2218f66c92b89b55f36560', 'ab60848a6dc1d5a37df96328ebeeac89aa6b45191ac1eed6abc8144e77d9ac5e', '5eb09c957816557448ba4013d3c734965f098d0bf76cdc9d9f8f5b31f7c557b3', 'b65906575bf94fb8c2940976bb95c9931bf1098dfe40ffcd95245fb2cc488bb1', 'cf3b32fe885997fb2fa90190a4b2f1920d9bdb36031b0bd5c1a95a4eae48104e'];
    empty.forEach((root, i) => expect(MerkleTree.empty({ depth: i + 1 }).root).toBe(root));
    const five = ['a', 'b', 'host-1/pkg', '😀', 'z'.repeat(40)].map((k) => entry(k));
    expect(MerkleTree.build(five).root).toBe('c1e0210f49a4f2764c966c6a701e27df837efea2cd1b5ac06d2a2c3ff3b8c244');
    expect(MerkleTree.build(five, { depth: 5 }).root).toBe('4ae50adf29c26b8d84a3335988906390f0ab17ef425ae6709c7a5c108226f2ae');
    // more entries than buckets at depth 3 (4,096): the full rehash path
    const many = Array.from({ length: 5000 }, (_, i) => ({ key: `k${i}`, recordHash: rh(String(i)) }));
    expect(MerkleTree.build(many).root).toBe('761ea4228b4c2c11f7e41a770d8147af2cd0ff1975ec22f13f47b294bc85aa75');
    expect(MerkleTree.build(many, { depth: 3 }).root).toBe(MerkleTree.build(many.slice().reverse(), { depth: 3 }).root);
  });

  it('looks entries up, and answers bucket queries', () => {
    const t = MerkleTree.build([entry('a'), entry('b'), entry('c')], { depth: 2 });
    expect(t.size).toBe(3);
    expect(t.get('a')).toBe(rh('a'));
    expect(t.has('z')).toBe(false);
    expect(t.bucketEntries(t.bucketOf('b'))).toContainEqual(entry('b'));
    expect([...t.entries()].map((e) => e.key).sort()).toEqual(['a', 'b', 'c']);
    expect(t.bucketCount).toBe(256);
  });

  it('rejects a duplicate key and a bad depth', () => {
    expect(() => MerkleTree.build([entry('a'), entry('a', 'other')])).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_002' }));
    for (const depth of [0, 7, 1.5]) {
      try {
        MerkleTree.empty({ depth });
        throw new Error('accepted');
      } catch (e) {
        expect(isFleetError(e, 'FLEET_MERKLE_001')).toBe(true);
      }
    }
  });

  it('rejects queries for nodes that do not exist', () => {
    const t = MerkleTree.empty({ depth: 1 });
    expect(() => t.digestHex(2, 0)).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
    expect(() => t.childDigests8(0, [1])).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
    expect(() => t.childDigests8(1, [0])).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
    expect(() => t.bucketEntries(16)).toThrow(expect.objectContaining({ code: 'FLEET_MERKLE_003' }));
  });

  it('changes the root when one record changes, and restores it when the change is undone', () => {
    const t = MerkleTree.build([entry('a'), entry('b')]);
    const root = t.root;
    t.upsert('a', rh('a2'));
    expect(t.root).not.toBe(root);
    t.upsert('a', rh('a'));
    expect(t.root).toBe(root);
    t.upsert('c', rh('c'));
    expect(t.size).toBe(3);
    expect(t.remove('c')).toBe(true);
    expect(t.remove('c')).toBe(false);
    expect(t.root).toBe(root);
    expect(t.size).toBe(2);
  });

  it('binds each record hash to its key (swapping two records changes the root)', () => {
    const a = MerkleTree.build([{ key: 'x', recordHash: rh('1') }, { key: 'y', recordHash: rh('2') }], { depth: 1 });
    const b = MerkleTree.build([{ key: 'x', recordHash: rh('2') }, { key: 'y', recordHash: rh('1') }], { depth: 1 });
    expect(a.root).not.toBe(b.root);
  });

  it('property: the root does not depend on insertion order', () => {
    fc.assert(
      fc.property(entriesArb, depthArb, fc.infiniteStream(fc.nat()), (entries, depth, seeds) => {
        const shuffled = entries
          .map((e) => ({ e, s: seeds.next().value as number }))
          .sort((x, y) => x.s - y.s)
          .map((x) => x.e);
        expect(MerkleTree.build(shuffled, { depth }).root).toBe(MerkleTree.build(entries, { depth }).root);
      }),
    );
  });

  it('property: incremental upserts and removes give the root of a fresh build', () => {
    const opArb = fc.oneof(
      fc.record({ op: fc.constant('upsert' as const), key: keyArb, v: fc.string({ maxLength: 3 }) }),
      fc.record({ op: fc.constant('remove' as const), key: keyArb }),
    );
    fc.assert(
      fc.property(entriesArb, fc.array(opArb, { maxLength: 40 }), depthArb, (entries, ops, depth) => {
        const tree = MerkleTree.build(entries, { depth });
        const model = new Map(entries.map((e) => [e.key, e.recordHash]));
        for (const op of ops) {
          if (op.op === 'upsert') {
            tree.upsert(op.key, rh(op.v));
            model.set(op.key, rh(op.v));
          } else {
            expect(tree.remove(op.key)).toBe(model.delete(op.key));
          }
          // Reading the root between some operations exercises the lazy rehash of dirty paths.
          if (op.key.length % 2 === 0) void tree.root;
        }
        const fresh = MerkleTree.build([...model].map(([key, recordHash]) => ({ key, recordHash })), { depth });
        expect(tree.size).toBe(model.size);
        expect(tree.root).toBe(fresh.root);
        for (let level = 0; level < depth; level++) {
          const all = Array.from({ length: 16 ** level }, (_, i) => i);
          expect(tree.childDigests8(level, all)).toEqual(fresh.childDigests8(level, all));
        }
      }),
    );
  });
});
