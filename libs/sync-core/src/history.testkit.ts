/**
 * Test kit (not exported from the package): generates realistic causal histories of one record.
 * Several nodes make local changes through `makeLocalChange` and, between writes, receive what other
 * nodes know (so later writes causally follow some earlier ones and are concurrent with others).
 * Physical clocks are skewed per node, so HLC order and causal order disagree sometimes, as in a fleet.
 */
import fc from 'fast-check';
import { canonicalJson } from './canonical';
import type { Hlc } from './hlc';
import { encodeHlc, hlcInit, hlcNow, hlcReceive } from './hlc';
import type { Change, Fields, JsonValue, RecordRef } from './model';
import type { RecordState } from './record';
import { emptyRecord } from './record';
import type { LocalEdit, StrategyConfig } from './resolve';
import { applyChange, makeLocalChange } from './resolve';
import { counterAdd } from './rules';

export const REF: RecordRef = { scope: 'fleet', collection: 'settings', key: 'k1' };
export const NODES = ['agent-a', 'agent-b', 'server'] as const;
export const FIELDS = ['color', 'size', 'tags', 'hits', 'owner'] as const;

export type Step =
  | { readonly kind: 'write'; readonly node: number; readonly del: boolean; readonly set: readonly [number, number][]; readonly unset: readonly number[] }
  | { readonly kind: 'sync'; readonly from: number; readonly to: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      node: fc.integer({ min: 0, max: NODES.length - 1 }),
      del: fc.constant(false),
      set: fc.array(fc.tuple(fc.integer({ min: 0, max: FIELDS.length - 1 }), fc.integer({ min: 0, max: 4 })), { maxLength: 3 }),
      unset: fc.array(fc.integer({ min: 0, max: FIELDS.length - 1 }), { maxLength: 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('write' as const), node: fc.integer({ min: 0, max: NODES.length - 1 }), del: fc.constant(true), set: fc.constant([]), unset: fc.constant([]) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sync' as const), from: fc.integer({ min: 0, max: NODES.length - 1 }), to: fc.integer({ min: 0, max: NODES.length - 1 }) }) },
);

export const historyArb = fc.record({
  steps: fc.array(stepArb, { minLength: 1, maxLength: 14 }),
  skews: fc.array(fc.integer({ min: -30, max: 30 }), { minLength: NODES.length, maxLength: NODES.length }),
});
export type HistoryInput = { readonly steps: readonly Step[]; readonly skews: readonly number[] };

interface Node {
  state: RecordState;
  clock: Hlc;
  seq: number;
  known: Map<string, Change>;
}

/** A field value typed for the field, so the custom rules see the inputs they are meant for. */
function valueFor(field: string, n: number, node: string, current: JsonValue | undefined): JsonValue {
  switch (field) {
    case 'tags':
      return [`t${n}`];
    case 'hits':
      return counterAdd(current, node, n + 1);
    case 'size':
      return n * 10;
    default:
      return `${field}-${node}-${n}`;
  }
}

export interface History {
  /** Every change made, in the order made. */
  readonly changes: readonly Change[];
  /** Each node's final state (before a full exchange). */
  readonly finals: readonly RecordState[];
}

/**
 * The names a history uses: `nodes[i]` stands for `NODES[i]` (origin ids) and `fields[i]` for `FIELDS[i]`
 * (field names; the value written keeps the shape of `FIELDS[i]`, so the custom rules still see counters
 * in the `hits` slot). Default: `NODES` and `FIELDS` themselves.
 */
export interface HistoryNames {
  readonly nodes: readonly string[];
  readonly fields: readonly string[];
}

/** Runs the steps against `config`. Each write is made from what its node has seen. */
export function runHistory(input: HistoryInput, config: StrategyConfig, names: HistoryNames = { nodes: NODES, fields: FIELDS }): History {
  if (names.nodes.length !== NODES.length || names.fields.length !== FIELDS.length) throw new Error('runHistory: one name per node and per field');
  const nodes: Node[] = names.nodes.map((id) => ({ state: emptyRecord(REF), clock: hlcInit(id), seq: 0, known: new Map() }));
  const all: Change[] = [];
  input.steps.forEach((step, t) => {
    const physical = 1_000_000 + t * 10;
    if (step.kind === 'sync') {
      const from = nodes[step.from] as Node;
      const to = nodes[step.to] as Node;
      for (const c of from.known.values()) {
        if (to.known.has(c.changeId)) continue;
        to.known.set(c.changeId, c);
        to.state = applyChange(to.state, c, config).state;
        to.clock = hlcReceive(to.clock, c.hlc, physical + (input.skews[step.to] ?? 0)).state;
      }
      return;
    }
    const id = names.nodes[step.node] as string;
    const node = nodes[step.node] as Node;
    const { ts, state: clock } = hlcNow(node.clock, physical + (input.skews[step.node] ?? 0));
    node.clock = clock;
    node.seq += 1;
    let edit: LocalEdit;
    if (step.del) edit = { op: 'delete' };
    else {
      const visible = node.state.view.fields;
      const fields: [string, JsonValue][] = step.set.map(([f, n]) => {
        const name = names.fields[f] as string;
        return [name, valueFor(FIELDS[f] as string, n, id, Object.hasOwn(visible, name) ? visible[name] : undefined)];
      });
      const setNames = new Set(fields.map(([f]) => f));
      const unset = [...new Set(step.unset.map((f) => names.fields[f] as string))].filter((f) => !setNames.has(f));
      edit = { op: 'put', fields: Object.fromEntries(fields) as Fields, unset };
    }
    const made = makeLocalChange(node.state, edit, { origin: id, originSeq: node.seq, changeId: `${id}-${node.seq}`, hlc: encodeHlc(ts), protocol: 1 }, config);
    node.state = made.state;
    node.known.set(made.change.changeId, made.change);
    all.push(made.change);
  });
  return { changes: all, finals: nodes.map((n) => n.state) };
}

/** A deterministic shuffle with duplicates, driven by a fast-check seed (tests only). */
export function scramble<T>(items: readonly T[], seed: number, duplicates: number): T[] {
  let x = (seed >>> 0) || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const out = [...items];
  for (let i = 0; i < duplicates && items.length > 0; i++) out.push(items[next() % items.length] as T);
  for (let i = out.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export function same(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/**
 * A forged copy of `c`: its dot (origin and vector), another change id and other content (a put of one
 * field, or a delete). What no correct origin makes: every replica must reject it (FLEET_CHANGE_002).
 */
export function forgedCopy(c: Change, changeId: string, asDelete = false): Change {
  const { unset: _unset, ...rest } = c;
  return { ...rest, changeId, ...(asDelete ? { op: 'delete' as const, fields: {} } : { op: 'put' as const, fields: { forged: changeId } }) };
}
