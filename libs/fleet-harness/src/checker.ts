/**
 * The convergence checker. The truth is the change log: for every record, sync-core's
 * `applyChanges` of its full logged history (seq order) under the fleet's strategy configuration.
 * Every replica is compared with it:
 * - each agent, for every record of every scope it holds (visible hash, status, version vector), and
 *   no live record in those scopes that the log does not have;
 * - the server's records projection (version-vector's `records`) and the delta calculator's
 *   `record_states` (what pulls, resyncs and Merkle trees are served from);
 * and the delivery guarantees: every change an agent got a PubAck for is in the log exactly once,
 * every change an agent made is in the log exactly once with the same identity, and no outbox
 * still holds anything.
 */
import { Client } from 'pg';
import { applyChanges, decodeRecordState, recordHash, vvCompare } from '@fleet/sync-core';
import type { LoggedChange, RecordRef, RecordState, StrategyConfig, VersionVector } from '@fleet/sync-core';
import { CHANGE_COLUMNS, rowToLoggedChange } from '@fleet/server-store';
import type { ChangeLogRow } from '@fleet/server-store';
import type { FleetAgent } from './agent';

export interface ReplicaDiff {
  readonly replica: string;
  readonly ref: RecordRef;
  readonly why: string;
}

export interface ConvergenceResult {
  readonly ok: boolean;
  readonly logRows: number;
  readonly records: number;
  readonly agentsChecked: number;
  readonly recordsCompared: number;
  readonly diffs: readonly ReplicaDiff[];
  /** Acknowledged changes absent from the log. */
  readonly ackedMissing: readonly string[];
  /** Changes made on an agent absent from the log, or logged under another identity. */
  readonly madeMissing: readonly string[];
  /** Change ids or (origin, originSeq) pairs logged more than once. */
  readonly duplicated: readonly string[];
  /** Agents whose outbox still holds changes. */
  readonly outboxNotEmpty: readonly string[];
}

const rid = (r: RecordRef): string => `${r.scope}\u0000${r.collection}\u0000${r.key}`;
const show = (r: RecordRef): string => `${r.scope}/${r.collection}/${r.key}`;
const sameVv = (a: VersionVector, b: VersionVector): boolean => vvCompare(a, b) === 'equal';

export async function readLog(databaseUrl: string): Promise<LoggedChange[]> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const r = await c.query<ChangeLogRow>(`select ${CHANGE_COLUMNS} from change_log order by seq`);
    return r.rows.map(rowToLoggedChange);
  } finally {
    await c.end();
  }
}

/** sync-core's fold of every record's full logged history. */
export function expectedStates(log: readonly LoggedChange[], config: StrategyConfig): Map<string, RecordState> {
  const by = new Map<string, LoggedChange[]>();
  for (const c of log) {
    const k = rid(c);
    const l = by.get(k);
    if (l === undefined) by.set(k, [c]);
    else l.push(c);
  }
  const out = new Map<string, RecordState>();
  for (const [k, changes] of by) out.set(k, applyChanges(changes, config));
  return out;
}

export async function checkConvergence(opts: {
  readonly databaseUrl: string;
  readonly agents: readonly FleetAgent[];
  readonly config: StrategyConfig;
  /** Collections to list on each agent (to find records the log lacks). */
  readonly collections: readonly string[];
  readonly maxDiffs?: number;
}): Promise<ConvergenceResult> {
  const maxDiffs = opts.maxDiffs ?? 50;
  const log = await readLog(opts.databaseUrl);
  const expected = expectedStates(log, opts.config);
  const diffs: ReplicaDiff[] = [];
  const addDiff = (d: ReplicaDiff): void => void (diffs.length < maxDiffs ? diffs.push(d) : undefined);
  let compared = 0;

  // --- the log itself: each change once, under one identity --------------------------------------
  const duplicated: string[] = [];
  const byId = new Map<string, LoggedChange>();
  const byOrigin = new Map<string, LoggedChange>();
  for (const c of log) {
    if (byId.has(c.changeId)) duplicated.push(`changeId ${c.changeId}`);
    byId.set(c.changeId, c);
    const o = `${c.origin}#${c.originSeq}`;
    if (byOrigin.has(o)) duplicated.push(`origin ${o}`);
    byOrigin.set(o, c);
  }

  // --- agents --------------------------------------------------------------------------------------
  const ackedMissing: string[] = [];
  const madeMissing: string[] = [];
  const outboxNotEmpty: string[] = [];
  const scopesOf = new Map<string, RecordState[]>();
  for (const s of expected.values()) {
    const l = scopesOf.get(s.ref.scope);
    if (l === undefined) scopesOf.set(s.ref.scope, [s]);
    else l.push(s);
  }
  for (const a of opts.agents) {
    for (const id of a.acked) if (!byId.has(id)) ackedMissing.push(`${a.id}: ${id}`);
    for (const c of a.made) {
      const l = byId.get(c.changeId);
      if (l === undefined || l.origin !== c.origin || l.originSeq !== c.originSeq || l.hash !== c.hash) madeMissing.push(`${a.id}: ${c.changeId} (#${c.originSeq})`);
    }
    const size = a.outboxSize();
    if (size > 0) outboxNotEmpty.push(`${a.id} (${size})`);
    for (const scope of a.scopes) {
      const want = scopesOf.get(scope) ?? [];
      const wantLive = new Set<string>();
      for (const s of want) {
        compared++;
        const got = a.store.get(s.ref);
        const live = s.view.status === 'live';
        if (live) wantLive.add(rid(s.ref));
        if (got === null) {
          if (live) addDiff({ replica: a.id, ref: s.ref, why: 'missing' });
          continue;
        }
        if ((got.status === 'live') !== live) addDiff({ replica: a.id, ref: s.ref, why: `status ${got.status}, expected ${s.view.status}` });
        else if (got.hash !== recordHash(s)) addDiff({ replica: a.id, ref: s.ref, why: `fields ${JSON.stringify(got.fields)}, expected ${JSON.stringify(s.view.fields)}` });
        else if (!sameVv(got.vv, s.vv)) addDiff({ replica: a.id, ref: s.ref, why: `vector ${JSON.stringify(got.vv)}, expected ${JSON.stringify(s.vv)}` });
      }
      for (const collection of opts.collections) {
        for (let after: string | undefined; ; ) {
          const page = a.store.query(scope, collection, { limit: 1000, ...(after === undefined ? {} : { after }) });
          for (const r of page) if (!wantLive.has(rid(r.ref))) addDiff({ replica: a.id, ref: r.ref, why: 'live here, absent or deleted in the log' });
          if (page.length < 1000) break;
          after = page[page.length - 1]?.ref.key;
        }
      }
    }
  }

  // --- the server's projections --------------------------------------------------------------------
  const c = new Client({ connectionString: opts.databaseUrl });
  await c.connect();
  try {
    for (const [table, label] of [
      ['records', 'server records projection'],
      ['record_states', 'delta-calculator record_states'],
    ] as const) {
      const rows = (await c.query<{ scope: string; collection: string; key: string; state: unknown }>(`select scope, collection, key, state from ${table}`)).rows;
      const seen = new Set<string>();
      for (const r of rows) {
        const ref = { scope: r.scope, collection: r.collection, key: r.key };
        seen.add(rid(ref));
        const want = expected.get(rid(ref));
        const got = decodeRecordState(r.state);
        compared++;
        if (want === undefined) addDiff({ replica: label, ref, why: 'row without any logged change' });
        else if (recordHash(got) !== recordHash(want)) addDiff({ replica: label, ref, why: `view ${JSON.stringify(got.view.fields)}, expected ${JSON.stringify(want.view.fields)}` });
        else if (!sameVv(got.vv, want.vv)) addDiff({ replica: label, ref, why: `vector ${JSON.stringify(got.vv)}, expected ${JSON.stringify(want.vv)}` });
      }
      for (const [k, s] of expected) if (!seen.has(k)) addDiff({ replica: label, ref: s.ref, why: 'missing' });
    }
  } finally {
    await c.end();
  }

  const ok = diffs.length === 0 && ackedMissing.length === 0 && madeMissing.length === 0 && duplicated.length === 0 && outboxNotEmpty.length === 0;
  return { ok, logRows: log.length, records: expected.size, agentsChecked: opts.agents.length, recordsCompared: compared, diffs, ackedMissing, madeMissing, duplicated, outboxNotEmpty };
}

export function describeResult(r: ConvergenceResult): string {
  const lines = [
    `${r.ok ? 'CONVERGED' : 'DIVERGED'}: ${r.agentsChecked} agents and 2 server projections checked against sync-core's fold of the change log (${r.logRows} changes, ${r.records} records, ${r.recordsCompared} replica-records compared)`,
  ];
  if (r.diffs.length > 0) lines.push(`  ${r.diffs.length} difference(s)${r.diffs.length >= 50 ? ' (first 50)' : ''}:`, ...r.diffs.slice(0, 20).map((d) => `    ${d.replica} ${show(d.ref)}: ${d.why}`));
  if (r.ackedMissing.length > 0) lines.push(`  ${r.ackedMissing.length} acknowledged change(s) missing from the log: ${r.ackedMissing.slice(0, 10).join(', ')}`);
  if (r.madeMissing.length > 0) lines.push(`  ${r.madeMissing.length} change(s) made on agents missing from the log: ${r.madeMissing.slice(0, 10).join(', ')}`);
  if (r.duplicated.length > 0) lines.push(`  ${r.duplicated.length} change(s) logged twice: ${r.duplicated.slice(0, 10).join(', ')}`);
  if (r.outboxNotEmpty.length > 0) lines.push(`  outboxes not empty: ${r.outboxNotEmpty.slice(0, 10).join(', ')}`);
  return lines.join('\n');
}
