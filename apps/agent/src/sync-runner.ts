/**
 * Wiring of the agent's network half (`@fleet/agent-sync`) for `agent run`: a NATS transport, the
 * sync manager over the local store, and a clean stop on SIGTERM / SIGINT (the operation in flight
 * finishes: a published batch is still marked sent, an applied page keeps its cursor).
 *
 * `agent run` calls `startSync(store, config)` once the store is open, and awaits `done` before
 * closing the store. Verification (Merkle, after a restore and periodically) covers every collection
 * the store holds in each configured scope plus FLEET_AGENT_VERIFY_COLLECTIONS (`agentVerifyTargets`).
 */
import { agentConnectOptions, CriticalParticipant, MeteredTransport, NatsSyncTransport, SyncManager } from '@fleet/agent-sync';
import type { NatsTlsFiles } from '@fleet/messaging';
import type { CriticalReport, CriticalStore, SyncManagerOptions, SyncStore, VerifyTarget, WireMeter } from '@fleet/agent-sync';
import { DEFAULT_NAMESPACE } from '@fleet/contracts';
import type { StrategyConfig } from '@fleet/sync-core';

export interface AgentSyncConfig {
  /** `nats://host:port` (several for a cluster). */
  readonly servers: string | readonly string[];
  /** This agent's `.creds` file, when the server requires credentials (docs/nats-credentials.md). */
  readonly credentialsFile?: string;
  /** TLS files (a private CA, a client certificate for mutual TLS). */
  readonly tls?: NatsTlsFiles;
  /** Subject namespace (default `sync`). */
  readonly namespace?: string;
  /** The scopes this agent holds and pulls (its host scope, `fleet`, its groups'). */
  readonly scopes: readonly string[];
  /**
   * Collections verified with the server in every scope besides those the store holds records of
   * (FLEET_AGENT_VERIFY_COLLECTIONS): a collection the host lost entirely is found only so.
   */
  readonly verifyCollections?: readonly string[];
  /** The strategy configuration the server uses. */
  readonly strategy: StrategyConfig;
  readonly onReport?: SyncManagerOptions['onReport'];
  /** What the critical-operation participant reports (votes, decisions, failures to ask). */
  readonly onCritical?: (report: CriticalReport) => void;
  /** The coordinator's public key (PEM): critical-operation messages must carry its signature. */
  readonly coordinatorKey?: string;
  /** Told every payload's size (the agent's `fleet_sync.wire.bytes`). */
  readonly wire?: WireMeter;
}

/** What `startSync` needs of the store: the sync manager's port, the participant's, and the (scope, collection) pairs it holds. */
export type AgentSyncStore = SyncStore & CriticalStore & { collections(): readonly VerifyTarget[] };

/**
 * What a verification checks (asked at each one: collections appear over time): in each of `scopes`,
 * every collection the store holds records of (live or deleted), plus `named` ones (a collection the
 * host lost entirely has no record left to be found by); each pair once, by scope then collection.
 * Records held in a scope no longer configured are not verified (that scope is not pulled either).
 */
export function agentVerifyTargets(scopes: readonly string[], held: readonly VerifyTarget[], named: readonly string[] = []): VerifyTarget[] {
  const wanted = new Set(scopes);
  const pairs = new Map<string, VerifyTarget>();
  const add = (scope: string, collection: string): void => void pairs.set(JSON.stringify([scope, collection]), { scope, collection });
  for (const t of held) if (wanted.has(t.scope)) add(t.scope, t.collection);
  for (const scope of scopes) for (const collection of named) add(scope, collection);
  return [...pairs.values()].sort((a, b) => (a.scope === b.scope ? cmp(a.collection, b.collection) : cmp(a.scope, b.scope)));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface RunningSync {
  readonly manager: SyncManager;
  /** Resolves once the manager stopped (after SIGTERM / SIGINT or `stop()`). */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

/** The sync manager and the critical-operation participant (two-phase commit) over one NATS connection. */
export function startSync(store: AgentSyncStore, config: AgentSyncConfig): RunningSync {
  const nats = new NatsSyncTransport(
    agentConnectOptions({ servers: config.servers, agentId: store.agentId, credentialsFile: config.credentialsFile, tls: config.tls }),
    config.namespace,
  );
  const transport = config.wire === undefined ? nats : new MeteredTransport(nats, config.wire, config.namespace ?? DEFAULT_NAMESPACE);
  const manager = new SyncManager({
    store,
    transport,
    strategy: config.strategy,
    scopes: config.scopes,
    ...(config.namespace === undefined ? {} : { namespace: config.namespace }),
    verifyTargets: () => agentVerifyTargets(config.scopes, store.collections(), config.verifyCollections),
    ...(config.onReport === undefined ? {} : { onReport: config.onReport }),
  });
  const critical = new CriticalParticipant({
    store,
    transport,
    ...(config.namespace === undefined ? {} : { namespace: config.namespace }),
    ...(config.onCritical === undefined ? {} : { onReport: config.onCritical }),
    ...(config.coordinatorKey === undefined ? {} : { coordinatorKey: config.coordinatorKey }),
  });
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | undefined;
  const onSignal = (): void => void stop();
  const stop = (): Promise<void> =>
    (stopping ??= (critical.stop(), manager.stop()).finally(() => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolveDone();
    }));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  manager.start();
  critical.start();
  return { manager, done, stop };
}
