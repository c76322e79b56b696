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
