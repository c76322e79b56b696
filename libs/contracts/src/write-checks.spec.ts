/**
 * The yes/no checks the agent store runs on every local write (`isValidCollection`, `isValidKey`,
 * `isValidFields`) against the zod schemas that define the rules: on every input they must say yes
 * exactly when the schema accepts, so the store may skip the schema for the common case and still
 * refuse (with the schema's reason) everything it refused before.
 */
import fc from 'fast-check';
import { CollectionSchema, isValidCollection, isValidKey, KeySchema } from './change';
import { FieldsSchema, isValidFields } from './json-value';
import { MAX_COLLECTION_LENGTH, MAX_FIELD_NAME_BYTES, MAX_FIELD_VALUE_BYTES, MAX_FIELDS_PER_CHANGE, MAX_JSON_DEPTH, MAX_KEY_BYTES } from './limits';

let deep: unknown = 'x';
for (let i = 0; i <= MAX_JSON_DEPTH; i++) deep = [deep];

const oddString = fc.oneof(
  fc.constantFrom(
    '',
    'a',
    'packages',
    'a.b:c-d_e',
    '_a',
    '-a',
    'a b',
    'a/b',
    'é',
    'a\u0000b',
    'a\ud800',
    '\udc00a',
    '\ud83d\ude00',
    '__proto__',
    'c'.repeat(MAX_COLLECTION_LENGTH),
    'c'.repeat(MAX_COLLECTION_LENGTH + 1),
    'k'.repeat(MAX_KEY_BYTES),
    'k'.repeat(MAX_KEY_BYTES + 1),
    'é'.repeat(MAX_KEY_BYTES / 2),
    'é'.repeat(MAX_KEY_BYTES / 2 + 1),
    '\ud83d\ude00'.repeat(MAX_KEY_BYTES / 4 + 1),
  ),
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }),
  fc.stringMatching(/^[A-Za-z0-9_.:\- ]{0,140}$/),
);
const oddValue: fc.Arbitrary<unknown> = fc.oneof(
  oddString,
  fc.constantFrom<unknown>(undefined, null, 1, Number.NaN, Number.POSITIVE_INFINITY, [], {}, new Date(0), new Map(), [1, , 3], deep, 'v'.repeat(MAX_FIELD_VALUE_BYTES + 1)),
  fc.jsonValue(),
  fc.anything(),
);
const oddFields: fc.Arbitrary<unknown> = fc.oneof(
  fc.dictionary(oddString, oddValue, { maxKeys: 6 }),
  fc.dictionary(fc.constantFrom('a', 'b', 'n'.repeat(MAX_FIELD_NAME_BYTES + 1), 'x\u0000'), fc.jsonValue(), { maxKeys: 4 }),
  fc.constantFrom<unknown>(
    JSON.parse('{"__proto__":1}'),
    Object.create(null),
    Object.fromEntries(Array.from({ length: MAX_FIELDS_PER_CHANGE + 1 }, (_, i) => [`f${i}`, i])),
    Object.fromEntries(Array.from({ length: MAX_FIELDS_PER_CHANGE }, (_, i) => [`f${i}`, i])),
    [],
    null,
  ),
  oddValue,
);

describe('the write path checks agree with the schemas', () => {
  it('isValidCollection = CollectionSchema accepts', () => {
    fc.assert(fc.property(fc.oneof(oddString, oddValue), (v) => isValidCollection(v) === CollectionSchema.safeParse(v).success), { numRuns: 3000 });
  });

  it('isValidKey = KeySchema accepts', () => {
    fc.assert(fc.property(fc.oneof(oddString, oddValue), (v) => isValidKey(v) === KeySchema.safeParse(v).success), { numRuns: 3000 });
  });

  it('isValidFields = FieldsSchema accepts', () => {
    fc.assert(fc.property(oddFields, (v) => isValidFields(v) === FieldsSchema.safeParse(v).success), { numRuns: 3000 });
  });
});
