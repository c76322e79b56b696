/**
 * Strategies: how a record's registers (see `record.ts`) reduce to the visible record, and the changes
 * that settle a conflict for good.
 *
 * The reduction only ever looks at writes that are concurrent (causal overwrites were dropped by the
 * join), so every strategy is "what to do with concurrent writes to one field, and with a put concurrent
 * with a delete":
 *
 * | strategy | field written on both sides            | put vs concurrent delete          |
 * |----------|----------------------------------------|-----------------------------------|
 * | `lww`    | latest tag `(hlc, origin)` wins         | latest tag wins                   |
 * | `merge`  | `rule` of the collection (default lww)  | edit wins (the delete removes only what it saw) |
 * | `manual` | provisional LWW, flagged `conflicted`, a ConflictRecord for the operator | same |
 * | `custom` | `rule` of the collection (default lww)  | `onDelete` (default lww)          |
 *
 * Fields written on one side only merge in every strategy: with delta changes there is nothing to decide
 * for them (see `record.ts` on why record-level LWW is not computable). Per-field overrides (`fields`)
 * pick `lww`, `manual` or a named rule for one field under any strategy.
 *
 * A conflict settles for good when a change dominating all its sides arrives: `makeResolutionChange`
 * (server: merged vector plus its own tick, fields = the resolved values of contested fields), or an
 * operator's choice via `resolveManual`. Until then every replica shows the same provisional value.
 */
import { FleetError } from '@fleet/errors';
import { assertJson, contentHash } from './canonical';
import type { Change, Fields, JsonValue, RecordRef, VersionVector } from './model';
import { SERVER_ORIGIN } from './model';
import type { ChangeOutcome, ExistenceWrite, FieldValue, FieldWrite, RecordState, RecordView } from './record';
import { classify, emptyRecord, joinOrReject, joinStates, recordHash } from './record';
import type { FieldRule, RuleInput } from './rules';
import { compareTags, isBuiltinRule, lookupRule } from './rules';
import { vvAdvance, vvIncrement, vvMerge } from './vv';

export type Strategy = 'lww' | 'merge' | 'manual' | 'custom';
export type DeleteRule = 'lww' | 'edit-wins' | 'delete-wins' | 'manual';
/** A per-field override: LWW, operator, or a named rule (built-in or registered in `StrategyConfig.rules`). */
export type FieldStrategy = 'lww' | 'manual' | { readonly rule: string };

export interface CollectionStrategy {
  readonly strategy: Strategy;
  /** `merge` / `custom`: the rule for fields written on both sides that have no override. Default `lww`. */
  readonly rule?: string;
  readonly fields?: { readonly [field: string]: FieldStrategy };
  /** A put concurrent with a delete. Default: `lww`, except `merge` (`edit-wins`) and `manual` (`manual`). */
  readonly onDelete?: DeleteRule;
}

export interface StrategyConfig {
  /** For collections not listed. */
  readonly default: Strategy | CollectionStrategy;
  readonly collections?: { readonly [collection: string]: CollectionStrategy };
  /** Rules registered in code (see `rules.ts` for the contract they must honour). Built-in names are reserved. */
  readonly rules?: { readonly [name: string]: FieldRule };
}

function badConfig(why: string): never {
  throw new FleetError('FLEET_STRATEGY_001', why);
}

const STRATEGIES: readonly string[] = ['lww', 'merge', 'manual', 'custom'];
const DELETE_RULES: readonly string[] = ['lww', 'edit-wins', 'delete-wins', 'manual'];

function checkRuleName(name: unknown, config: StrategyConfig, where: string): void {
  if (typeof name !== 'string' || lookupRule(name, config.rules) === undefined) badConfig(`${where}: unknown rule ${String(name)}`);
}

function checkCollection(c: CollectionStrategy, config: StrategyConfig, where: string): void {
  if (!STRATEGIES.includes(c.strategy)) badConfig(`${where}: unknown strategy ${String(c.strategy)}`);
  if (c.rule !== undefined) checkRuleName(c.rule, config, `${where}.rule`);
  if (c.onDelete !== undefined && !DELETE_RULES.includes(c.onDelete)) badConfig(`${where}.onDelete: unknown ${String(c.onDelete)}`);
  for (const [f, fs] of Object.entries(c.fields ?? {})) {
    if (fs === 'lww' || fs === 'manual') continue;
    if (typeof fs !== 'object' || fs === null) badConfig(`${where}.fields.${f}: expected lww, manual or {rule}`);
    checkRuleName(fs.rule, config, `${where}.fields.${f}`);
  }
}

/** Checks a configuration up front (at boot), so a typo fails there and not on the first conflict. Throws `FLEET_STRATEGY_001`. */
export function validateStrategyConfig(config: StrategyConfig): void {
  for (const name of Object.keys(config.rules ?? {})) if (isBuiltinRule(name)) badConfig(`rule name ${name} is reserved for the built-in`);
  checkCollection(typeof config.default === 'string' ? { strategy: config.default } : config.default, config, 'default');
  for (const [name, c] of Object.entries(config.collections ?? {})) checkCollection(c, config, `collections.${name}`);
}

export function collectionStrategy(config: StrategyConfig, collection: string): CollectionStrategy {
  const listed = config.collections !== undefined && Object.prototype.hasOwnProperty.call(config.collections, collection) ? config.collections[collection] : undefined;
  if (listed !== undefined) return listed;
  return typeof config.default === 'string' ? { strategy: config.default } : config.default;
}

type Resolver = { readonly kind: 'manual' } | { readonly kind: 'rule'; readonly name: string; readonly fn: FieldRule };

function ruleResolver(name: string, config: StrategyConfig): Resolver {
  const fn = lookupRule(name, config.rules);
  if (fn === undefined) badConfig(`unknown rule ${name}`);
  return { kind: 'rule', name, fn };
}

function fieldResolver(coll: CollectionStrategy, field: string, config: StrategyConfig): Resolver {
  const override = coll.fields !== undefined && Object.prototype.hasOwnProperty.call(coll.fields, field) ? coll.fields[field] : undefined;
  if (override === 'manual') return { kind: 'manual' };
  if (override === 'lww') return ruleResolver('lww', config);
  if (override !== undefined) return ruleResolver(override.rule, config);
  switch (coll.strategy) {
    case 'manual':
      return { kind: 'manual' };
    case 'merge':
    case 'custom':
      return ruleResolver(coll.rule ?? 'lww', config);
    default:
      return ruleResolver('lww', config);
  }
}

function deleteRule(coll: CollectionStrategy): DeleteRule {
  if (coll.onDelete !== undefined) return coll.onDelete;
  return coll.strategy === 'merge' ? 'edit-wins' : coll.strategy === 'manual' ? 'manual' : 'lww';
}

function resolverName(r: Resolver): string {
  return r.kind === 'manual' ? 'manual' : r.name;
}

function ruleInput(w: FieldWrite): RuleInput {
  const base = { origin: w.origin, counter: w.counter, hlc: w.hlc, changeId: w.changeId };
  return 'removed' in w ? { ...base, removed: true } : { ...base, value: w.value };
}

function runRule(r: Resolver & { kind: 'rule' }, inputs: readonly RuleInput[], field: string): FieldValue {
  let out: FieldValue;
  try {
    out = r.fn(inputs);
  } catch (cause) {
    throw new FleetError('FLEET_STRATEGY_001', `rule ${r.name} threw on field ${field}`, { cause });
  }
  if (typeof out === 'object' && out !== null && 'removed' in out && out.removed === true) return { removed: true };
  if (typeof out !== 'object' || out === null || !('value' in out)) badConfig(`rule ${r.name} returned neither {value} nor {removed}`);
  try {
    assertJson(out.value);
  } catch (cause) {
    throw new FleetError('FLEET_STRATEGY_001', `rule ${r.name} returned a non-JSON value`, { cause });
  }
  return { value: out.value };
}

const lwwOf = (inputs: readonly RuleInput[]): FieldValue => {
  const last = inputs[inputs.length - 1] as RuleInput;
  return 'removed' in last ? { removed: true } : { value: last.value };
};

/** One field's visible value; `manual` is true when it waits for an operator (the value is then provisional). */
function reduceField(writes: readonly FieldWrite[], coll: CollectionStrategy, field: string, config: StrategyConfig): { value: FieldValue; manual: boolean; resolver: string } {
  const only = writes.length === 1 ? writes[0] : undefined;
  if (only !== undefined) return { value: 'removed' in only ? { removed: true } : { value: only.value }, manual: false, resolver: 'none' };
  const inputs = writes.map(ruleInput).sort(compareTags);
  const r = fieldResolver(coll, field, config);
  if (r.kind === 'manual') return { value: lwwOf(inputs), manual: true, resolver: 'manual' };
  return { value: runRule(r, inputs, field), manual: false, resolver: resolverName(r) };
}

function latest(ws: readonly ExistenceWrite[]): ExistenceWrite | undefined {
  return [...ws].sort(compareTags).pop();
}

/** Whether the record lives, given its existence register. */
function reduceExistence(existence: readonly ExistenceWrite[], coll: CollectionStrategy): { status: RecordView['status']; contested: boolean; manual: boolean } {
  if (existence.length === 0) return { status: 'absent', contested: false, manual: false };
  const alive = existence.filter((e) => e.alive);
  const dead = existence.filter((e) => !e.alive);
  if (alive.length === 0) return { status: 'deleted', contested: false, manual: false };
  if (dead.length === 0) return { status: 'live', contested: false, manual: false };
  const rule = deleteRule(coll);
  if (rule === 'edit-wins') return { status: 'live', contested: true, manual: false };
  if (rule === 'delete-wins') return { status: 'deleted', contested: true, manual: false };
  const winner = latest(existence) as ExistenceWrite;
  return { status: winner.alive ? 'live' : 'deleted', contested: true, manual: rule === 'manual' };
}

/** The visible record under `config`. Pure: the same registers and config give the same view on every replica. */
export function computeView(state: RecordState, config: StrategyConfig): RecordView {
  const coll = collectionStrategy(config, state.ref.collection);
  const ex = reduceExistence(state.existence, coll);
  if (ex.status !== 'live') return { status: ex.status, fields: {}, contested: [], contestedExistence: ex.contested, conflicted: ex.manual };
  const visible: [string, JsonValue][] = [];
  const contested: string[] = [];
  let conflicted = ex.manual;
  for (const [field, writes] of Object.entries(state.fields)) {
    const r = reduceField(writes, coll, field, config);
    if (writes.length > 1) contested.push(field);
    if (r.manual) conflicted = true;
    if ('value' in r.value) visible.push([field, r.value.value]);
  }
  // state.fields keys are sorted, so `visible` and `contested` are too.
  return { status: 'live', fields: Object.fromEntries(visible), contested, contestedExistence: ex.contested, conflicted };
}

/** Recomputes the stored view, e.g. after the strategy configuration changed. */
export function refreshView(state: RecordState, config: StrategyConfig): RecordState {
  return { ...state, view: computeView(state, config) };
}

// ---------------------------------------------------------------------------------------------
// Conflicts

/** One side of a conflict: a write, with what it wrote. */
export type ConflictSide = FieldValue & { readonly origin: string; readonly counter: number; readonly hlc: string; readonly changeId: string };

export interface ConflictField {
  readonly field: string;
  /** The rule that settled it, or `manual` (then `resolved` is the provisional LWW winner). */
  readonly resolver: string;
  readonly sides: readonly ConflictSide[];
  readonly resolved: FieldValue;
}

export interface ConflictExistence {
  readonly rule: DeleteRule;
  readonly sides: readonly { readonly origin: string; readonly counter: number; readonly hlc: string; readonly changeId: string; readonly alive: boolean }[];
  readonly resolved: 'live' | 'deleted';
}

/**
 * Everything concurrent in a record, for the conflict log (every conflict, auto-resolved or not, is
 * recorded with all sides) and the operator queue (`needsOperator`). `id` is a hash of the sides' dots:
 * the same conflict has the same id on every replica; a conflict that gains a side gets a new id, so the
 * queue should key open items by record and keep the latest.
 */
export interface ConflictRecord {
  readonly id: string;
  readonly ref: RecordRef;
  readonly needsOperator: boolean;
  /** Merge of the sides' vectors: a resolution must dominate it (the record's vector always does). */
  readonly vv: VersionVector;
  readonly fields: readonly ConflictField[];
  readonly existence?: ConflictExistence;
}

/** The record's open conflict, if any of its registers hold concurrent writes that are visible. */
export function conflictOf(state: RecordState, config: StrategyConfig): ConflictRecord | undefined {
  const { view } = state;
  if (view.contested.length === 0 && !view.contestedExistence) return undefined;
  const coll = collectionStrategy(config, state.ref.collection);
  let vv: VersionVector = {};
  const dots: string[] = [];
  const fields = view.contested.map((field): ConflictField => {
    const writes = Object.hasOwn(state.fields, field) ? (state.fields[field] as readonly FieldWrite[]) : [];
    for (const w of writes) {
      vv = vvMerge(vv, w.vv);
      dots.push(`${field}:${w.origin}#${w.counter}`);
    }
    const r = reduceField(writes, coll, field, config);
    return { field, resolver: r.resolver, sides: writes.map(ruleInput).sort(compareTags), resolved: r.value };
  });
  let existence: ConflictExistence | undefined;
  if (view.contestedExistence) {
    for (const e of state.existence) {
      vv = vvMerge(vv, e.vv);
      dots.push(`$exists:${e.origin}#${e.counter}`);
    }
    const sides = [...state.existence].sort(compareTags).map((e) => ({ origin: e.origin, counter: e.counter, hlc: e.hlc, changeId: e.changeId, alive: e.alive }));
    existence = { rule: deleteRule(coll), sides, resolved: view.status === 'live' ? 'live' : 'deleted' };
  }
  const id = contentHash({ ref: state.ref, dots: dots.sort() });
  const base = { id, ref: state.ref, needsOperator: view.conflicted, vv, fields };
  return existence === undefined ? base : { ...base, existence };
}

// ---------------------------------------------------------------------------------------------
// Applying

/** Where a change stood (see `classify`), or `rejected`: it reuses a dot the record holds for another change. */
export type ApplyOutcome = ChangeOutcome | 'rejected';

export interface ApplyResult {
  readonly state: RecordState;
  /** Where the change stood against the state before it (see `classify`), or `rejected`. */
  readonly outcome: ApplyOutcome;
  /** Whether the state changed (false for duplicates, fully dominated changes and rejected ones). */
  readonly changed: boolean;
  /** For a concurrent change that left the record with concurrent writes: the conflict, with every side. */
  readonly conflict?: ConflictRecord;
  /** For a `rejected` change: why (FLEET_CHANGE_002, with the dot and both change ids). */
  readonly rejection?: FleetError;
}

/**
 * Applies one change: join, then recompute the view. Safe in any order, any number of times.
 *
 * A change whose dot (origin, counter) the record already holds under another change id is `rejected`:
 * the state is returned unchanged. It is a forged change, or one from an origin that lost its counters
 * (see `makeLocalChange`); keeping either write would make the result depend on arrival order. Replicas
 * that apply changes in one order (every server projection folds the change log in seq order) reject the
 * same change, so they stay identical; and one bad change never stops the ones after it. A reuse whose
 * earlier write is already overwritten is not visible here (the change is then stale or concurrent).
 */
export function applyChange(state: RecordState, change: Change, config: StrategyConfig): ApplyResult {
  const joined = joinOrReject(state, change);
  if (joined.rejection !== undefined) return { state, outcome: 'rejected', changed: false, rejection: joined.rejection };
  const outcome = classify(state.vv, change.vv);
  if (!joined.changed) return { state, outcome, changed: false };
  const next = refreshView(joined.state, config);
  const conflict = outcome === 'concurrent' ? conflictOf(next, config) : undefined;
  return conflict === undefined ? { state: next, outcome, changed: true } : { state: next, outcome, changed: true, conflict };
}

/** Joins two replicas' states of one record (anti-entropy repair) and recomputes the view. */
export function mergeRecordStates(a: RecordState, b: RecordState, config: StrategyConfig): RecordState {
  return refreshView(joinStates(a, b), config);
}

/** Folds `applyChange` over `changes` (rejected ones change nothing), from `state` (default: the empty record of the first change). */
export function applyChanges(changes: readonly Change[], config: StrategyConfig, state?: RecordState): RecordState {
  const first = changes[0];
  let s = state ?? (first === undefined ? undefined : emptyRecord(first));
  if (s === undefined) throw new FleetError('FLEET_CHANGE_001', 'no changes and no state');
  for (const c of changes) s = applyChange(s, c, config).state;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Making changes

/** What the writer supplies; the vector and hash are computed. */
export interface ChangeMeta {
  readonly origin: string;
  readonly originSeq: number;
  readonly changeId: string;
  readonly hlc: string;
  readonly protocol: number;
}

export type LocalEdit = { readonly op: 'put'; readonly fields?: Fields; readonly unset?: readonly string[] } | { readonly op: 'delete' };

/** A copy of `f` with its keys in order (a plain copy when they already are: the common case). */
function sortedObj(f: Fields): Fields {
  let prev: string | undefined;
  for (const k of Object.keys(f)) {
    if (prev !== undefined && k <= prev) return Object.fromEntries(Object.entries(f).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    prev = k;
  }
  return { ...f };
}

/** `counter`: how the origin's vector entry advances (see makeLocalChange and makeResolutionChange). */
function buildChange(
  state: RecordState,
  edit: LocalEdit,
  meta: ChangeMeta,
  config: StrategyConfig,
  counter: 'tick' | 'originSeq',
): { change: Change; state: RecordState; conflict?: ConflictRecord } {
  if (typeof meta.origin !== 'string' || meta.origin.length === 0) throw new FleetError('FLEET_CHANGE_001', 'origin must be a non-empty string');
  const vv = counter === 'originSeq' ? vvAdvance(state.vv, meta.origin, meta.originSeq) : vvIncrement(state.vv, meta.origin);
  const fields = edit.op === 'put' ? sortedObj(edit.fields ?? {}) : {};
  const unset = edit.op === 'put' ? [...new Set(edit.unset ?? [])].sort() : [];
  const draft: Change = {
    scope: state.ref.scope,
    collection: state.ref.collection,
    key: state.ref.key,
    changeId: meta.changeId,
    origin: meta.origin,
    originSeq: meta.originSeq,
    op: edit.op,
    fields,
    ...(unset.length > 0 ? { unset } : {}),
    hlc: meta.hlc,
    vv,
    hash: '',
    protocol: meta.protocol,
  };
  // The hash is not part of what the join reads, so the state computed from the draft is the state after the final change.
  const r = applyChange(state, draft, config);
  if (r.rejection !== undefined) throw r.rejection; // a change made here must never be dropped
  const change: Change = { ...draft, hash: recordHash(r.state) };
  return r.conflict === undefined ? { change, state: r.state } : { change, state: r.state, conflict: r.conflict };
}

/**
 * A change made on this replica: its vector is the record's vector advanced at `origin`, so it
 * dominates everything this replica has seen of the record. The origin's entry becomes
 * `max(entry + 1, originSeq)`: an agent's counters are its origin sequence numbers. A store numbers
 * its writes from a floor taken from its clock when it is created (agent-store), so a host reinstalled
 * under the same agent id, with an empty store that has not yet seen its old records, still writes dots
 * its earlier store never used, above them: its write to an old record follows its old writes (the same
 * origin, later; what it writes replaces them, fields it does not write keep their old values) rather
 * than being a reused dot (FLEET_CHANGE_002) or a change ignored as stale. Writes of other origins it has
 * not seen (the server's) stay concurrent with it: conflicts, as always.
 * `counter: 'tick'` advances the entry by one instead: the server's writes (one writer per record under
 * the change log's append lock, see server-store ServerWriter).
 *
 * A put on a record that is not visible (deleted, or never written here) also unsets every field still
 * held in a register: those are writes a winning delete hid, and the writer, who saw no record, cannot
 * mean to bring them back. Without this a re-created record would resurface fields of a losing edit.
 */
export function makeLocalChange(
  state: RecordState,
  edit: LocalEdit,
  meta: ChangeMeta,
  config: StrategyConfig,
  counter: 'originSeq' | 'tick' = 'originSeq',
): { change: Change; state: RecordState } {
  if (edit.op === 'put' && state.view.status !== 'live') {
    const given = new Set([...Object.keys(edit.fields ?? {}), ...(edit.unset ?? [])]);
    const hidden = Object.entries(state.fields)
      .filter(([f, ws]) => !given.has(f) && ws.some((w) => !('removed' in w)))
      .map(([f]) => f);
    if (hidden.length > 0) edit = { op: 'put', fields: edit.fields ?? {}, unset: [...(edit.unset ?? []), ...hidden] };
  }
  const { change, state: next } = buildChange(state, edit, meta, config, counter);
  return { change, state: next };
}

/** What a resolution writes: the record deleted, or these fields set and unset. */
export type Resolution = { readonly deleted: true } | { readonly deleted?: false; readonly fields: Fields; readonly unset: readonly string[] };

/** An operator's choice for a conflicted record: one side wins everywhere, or explicit values, or delete. */
export type ManualChoice = { readonly take: string } | { readonly fields: Fields; readonly unset?: readonly string[] } | { readonly deleted: true };

function nothingToResolve(state: RecordState): never {
  throw new FleetError('FLEET_RESOLVE_001', 'the record has no open conflict', { details: { ...state.ref } });
}

/** The automatic resolution: the current view's values of every contested register. */
export function autoResolution(state: RecordState): Resolution {
  const { view } = state;
  if (view.contested.length === 0 && !view.contestedExistence) nothingToResolve(state);
  if (view.status !== 'live') return { deleted: true };
  const fields: [string, JsonValue][] = [];
  const unset: string[] = [];
  for (const f of view.contested) {
    if (Object.prototype.hasOwnProperty.call(view.fields, f)) fields.push([f, view.fields[f] as JsonValue]);
    else unset.push(f);
  }
  return { fields: Object.fromEntries(fields), unset };
}

/**
 * Turns an operator's choice into a resolution. `{take: origin}`: the chosen origin's side of every
 * contested register (delete included); registers where it has no side keep their current value.
 */
export function resolveManual(state: RecordState, choice: ManualChoice, config: StrategyConfig): Resolution {
  const contestedFields = Object.entries(state.fields).filter(([, ws]) => ws.length > 1);
  if (contestedFields.length === 0 && !state.view.contestedExistence) nothingToResolve(state);
  if ('deleted' in choice) return { deleted: true };
  if ('fields' in choice) {
    const unset = [...(choice.unset ?? [])];
    try {
      assertJson(choice.fields);
    } catch (cause) {
      throw new FleetError('FLEET_RESOLVE_001', 'fields are not JSON', { cause });
    }
    for (const f of unset) if (Object.prototype.hasOwnProperty.call(choice.fields, f)) throw new FleetError('FLEET_RESOLVE_001', `field ${f} is both set and unset`);
    // A field that needs an operator, left out, would stay so: the record still conflicted, with no
    // queue item left for it (the resolution is a fast-forward, not a new conflict). So every such field
    // is decided; fields the collection's rules settle (a counter beside a manual field) may be left.
    const coll = collectionStrategy(config, state.ref.collection);
    const undecided = contestedFields
      .filter(([f, ws]) => reduceField(ws, coll, f, config).manual)
      .map(([f]) => f)
      .filter((f) => !Object.prototype.hasOwnProperty.call(choice.fields, f) && !unset.includes(f));
    if (undecided.length > 0) {
      throw new FleetError('FLEET_RESOLVE_001', `the resolution leaves contested fields undecided: ${undecided.sort().join(', ')} (give each a value, or unset it)`, { details: { undecided } });
    }
    return { fields: choice.fields, unset };
  }
  const origin = choice.take;
  const sides = [...state.existence.map((e) => e.origin), ...contestedFields.flatMap(([, ws]) => ws.map((w) => w.origin))];
  if (!sides.includes(origin)) throw new FleetError('FLEET_RESOLVE_001', `origin ${origin} is not a side of this conflict`, { details: { origin } });
  let live = state.view.status === 'live';
  if (state.view.contestedExistence) {
    const own = state.existence.find((e) => e.origin === origin);
    if (own !== undefined) live = own.alive;
  }
  if (!live) return { deleted: true };
  const coll = collectionStrategy(config, state.ref.collection);
  const fields: [string, JsonValue][] = [];
  const unset: string[] = [];
  for (const [f, ws] of contestedFields) {
    const own = ws.find((w) => w.origin === origin);
    const v: FieldValue = own !== undefined ? ('removed' in own ? { removed: true } : { value: own.value }) : reduceField(ws, coll, f, config).value;
    if ('value' in v) fields.push([f, v.value]);
    else unset.push(f);
  }
  return { fields: Object.fromEntries(fields), unset };
}

/**
 * The change that settles a record's conflict: vector = the record's (which dominates every side) plus
 * one tick of the resolver (`server` by default), so applying it anywhere collapses the contested
 * registers to its values. Without `resolution`, writes the current automatic/provisional values.
 * Only one writer per record may make these (the server serialises per record): two resolvers ticking
 * the same vector would reuse a dot.
 */
export function makeResolutionChange(
  state: RecordState,
  meta: Omit<ChangeMeta, 'origin'> & { readonly origin?: string },
  config: StrategyConfig,
  resolution?: Resolution,
): { change: Change; state: RecordState } {
  const res = resolution ?? autoResolution(state);
  const edit: LocalEdit = res.deleted === true ? { op: 'delete' } : { op: 'put', fields: res.fields, unset: res.unset };
  const { change, state: next } = buildChange(state, edit, { ...meta, origin: meta.origin ?? SERVER_ORIGIN }, config, 'tick');
  return { change, state: next };
}
