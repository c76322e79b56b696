/**
 * Scopes, agent ids and the authority checks made at the boundary.
 *
 * A scope says who owns a record: `host.<agentId>` is written only by that agent; `fleet` and
 * `group.<name>` are server-owned desired state. NATS permissions already confine an agent to
 * its own push subject; the server checks again here, because a permission mistake must not
 * let one host write another's records.
 */
import { FleetError } from '@fleet/errors';
import type { SERVER_ORIGIN as CORE_SERVER_ORIGIN, Change } from '@fleet/sync-core';
import { isSubjectToken } from './subjects';

/**
 * The origin id of server-written changes. Kept equal to sync-core's `SERVER_ORIGIN` by the
 * type (a runtime import would pull all of sync-core into every decoder).
 */
export const SERVER_ORIGIN: typeof CORE_SERVER_ORIGIN = 'server';
export const FLEET_SCOPE = 'fleet';
const HOST_PREFIX = 'host.';
const GROUP_PREFIX = 'group.';

/**
 * An agent id is a subject token (it names the agent's subjects). It is never `server`, which
 * would let an agent's changes pass for the server's, nor `__proto__`, which cannot be a key of
 * a version vector held in a plain object.
 */
export function isAgentId(s: string): boolean {
  return isOrigin(s) && s !== SERVER_ORIGIN;
}

/** An origin: an agent id or `server`. */
export function isOrigin(s: string): boolean {
  return isSubjectToken(s) && s !== '__proto__';
}

export type ParsedScope = { readonly kind: 'fleet' } | { readonly kind: 'group'; readonly name: string } | { readonly kind: 'host'; readonly agentId: string };

export function parseScope(scope: string): ParsedScope | undefined {
  if (scope === FLEET_SCOPE) return { kind: 'fleet' };
  if (scope.startsWith(GROUP_PREFIX)) {
    const name = scope.slice(GROUP_PREFIX.length);
    return isSubjectToken(name) ? { kind: 'group', name } : undefined;
  }
  if (scope.startsWith(HOST_PREFIX)) {
    const agentId = scope.slice(HOST_PREFIX.length);
    return isAgentId(agentId) ? { kind: 'host', agentId } : undefined;
  }
  return undefined;
}

export function isScope(scope: string): boolean {
  return parseScope(scope) !== undefined;
}

export function hostScope(agentId: string): string {
  if (!isAgentId(agentId)) throw new TypeError(`invalid agent id for a scope: ${JSON.stringify(agentId)}`);
  return `${HOST_PREFIX}${agentId}`;
}

export function groupScope(name: string): string {
  if (!isSubjectToken(name)) throw new TypeError(`invalid group name for a scope: ${JSON.stringify(name)}`);
  return `${GROUP_PREFIX}${name}`;
}

/** Host scope (of `agentId`, if given). */
export function isHostScope(scope: string, agentId?: string): boolean {
  const p = parseScope(scope);
  return p?.kind === 'host' && (agentId === undefined || p.agentId === agentId);
}

export function isGroupScope(scope: string): boolean {
  return parseScope(scope)?.kind === 'group';
}

/** `fleet` or a group: server-owned desired state. */
export function isServerScope(scope: string): boolean {
  const k = parseScope(scope)?.kind;
  return k === 'fleet' || k === 'group';
}

/** Who may write records of the scope: its agent id, or `server`. Throws TypeError on a malformed scope (decode first). */
export function scopeOwner(scope: string): string {
  const p = parseScope(scope);
  if (p === undefined) throw new TypeError(`invalid scope: ${JSON.stringify(scope)}`);
  return p.kind === 'host' ? p.agentId : SERVER_ORIGIN;
}

/** FLEET_AUTH_001 unless the change's origin is the agent whose push subject it arrived on. */
export function assertOriginMatches(change: Pick<Change, 'origin' | 'changeId'>, agentId: string): void {
  if (change.origin !== agentId || !isAgentId(agentId)) {
    throw new FleetError('FLEET_AUTH_001', `change ${change.changeId} has origin ${JSON.stringify(change.origin)} but was published by agent ${JSON.stringify(agentId)}`, {
      details: { changeId: change.changeId, origin: change.origin, agentId },
    });
  }
}

/** FLEET_AUTH_003 unless an agent writes its own host scope (fleet and group scopes are server-owned). */
export function assertScopeWritableBy(change: Pick<Change, 'scope' | 'changeId'>, agentId: string): void {
  if (!isHostScope(change.scope, agentId)) {
    throw new FleetError('FLEET_AUTH_003', `change ${change.changeId} writes scope ${JSON.stringify(change.scope)}, agent ${JSON.stringify(agentId)} may write only ${JSON.stringify(`${HOST_PREFIX}${agentId}`)}`, {
      details: { changeId: change.changeId, scope: change.scope, agentId },
    });
  }
}

/**
 * FLEET_AUTH_002 if an agent asks for another host's scope. Group membership is server state,
 * so whether the agent belongs to a group it asks for is the delta calculator's check.
 */
export function assertScopesReadableBy(scopes: readonly string[], agentId: string): void {
  const foreign = scopes.filter((s) => isHostScope(s) && !isHostScope(s, agentId));
  if (foreign.length > 0) {
    throw new FleetError('FLEET_AUTH_002', `agent ${JSON.stringify(agentId)} may not read ${foreign.map((s) => JSON.stringify(s)).join(', ')}`, {
      details: { agentId, scopes: foreign },
    });
  }
}
