/**
 * Coalescing an agent's unsent changes to one record, so a long outage keeps the outbox bounded by the
 * number of records touched rather than the number of writes.
 *
 * The result of applying the coalesced changes equals the result of applying the originals, to any
 * state that has not seen them (they are unsent, so no other replica has), with one deliberate
 * difference: fields written by earlier changes are re-stamped with the last change's clock and dot
 * (a change has one hlc). Against a concurrent write from elsewhere they compete as of the last
 * change's time. Hence the one duty of the caller: apply the coalesced changes to the agent's own
 * record state too (they dominate the originals, so they only re-stamp), so that the agent holds what
 * every other replica will hold.
 *
 * Why sometimes two changes: a delete followed by puts cannot be one change. The delete removes every
 * field it saw; a single put would have to carry that removal for fields it does not know of (other
 * replicas may hold fields this agent never saw), which the `Change` model cannot express. So the
 * result is `[last delete]`, `[last delete, merged puts after it]` or `[merged puts]`: still bounded.
 *
 * Why runs break at receives: if the agent applied another replica's change to the record between two
 * of its own, merging them would let the earlier write claim (through the later vector) to have seen
 * that change, turning a concurrent write into a causal overwrite that silently beats it. So only
 * runs whose vectors differ in the origin's entry alone are merged; `coalesce` returns one group per run.
 */
import { FleetError } from '@fleet/errors';
import type { Change, JsonValue } from './model';
import { vvCompare, vvGet } from './vv';

function notCoalescable(why: string, c: Change): never {
  throw new FleetError('FLEET_CHANGE_003', why, { details: { changeId: c.changeId, origin: c.origin, originSeq: c.originSeq } });
}

/** Whether `next` follows `prev` with no foreign change applied in between (only the origin's entry grew). */
function sameRun(prev: Change, next: Change): boolean {
  const keys = new Set([...Object.keys(prev.vv), ...Object.keys(next.vv)]);
  for (const k of keys) if (k !== next.origin && vvGet(prev.vv, k) !== vvGet(next.vv, k)) return false;
  return true;
}

/** Squashes one run (no foreign change in between) to one or two changes. */
function squashRun(run: readonly Change[]): Change[] {
  let lastDelete: Change | undefined;
  let puts: Change[] = [];
  for (const c of run) {
    if (c.op === 'delete') {
      // A delete dominates every earlier change of the run, so they no longer matter.
      lastDelete = c;
      puts = [];
    } else {
      puts.push(c);
    }
  }
  const last = puts[puts.length - 1];
  if (last === undefined) return lastDelete === undefined ? [] : [lastDelete];
  const fields = new Map<string, JsonValue>();
  const unset = new Set<string>();
  for (const p of puts) {
    for (const f of p.unset ?? []) {
      fields.delete(f);
      unset.add(f);
    }
    for (const [f, v] of Object.entries(p.fields)) {
      fields.set(f, v);
      unset.delete(f);
    }
  }
  const sortedUnset = [...unset].sort();
  const { unset: _dropped, ...rest } = last;
  const merged: Change = {
    ...rest,
    fields: Object.fromEntries([...fields].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    ...(sortedUnset.length > 0 ? { unset: sortedUnset } : {}),
  };
  return lastDelete === undefined ? [merged] : [lastDelete, merged];
}

/**
 * Coalesces one origin's unsent changes to one record, given in the order they were made (strictly
 * increasing `originSeq`; gaps are normal, since the origin's other records take sequence numbers too).
 * Returns the changes to send instead, in order: per run, `[merged puts]`, `[delete]` or
 * `[delete, merged puts]`; the last change keeps its `changeId`, `originSeq`, `hlc`, `vv` and `hash`.
 * Throws `FLEET_CHANGE_003` when the input is not such a sequence.
 */
export function coalesce(changes: readonly Change[]): Change[] {
  const first = changes[0];
  if (first === undefined) return [];
  const runs: Change[][] = [[first]];
  for (let i = 1; i < changes.length; i++) {
    const prev = changes[i - 1] as Change;
    const c = changes[i] as Change;
    if (c.scope !== first.scope || c.collection !== first.collection || c.key !== first.key) notCoalescable('changes are for different records', c);
    if (c.origin !== first.origin) notCoalescable('changes are from different origins', c);
    if (!(c.originSeq > prev.originSeq)) notCoalescable('originSeq must increase', c);
    if (vvCompare(prev.vv, c.vv) !== 'before' || vvGet(c.vv, c.origin) <= vvGet(prev.vv, c.origin)) notCoalescable("each change's vector must follow the previous one", c);
    if (sameRun(prev, c)) (runs[runs.length - 1] as Change[]).push(c);
    else runs.push([c]);
  }
  return runs.flatMap(squashRun);
}
