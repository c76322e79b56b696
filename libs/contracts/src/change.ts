/**
 * The Change message: the wire form of sync-core's `Change`, and its decoder.
 */
import { z } from 'zod';
import { isHlcString, type Change, type JsonValue, type LocalEdit, type LoggedChange, type RecordState, type VersionVector } from '@fleet/sync-core';
import { checkProtocol, decodeWith, OVERSIZED, utf8ByteLength } from './codec';
import { FieldsSchema, fieldNameProblem, isValidFields, stringProblem } from './json-value';
import { MAX_CHANGE_FIELDS_BYTES, MAX_COLLECTION_LENGTH, MAX_FIELDS_PER_CHANGE, MAX_HLC_LENGTH, MAX_KEY_BYTES, MAX_SCOPE_LENGTH, MAX_VV_ACTORS } from './limits';
import { PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from './protocol';
import { isAgentId, isOrigin, isScope } from './scope';

/**
 * The `protocol` of a message: any version this build decodes (`checkProtocol` refuses the others first,
 * with FLEET_DECODE_003). A message whose shape changed in a later version refines what each version
 * may carry (the pull request's `health` needs 2); the others read the same at every version.
 */
export const ProtocolSchema = z.literal(SUPPORTED_PROTOCOL_VERSIONS, { error: `expected protocol ${SUPPORTED_PROTOCOL_VERSIONS.join(' or ')}` });

/**
 * UUIDv7, lowercase only. The change id is the idempotency key and is compared as a string
 * (JetStream `Nats-Msg-Id`, database unique index): `ABC…` and `abc…` would be two changes.
 */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const ChangeIdSchema = z.string({ error: 'expected a string' }).regex(UUID_V7, { error: 'expected a lowercase UUIDv7' });

/** Any RFC 4122/9562 UUID, lowercase (batch ids: any version, since they only dedupe a publish). */
export const UUID_ANY = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const UuidSchema = z.string({ error: 'expected a string' }).regex(UUID_ANY, { error: 'expected a lowercase UUID' });

/** Positive safe integer: sequence numbers and vector counters (beyond 2^53 they would silently lose precision). */
export const PositiveIntSchema = z.int({ error: 'expected a positive integer' }).positive({ error: 'expected a positive integer' });
/** Non-negative safe integer: cursors (0 = from the start), epoch milliseconds, indexes. */
export const NonNegativeIntSchema = z.int({ error: 'expected a non-negative integer' }).nonnegative({ error: 'expected a non-negative integer' });

export const AgentIdSchema = z
  .string({ error: 'expected a string' })
  .refine(isAgentId, { error: 'expected an agent id: 1-128 of [A-Za-z0-9_-], not "server"' });

export const OriginSchema = z
  .string({ error: 'expected a string' })
  .refine(isOrigin, { error: 'expected an origin: an agent id (1-128 of [A-Za-z0-9_-]) or "server"' });

export const ScopeSchema = z
  .string({ error: 'expected a string' })
  .max(MAX_SCOPE_LENGTH, { error: `scope is longer than ${MAX_SCOPE_LENGTH} characters` })
  .refine(isScope, { error: 'expected a scope: "fleet", "group.<name>" or "host.<agentId>"' });

/** A collection is an identifier (it names a resolution strategy in config, a metric label). */
export const CollectionSchema = z
  .string({ error: 'expected a string' })
  .max(MAX_COLLECTION_LENGTH, { error: `collection is longer than ${MAX_COLLECTION_LENGTH} characters` })
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/, { error: 'expected a collection name: [A-Za-z0-9] then [A-Za-z0-9_.:-]' });

/** A key is free text (a package name, a path), but bounded in bytes and storable. */
export const KeySchema = z
  .string({ error: 'expected a string' })
  .min(1, { error: 'key is empty' })
  .superRefine((k, ctx) => {
    const bytes = utf8ByteLength(k);
    if (bytes > MAX_KEY_BYTES) ctx.addIssue({ code: 'custom', message: `key is ${bytes} bytes, the limit is ${MAX_KEY_BYTES}`, params: OVERSIZED });
    const p = stringProblem(k);
    if (p !== undefined) ctx.addIssue({ code: 'custom', message: `key ${p}` });
  });

/** An encoded HLC timestamp, checked with sync-core's own parser (`WWWWWWWWWWWWWWW-CCCCCC-node`). */
export const HlcSchema = z
  .string({ error: 'expected a string' })
  .max(MAX_HLC_LENGTH, { error: `hlc is longer than ${MAX_HLC_LENGTH} characters` })
  .refine(isHlcString, { error: 'expected an HLC timestamp: 15-digit ms, 6-digit counter, node (WWWWWWWWWWWWWWW-CCCCCC-node)' });

/**
 * A version vector: origin -> positive count; at most MAX_VV_ACTORS actors. Checked by hand
 * rather than with `z.record`, which silently drops a `__proto__` key.
 */
export const VersionVectorSchema = z.custom<VersionVector>().superRefine((vv, ctx) => {
  if (typeof vv !== 'object' || vv === null || Array.isArray(vv) || Object.getPrototypeOf(vv) !== Object.prototype) {
    ctx.addIssue({ code: 'custom', message: 'expected an object of origin -> positive count' });
    return;
  }
  const actors = Object.keys(vv);
  if (actors.length > MAX_VV_ACTORS) {
    ctx.addIssue({ code: 'custom', message: `has ${actors.length} actors, the limit is ${MAX_VV_ACTORS}`, params: OVERSIZED });
    return;
  }
  for (const actor of actors) {
    const n: unknown = Reflect.get(vv, actor);
    if (!isOrigin(actor)) ctx.addIssue({ code: 'custom', path: [actor], message: 'expected an origin as actor: 1-128 of [A-Za-z0-9_-]' });
    else if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) ctx.addIssue({ code: 'custom', path: [actor], message: 'expected a positive integer' });
  }
});

/** SHA-256, lowercase hex: compared as a string across peers (Merkle trees, convergence checks). */
export const HashSchema = z.string({ error: 'expected a string' }).regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex digits' });

export const ChangeOpSchema = z.enum(['put', 'delete'], { error: 'expected "put" or "delete"' });

const changeShape = {
  changeId: ChangeIdSchema,
  origin: OriginSchema,
  originSeq: PositiveIntSchema,
  scope: ScopeSchema,
  collection: CollectionSchema,
  key: KeySchema,
  op: ChangeOpSchema,
  fields: FieldsSchema,
  unset: z
    .array(z.string({ error: 'expected a string' }), { error: 'expected an array of field names' })
    .max(MAX_FIELDS_PER_CHANGE, { error: `more than ${MAX_FIELDS_PER_CHANGE} field names` })
    .exactOptional(),
  hlc: HlcSchema,
  vv: VersionVectorSchema,
  hash: HashSchema,
  protocol: ProtocolSchema,
};

type ChangeLike = { op: string; origin: string; fields: object; unset?: readonly string[]; vv: Record<string, number> };

/** Invariants across fields. Runs on partially valid input too (zod continues after non-fatal issues), so it is defensive. */
function changeInvariants(c: ChangeLike, ctx: z.core.$RefinementCtx): void {
  if (c.op === 'delete') {
    if (typeof c.fields === 'object' && c.fields !== null && Object.keys(c.fields).length > 0) {
      ctx.addIssue({ code: 'custom', path: ['fields'], message: 'a delete carries no fields (expected {})' });
    }
    if (c.unset !== undefined) ctx.addIssue({ code: 'custom', path: ['unset'], message: 'a delete carries no unset list' });
  }
  if (c.unset !== undefined) {
    const seen = new Set<string>();
    c.unset.forEach((name, i) => {
      const p = fieldNameProblem(name);
      if (p !== undefined) ctx.addIssue({ code: 'custom', path: ['unset', i], message: p });
      else if (seen.has(name)) ctx.addIssue({ code: 'custom', path: ['unset', i], message: `field ${JSON.stringify(name)} is listed twice` });
      else if (typeof c.fields === 'object' && c.fields !== null && Object.prototype.hasOwnProperty.call(c.fields, name)) {
        ctx.addIssue({ code: 'custom', path: ['unset', i], message: `field ${JSON.stringify(name)} is both written and unset` });
      }
      seen.add(name);
    });
  }
  // The vector after a change includes that change: its origin has written at least once.
  if (typeof c.vv === 'object' && c.vv !== null && typeof c.origin === 'string' && !Object.prototype.hasOwnProperty.call(c.vv, c.origin)) {
    ctx.addIssue({ code: 'custom', path: ['vv'], message: `has no entry for the change's origin ${JSON.stringify(c.origin)}` });
  }
}

/** One change. Strict: an unknown key is an error, never dropped. */
export const ChangeSchema = z.strictObject(changeShape).superRefine(changeInvariants);

/** A change with the server sequence the change log assigned. */
export const LoggedChangeSchema = z.strictObject({ ...changeShape, seq: PositiveIntSchema }).superRefine(changeInvariants);

export type WireChange = z.output<typeof ChangeSchema>;
export type WireLoggedChange = z.output<typeof LoggedChangeSchema>;

// Compile-time: what the decoders return is the domain model, with nothing missing or wider.
const _changeFits = (c: WireChange): Change => c;
const _loggedFits = (c: WireLoggedChange): LoggedChange => c;
void _changeFits;
void _loggedFits;

/**
 * Decodes one change (for example one element of a push batch's `changes`). Throws FleetError:
 * FLEET_DECODE_003 for an unknown protocol, FLEET_DECODE_004 for a size cap, else FLEET_DECODE_002.
 * `pathPrefix` roots the reason's paths (`['changes', 3]` -> `changes[3].vv.a: ...`).
 */
export function decodeChange(input: unknown, pathPrefix: readonly PropertyKey[] = []): Change {
  checkProtocol(input, pathPrefix);
  return (fastDecode(input, false) as Change | undefined) ?? decodeWith(ChangeSchema, input, pathPrefix);
}

export function decodeLoggedChange(input: unknown, pathPrefix: readonly PropertyKey[] = []): LoggedChange {
  checkProtocol(input, pathPrefix);
  return (fastDecode(input, true) as LoggedChange | undefined) ?? decodeWith(LoggedChangeSchema, input, pathPrefix);
}

// --- fast path -------------------------------------------------------------------------------
//
// The zod schemas above are the definition; running them costs ~10 µs per change (most of the
// change-log's decoding time at tens of thousands of changes per second). `fastDecode` checks
// the same rules by hand and returns what the schema would return (a new object, keys in schema
// order, `unset` copied) when the change is valid; for ANYTHING it is not sure about it returns
// undefined and the schema decodes, so every rejection, its code and its reason, comes from zod
// exactly as before. The rule: fastDecode may refuse a valid change, never accept an invalid one
// (change.spec.ts checks it against the schema on generated valid and broken changes).

const CHANGE_KEYS = new Set(['changeId', 'origin', 'originSeq', 'scope', 'collection', 'key', 'op', 'fields', 'unset', 'hlc', 'vv', 'hash', 'protocol']);
const LOGGED_CHANGE_KEYS = new Set([...CHANGE_KEYS, 'seq']);
const COLLECTION_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const HASH_RE = /^[0-9a-f]{64}$/;

/**
 * Whether `CollectionSchema` accepts `v`, as a yes/no without zod (the agent store's write path checks
 * every write; a `false` goes through the schema, which says what is wrong). `change.spec.ts` checks
 * that the two agree.
 */
export function isValidCollection(v: unknown): v is string {
  return typeof v === 'string' && v.length <= MAX_COLLECTION_LENGTH && COLLECTION_RE.test(v);
}

/** Whether `KeySchema` accepts `v`, as a yes/no without zod (see `isValidCollection`). */
export function isValidKey(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && utf8ByteLength(v) <= MAX_KEY_BYTES && stringProblem(v) === undefined;
}

const isPositiveInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

function isValidVv(vv: unknown, origin: string): vv is VersionVector {
  if (typeof vv !== 'object' || vv === null || Array.isArray(vv) || Object.getPrototypeOf(vv) !== Object.prototype) return false;
  const actors = Object.keys(vv);
  if (actors.length > MAX_VV_ACTORS) return false;
  for (const actor of actors) if (!isOrigin(actor) || !isPositiveInt(Reflect.get(vv, actor))) return false;
  return Object.prototype.hasOwnProperty.call(vv, origin);
}

function isValidUnset(unset: unknown, op: string, fields: object): unset is string[] {
  if (!Array.isArray(unset) || unset.length > MAX_FIELDS_PER_CHANGE || op === 'delete') return false;
  const seen = new Set<string>();
  for (let i = 0; i < unset.length; i++) {
    const name: unknown = unset[i];
    if (typeof name !== 'string' || fieldNameProblem(name) !== undefined || seen.has(name) || Object.prototype.hasOwnProperty.call(fields, name)) return false;
    seen.add(name);
  }
  return true;
}

/** The decoded change when `input` is certainly valid (see above), else undefined. */
function fastDecode(input: unknown, logged: boolean): Change | LoggedChange | undefined {
  if (typeof input !== 'object' || input === null || Object.getPrototypeOf(input) !== Object.prototype) return undefined;
  const allowed = logged ? LOGGED_CHANGE_KEYS : CHANGE_KEYS;
  let count = 0;
  for (const k of Object.keys(input)) {
    if (!allowed.has(k)) return undefined;
    count++;
  }
  const o = input as Record<string, unknown>;
  const hasUnset = Object.prototype.hasOwnProperty.call(o, 'unset');
  if (count !== allowed.size - (hasUnset ? 0 : 1)) return undefined;
  const { changeId, origin, originSeq, scope, collection, key, op, fields, unset, hlc, vv, hash, protocol, seq } = o;
  if (typeof changeId !== 'string' || !UUID_V7.test(changeId)) return undefined;
  if (typeof origin !== 'string' || !isOrigin(origin)) return undefined;
  if (!isPositiveInt(originSeq)) return undefined;
  if (typeof scope !== 'string' || scope.length > MAX_SCOPE_LENGTH || !isScope(scope)) return undefined;
  if (typeof collection !== 'string' || collection.length > MAX_COLLECTION_LENGTH || !COLLECTION_RE.test(collection)) return undefined;
  if (typeof key !== 'string' || key.length === 0 || utf8ByteLength(key) > MAX_KEY_BYTES || stringProblem(key) !== undefined) return undefined;
  if (op !== 'put' && op !== 'delete') return undefined;
  if (!isValidFields(fields) || (op === 'delete' && Object.keys(fields).length > 0)) return undefined;
  if (hasUnset && !isValidUnset(unset, op, fields)) return undefined;
  if (typeof hlc !== 'string' || hlc.length > MAX_HLC_LENGTH || !isHlcString(hlc)) return undefined;
  if (!isValidVv(vv, origin)) return undefined;
  if (typeof hash !== 'string' || !HASH_RE.test(hash)) return undefined;
  if (protocol !== PROTOCOL_VERSION) return undefined;
  if (logged && !isPositiveInt(seq)) return undefined;
  const out: Change = hasUnset
    ? { changeId, origin, originSeq, scope, collection, key, op, fields, unset: [...(unset as string[])], hlc, vv, hash, protocol }
    : { changeId, origin, originSeq, scope, collection, key, op, fields, hlc, vv, hash, protocol };
  return logged ? { ...out, seq: seq as number } : out;
}

/**
 * The edits that restate a record's current state (a store's `requeueForPush`, after a verification): a delete for a tombstone; for a
 * live record, puts of every visible field and unsets of every field it holds a register for that is not
 * visible, in as few changes as one change's caps allow (fields plus unsets, and the fields' bytes).
 */
export function restatementOf(state: RecordState): LocalEdit[] {
  const view = state.view;
  if (view.status !== 'live') return [{ op: 'delete' }];
  const edits: LocalEdit[] = [];
  let fields: [string, JsonValue][] = [];
  let unset: string[] = [];
  let bytes = 0;
  const flush = (): void => {
    edits.push({ op: 'put', fields: Object.fromEntries(fields), unset });
    fields = [];
    unset = [];
    bytes = 0;
  };
  for (const [f, v] of Object.entries(view.fields)) {
    const b = utf8ByteLength(JSON.stringify(v));
    if (fields.length + unset.length >= MAX_FIELDS_PER_CHANGE || bytes + b > MAX_CHANGE_FIELDS_BYTES) flush();
    fields.push([f, v]);
    bytes += b;
  }
  for (const f of Object.keys(state.fields)) {
    if (Object.prototype.hasOwnProperty.call(view.fields, f)) continue;
    if (fields.length + unset.length >= MAX_FIELDS_PER_CHANGE) flush();
    unset.push(f);
  }
  if (fields.length + unset.length > 0 || edits.length === 0) flush();
  return edits;
}
