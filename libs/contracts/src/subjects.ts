/**
 * Every NATS subject, stream, consumer and header the project uses, in one place.
 * Services never concatenate subject strings themselves: they call these builders.
 *
 * All subjects live under a namespace (default `sync`), so that several deployments, or
 * several test files running in parallel, can share one NATS server without their streams'
 * subjects overlapping (JetStream refuses overlapping streams).
 */

/** NATS headers with a meaning in the protocol. */
export const Headers = {
  /** JetStream dedupe id: the change id (or batch id) of what is published. */
  MsgId: 'Nats-Msg-Id',
  /** JetStream per-subject optimistic concurrency. */
  ExpectedLastSubjectSequence: 'Nats-Expected-Last-Subject-Sequence',
  /** W3C trace context, so one change is one trace across every service. */
  TraceParent: 'traceparent',
  TraceState: 'tracestate',
  /** `Bearer <operator token>` on an operator request that changes hosts' credentials (critical begin), HTTP or NATS. */
  Authorization: 'Authorization',
  /** Wire protocol version of the payload. */
  Protocol: 'Fleet-Protocol',
  /** Payload encoding when not plain JSON (e.g. `gzip`). */
  Encoding: 'Fleet-Encoding',
  /** On a pull reply with `hasMore`: its `nextCursor` as JSON, readable before the body is undone (pipelining). */
  NextCursor: 'Fleet-Next-Cursor',
  /** On a dead letter: the stable error code and the human reason it was rejected. */
  RejectCode: 'Fleet-Reject-Code',
  RejectReason: 'Fleet-Reject-Reason',
  /** On a dead letter: where the message came from. */
  OriginalSubject: 'Fleet-Original-Subject',
  OriginalStream: 'Fleet-Original-Stream',
  OriginalSequence: 'Fleet-Original-Sequence',
  DeliveryCount: 'Fleet-Delivery-Count',
  /**
   * On a dead letter stored cut short (the message with the dead letter's headers would not fit the
   * server's max_payload): `<original bytes> sha256:<hex of the original>`. Such a dead letter is not replayable.
   */
  DeadLetterTruncated: 'Fleet-Dead-Letter-Truncated',
  /** On a message re-published from the dead-letter stream (`fleetctl replay`): `<dead-letter stream>:<its sequence there>`. */
  ReplayedFrom: 'Fleet-Replayed-From',
} as const;

/** The server services, as the operator APIs name them (`<ns>.admin.status.<service>`). */
export const SERVER_SERVICES = ['change-log', 'version-vector', 'conflict-resolver', 'delta-calculator'] as const;
export type ServerService = (typeof SERVER_SERVICES)[number];

export const DEFAULT_NAMESPACE = 'sync';

/** A subject token may not contain `.`, `*`, `>` or white space. */
export function isSubjectToken(s: string): boolean {
  return s.length > 0 && s.length <= 128 && /^[A-Za-z0-9_-]+$/.test(s);
}

function token(kind: string, s: string): string {
  if (!isSubjectToken(s)) throw new TypeError(`invalid ${kind} for a NATS subject token: ${JSON.stringify(s)}`);
  return s;
}

/** The subject tree of one namespace. */
/** The first token after the namespace of the subjects an agent uses (`<ns>.<kind>.<agentId>`, `<ns>.tpc.agent.<agentId>`). */
export const AGENT_SUBJECT_KINDS = ['push', 'pull', 'pullkeys', 'origin', 'merkle', 'notify', 'tpc'] as const;
export type AgentSubjectKind = (typeof AGENT_SUBJECT_KINDS)[number];

export function subjects(ns: string = DEFAULT_NAMESPACE) {
  token('namespace', ns);
  const stream = (name: string) => `${ns.toUpperCase().replace(/-/g, '_')}_${name}`;
  return {
    ns,
    /** Which of the agent's subjects this is (for metrics), or undefined for any other subject. */
    agentSubjectKind: (subject: string): AgentSubjectKind | undefined => {
      if (!subject.startsWith(`${ns}.`)) return undefined;
      const kind = subject.slice(ns.length + 1).split('.')[0] ?? '';
      return (AGENT_SUBJECT_KINDS as readonly string[]).includes(kind) ? (kind as AgentSubjectKind) : undefined;
    },
    /** Agents publish push batches here; each agent may publish only to its own. */
    push: (agentId: string) => `${ns}.push.${token('agent id', agentId)}`,
    pushAll: `${ns}.push.*`,
    /** Recovers the agent id from a push subject, or undefined if it is not one. */
    agentOfPush(subject: string): string | undefined {
      const prefix = `${ns}.push.`;
      if (!subject.startsWith(prefix)) return undefined;
      const id = subject.slice(prefix.length);
      return isSubjectToken(id) ? id : undefined;
    },
    /** The change log announces each appended change (batch) here. */
    appended: `${ns}.log.appended`,
    /** The version-vector service announces classifications here. */
    classified: (kind: 'applied' | 'stale' | 'conflict') => `${ns}.vv.${kind}`,
    classifiedAll: `${ns}.vv.*`,
    /** The conflict resolver announces outcomes here. */
    resolved: `${ns}.conflict.resolved`,
    /** Core NATS nudge to a connected agent: pull now. */
    notify: (agentId: string) => `${ns}.notify.${token('agent id', agentId)}`,
    /** Request/reply: an agent's pull (queue group shared by delta-calculator replicas). */
    pull: (agentId: string) => `${ns}.pull.${token('agent id', agentId)}`,
    pullAll: `${ns}.pull.*`,
    /** Request/reply: whole current states of named records (Merkle repair), same queue group as pulls. */
    pullKeys: (agentId: string) => `${ns}.pullkeys.${token('agent id', agentId)}`,
    pullKeysAll: `${ns}.pullkeys.*`,
    /** Request/reply: the change log's highest origin sequence for this agent id (a new store asks before its first sync). */
    origin: (agentId: string) => `${ns}.origin.${token('agent id', agentId)}`,
    originAll: `${ns}.origin.*`,
    /** Request/reply: Merkle anti-entropy exchange. */
    merkle: (agentId: string) => `${ns}.merkle.${token('agent id', agentId)}`,
    merkleAll: `${ns}.merkle.*`,
    /** Request/reply: the operator API for the manual conflict queue. */
    conflictsApi: (verb: 'list' | 'show' | 'resolve') => `${ns}.admin.conflicts.${verb}`,
    conflictsApiAll: `${ns}.admin.conflicts.*`,
    /** Request/reply: the operator API for critical operations (two-phase commit, change-log). */
    criticalApi: (verb: 'begin' | 'show' | 'list') => `${ns}.admin.critical.${verb}`,
    /** Request/reply: a service's status for `fleetctl status` (readiness, cursors, queues); each service answers its own. */
    statusApi: (service: ServerService) => `${ns}.admin.status.${service}`,
    /** Request/reply: the agents the change log knows (origin progress), change-log. */
    agentsApi: (verb: 'list' | 'show') => `${ns}.admin.agents.${verb}`,
    /** Request/reply: what delta-calculator knows of agents (group memberships). */
    agentGroupsApi: `${ns}.admin.agents.groups`,
    /** Request/reply: what delta-calculator knows of agents' pulls and verifications, with their sync-health score. */
    agentSyncApi: `${ns}.admin.agents.sync`,
    /** Request/reply: the fleet's sync-health score and its worst agents (delta-calculator). */
    fleetHealthApi: `${ns}.admin.health`,
    /** Request/reply: the dead-letter stream (list, show; replay and discard need the operator token), change-log. */
    deadLettersApi: (verb: 'list' | 'show' | 'replay' | 'discard') => `${ns}.admin.deadletters.${verb}`,
    /** Request/reply: a read-only check of a service's projections against the change log. */
    verifyApi: (service: 'change-log' | 'version-vector' | 'delta-calculator') => `${ns}.admin.verify.${service}`,
    /** Request/reply, coordinator -> agent: prepare and decision of a critical operation. */
    tpcAgent: (agentId: string) => `${ns}.tpc.agent.${token('agent id', agentId)}`,
    /** Request/reply, agent -> coordinator: the decision of a transaction the agent holds prepared. */
    tpcStatus: (agentId: string) => `${ns}.tpc.status.${token('agent id', agentId)}`,
    tpcStatusAll: `${ns}.tpc.status.*`,
    /** Recovers the agent id from a status subject, or undefined if it is not one. */
    agentOfTpcStatus(subject: string): string | undefined {
      const prefix = `${ns}.tpc.status.`;
      if (!subject.startsWith(prefix)) return undefined;
      const id = subject.slice(prefix.length);
      return isSubjectToken(id) ? id : undefined;
    },
    /** Dead letters, by the stream the message was rejected from. */
    deadLetter: (source: string) => `${ns}.dlq.${token('source', source)}`,
    deadLetterAll: `${ns}.dlq.>`,
    streams: {
      push: stream('PUSH'),
      log: stream('LOG'),
      vv: stream('VV'),
      conflicts: stream('CONFLICTS'),
      deadLetter: stream('DLQ'),
    },
    queueGroups: {
      pull: `${ns}-delta-calculator`,
      admin: `${ns}-conflict-resolver`,
      coordinator: `${ns}-change-log`,
      versionVector: `${ns}-version-vector`,
    },
  } as const;
}

export type Subjects = ReturnType<typeof subjects>;

/**
 * The inbox prefix of an agent's connection: replies to its requests (pulls, Merkle, JetStream PubAcks)
 * come back under it, so its NATS permissions can let it read its own replies and no one else's
 * (`_INBOX.>` would let any agent read every reply).
 */
export function agentInboxPrefix(agentId: string): string {
  return `_INBOX_${token('agent id', agentId)}`;
}

const INBOX_REPLY = /^_INBOX(?:\.|_[A-Za-z0-9_-]{1,128}\.)[^\s*>]+$/;
/** The reply subject the server makes for a request that crossed a service import (the requester's own is hidden). */
const IMPORT_REPLY = /^_R_\.[^\s*>]+$/;
/** The reply subject of a request that crossed a gateway to another cluster: the original reply inside. */
const GATEWAY_REPLY = /^_GR_\.[^.\s]+\.[^.\s]+\.(.+)$/;

/**
 * Why a responder must not answer a request at `reply`, or undefined when it may. NATS checks a
 * client's permission to publish on a subject, never on the reply subject it names, and a responder
 * publishes its answer with its own (broader) permissions: a host could otherwise have a service's
 * answer published on `$JS.API.STREAM.PURGE.<stream>` or on another host's push subject. So:
 * - a reply the server made for a request that crossed a service import (`_R_.`: operator mode, where
 *   hosts have an account of their own, agentAccountBridges) is fine: the requester did not choose it;
 * - any other reply must be an inbox (`_INBOX.` or `_INBOX_<prefix>.`);
 * - `agent`: the request came on an agent's own subject (its id the subject's last token), so the
 *   reply must be in that agent's inbox (`agentInboxPrefix`), and, when `strict` (the server
 *   requires authentication: agents hold their own credentials), nowhere else; without
 *   authentication the shared `_INBOX.` is accepted too (agents of earlier versions use it).
 */
export function replyRefusal(requestSubject: string, reply: string, o: { readonly agent: boolean; readonly strict: boolean }): string | undefined {
  if (IMPORT_REPLY.test(reply)) return undefined; // made by the server: the requester could not choose it
  // A request that crossed a gateway carries `_GR_.<cluster>.<server>.<reply>`: judge the reply inside.
  const gw = GATEWAY_REPLY.exec(reply);
  if (gw !== null) return replyRefusal(requestSubject, gw[1] as string, o);
  if (!INBOX_REPLY.test(reply)) return `reply subject ${JSON.stringify(reply.slice(0, 200))} is not an inbox`;
  if (!o.agent) return undefined;
  const id = requestSubject.slice(requestSubject.lastIndexOf('.') + 1);
  if (isSubjectToken(id) && reply.startsWith(`${agentInboxPrefix(id)}.`)) return undefined;
  if (!o.strict && reply.startsWith('_INBOX.')) return undefined;
  return `reply subject ${JSON.stringify(reply.slice(0, 200))} is not in the inbox of ${JSON.stringify(id)} (${isSubjectToken(id) ? agentInboxPrefix(id) : '?'}.)`;
}

/** NATS publish/subscribe permissions, as a user JWT or a server `authorization` block states them (no `allow`: everything not denied). */
export interface NatsPermissions {
  readonly pub: { readonly allow?: readonly string[]; readonly deny?: readonly string[] };
  readonly sub: { readonly allow?: readonly string[]; readonly deny?: readonly string[] };
  /** Publishing one reply to each request it receives (the coordinator's prepare and decision). */
  readonly allowResponses: boolean;
}

/**
 * What one agent may do on NATS, and nothing more: publish to its own push, pull, pull-keys, origin,
 * Merkle and critical-status subjects; receive its own nudges, the coordinator's messages for it, and
 * replies in its own inbox; answer the requests it receives. Never a wildcard over agent ids, so an
 * agent cannot push as another, read another's replies or vote for it (the change log's origin check
 * is the second line: docs/nats-credentials.md).
 */
export function agentNatsPermissions(ns: string, agentId: string): NatsPermissions {
  const s = subjects(ns);
  return {
    pub: { allow: [s.push(agentId), s.pull(agentId), s.pullKeys(agentId), s.origin(agentId), s.merkle(agentId), s.tpcStatus(agentId)] },
    sub: { allow: [s.notify(agentId), s.tpcAgent(agentId), `${agentInboxPrefix(agentId)}.>`] },
    allowResponses: true,
  };
}

/** fleetctl's inbox prefix: its user may read its own replies only, not the services' (`_INBOX.>` carries JetStream deliveries). */
export const OPERATOR_INBOX_PREFIX = '_INBOX_fleetctl';

/** The server side's NATS users (docs/nats-credentials.md). */
export type ServiceNatsRole = 'coordinator' | 'service' | 'operator';

/**
 * What each server-side user may do:
 * - `coordinator` (change-log): everything; it alone speaks to hosts for critical operations;
 * - `service` (version-vector, conflict-resolver, delta-calculator): everything except the
 *   coordinator's subjects: it can neither send a host a prepare or decision (`tpc.agent.*`) nor
 *   answer a host's status question (`tpc.status.*`);
 * - `operator` (fleetctl): operator requests (`<ns>.admin.>`) and their replies in its own inbox
 *   (`OPERATOR_INBOX_PREFIX`), nothing else.
 */
export function serviceNatsPermissions(ns: string, role: ServiceNatsRole): NatsPermissions {
  const s = subjects(ns);
  if (role === 'coordinator') return { pub: {}, sub: {}, allowResponses: false };
  if (role === 'service') return { pub: { deny: [`${ns}.tpc.agent.>`] }, sub: { deny: [s.tpcStatusAll, `${ns}.tpc.agent.>`] }, allowResponses: false };
  return { pub: { allow: [`${ns}.admin.>`] }, sub: { allow: [`${OPERATOR_INBOX_PREFIX}.>`] }, allowResponses: false };
}

/**
 * What crosses between the two NATS accounts of a deployment in operator mode (docs/nats-credentials.md):
 * the hosts' account (no JetStream) and the fleet's (services, streams). A host's requests and pushes
 * reach the fleet account through service imports, so the server, not the host, names the reply subject
 * there (`_R_...`): a host cannot have a service's answer or JetStream's acknowledgement published on a
 * subject of its choosing (such as `$JS.API.STREAM.PURGE.<stream>`). Nudges go to the hosts as a stream
 * import; the coordinator's requests to a host as a service import the other way.
 */
export function agentAccountBridges(ns: string): { readonly hostRequests: readonly string[]; readonly nudges: string; readonly coordinatorRequests: string } {
  const s = subjects(ns);
  return {
    hostRequests: [s.pushAll, s.pullAll, s.pullKeysAll, s.originAll, s.merkleAll, s.tpcStatusAll],
    nudges: `${ns}.notify.*`,
    coordinatorRequests: `${ns}.tpc.agent.*`,
  };
}
