/**
 * The error catalog: every error the project raises has one stable code here, with what it
 * means and what to do. Codes are `FLEET_<AREA>_<NNN>`, never reused or renumbered; the edge
 * (HTTP filter, NATS reply, dead letter header) maps a code to its transport, domain code never does.
 *
 * `retryable`: whether the same input may succeed later (network, lock, unavailable service).
 * A message that fails with a non-retryable code is dead-lettered, not redelivered.
 */
export const ErrorCodes = {
  // --- decoding and validation (wire boundary) ---
  /** The payload is not valid JSON (or not decodable with its declared encoding). */
  FLEET_DECODE_001: { name: 'MalformedPayload', retryable: false, message: 'payload is not valid JSON' },
  /** The payload is JSON but does not match the message schema; the reason lists the paths. */
  FLEET_DECODE_002: { name: 'SchemaViolation', retryable: false, message: 'payload does not match the schema' },
  /** The payload declares a protocol version this build does not speak. */
  FLEET_DECODE_003: { name: 'UnsupportedProtocol', retryable: false, message: 'unsupported protocol version' },
  /** The payload, or a value inside it, is larger than allowed. */
  FLEET_DECODE_004: { name: 'Oversized', retryable: false, message: 'payload or value too large' },
  // --- authorization at the boundary ---
  /** A change's origin is not the agent whose subject it was published on. */
  FLEET_AUTH_001: { name: 'ForgedOrigin', retryable: false, message: 'origin does not match the publishing agent' },
  /** An agent asked for a scope it is not subscribed to. */
  FLEET_AUTH_002: { name: 'ForeignScope', retryable: false, message: 'scope is not readable by this agent' },
  /**
   * A change pushed by an agent writes a scope the agent does not own: an agent writes only its
   * own `host.<agentId>`; `fleet` and `group.<name>` are server-owned desired state. The change
   * is dead-lettered; the rest of its batch is appended.
   */
  FLEET_AUTH_003: { name: 'ForeignWrite', retryable: false, message: 'scope is not writable by this agent' },
  /**
   * An operator request came without the operator token, or with a wrong one. Every operator request
   * needs it, reads as well as changes: the conflict log and record writes (conflict-resolver),
   * critical operations, dead letters and agents (change-log), group memberships, pull facts and fleet
   * health (delta-calculator), `status` and `verify` (every service); or the service has no token
   * configured, and then refuses every such request. Send `Authorization: Bearer <token>` (HTTP, or the
   * same header on the NATS request) with the value of the service's `FLEET_<SERVICE>_OPERATOR_TOKEN`
   * (or the shared `FLEET_OPERATOR_TOKEN`); fleetctl sends its `FLEET_OPERATOR_TOKEN` (exit 77). The
   * probes, the metrics and the agents' own requests need no token.
   */
  FLEET_AUTH_004: { name: 'OperatorUnauthorized', retryable: false, message: 'operator token missing or wrong' },
  /**
   * A host configured with the coordinator's public key (`FLEET_AGENT_COORDINATOR_KEY_FILE`) got a
   * critical-operation message (prepare, decision, or the answer to its status request) without a
   * valid signature of the coordinator for this host and transaction: it is ignored (a prepare is
   * refused, nothing is staged). Check that change-log runs with the matching
   * `FLEET_CHANGELOG_SIGNING_KEY_FILE`, or look for who else publishes on the host's subjects.
   */
  FLEET_AUTH_005: { name: 'UnsignedCoordinatorMessage', retryable: false, message: 'critical-operation message not signed by the coordinator' },
  // --- configuration ---
  /** A configuration value is missing or invalid; the message names the variable. */
  FLEET_CONFIG_001: { name: 'InvalidConfig', retryable: false, message: 'invalid configuration' },
  // --- infrastructure ---
  /** A dependency (NATS, PostgreSQL) is unreachable or timed out. */
  FLEET_INFRA_001: { name: 'Unavailable', retryable: true, message: 'dependency unavailable' },
  /**
   * Server-side SQL writes cannot be captured (docs/server-writes.md): PostgreSQL's `wal_level` is not
   * `logical`, or the configured replication slot exists as another kind of slot or for another
   * database. conflict-resolver keeps trying (its readiness reports it); set `wal_level = logical` and
   * restart PostgreSQL, or choose another slot name.
   */
  FLEET_CAPTURE_001: { name: 'CaptureUnavailable', retryable: true, message: 'server-side SQL writes cannot be captured' },
  // --- change log ---
  /**
   * A change's identity collides with one already logged: the same `changeId` with different
   * content, or the same `(origin, originSeq)` under another `changeId`. The log is immutable, so
   * the newcomer is refused (dead-lettered with both ids); it usually means an agent lost its
   * outbox state or reused ids. Retrying cannot succeed.
   */
  FLEET_LOG_001: { name: 'ChangeIdentityConflict', retryable: false, message: 'change identity conflicts with a logged change' },
  // --- messaging (JetStream transport) ---
  /**
   * A message failed with a transient error on every delivery up to the consumer's `max_deliver`.
   * JetStream would stop redelivering it and leave it stranded, so it is dead-lettered instead,
   * with the last failure as the reason. Replaying it needs an operator (the cause must be fixed first).
   */
  FLEET_MSG_001: { name: 'MaxDeliveriesExceeded', retryable: false, message: 'message failed on every allowed delivery' },
  /**
   * A publish carried `Nats-Expected-Last-Subject-Sequence` and the subject has moved on: someone
   * else wrote first. The same publish cannot succeed; re-read and decide again.
   */
  FLEET_MSG_002: { name: 'WrongLastSequence', retryable: false, message: 'subject was written since the expected sequence' },
  /**
   * A stream or consumer declared in code could not be created or updated to match (e.g. its
   * subjects overlap another stream, or a field cannot be changed in place). Fix the declaration.
   */
  FLEET_MSG_003: { name: 'ProvisioningFailed', retryable: false, message: 'stream or consumer could not be provisioned' },
  /** A request/reply responder answered with an error it did not classify (a bug on its side). */
  FLEET_MSG_004: { name: 'RemoteFailure', retryable: true, message: 'the responder failed' },
  // --- observability ---
  /**
   * An input to the sync-health score is negative or NaN (a counter read wrong, a clock that went
   * backwards). Scoring it would hide the bug behind a plausible number, so the caller must fix it.
   */
  FLEET_OBS_001: { name: 'InvalidHealthInput', retryable: false, message: 'sync-health input is out of range (negative, NaN, or a score outside 0..100)' },
  /**
   * Telemetry was started twice in one process with a different service name. OpenTelemetry's
   * providers are process-global; a second service name would mislabel every span and metric.
   */
  FLEET_OBS_002: { name: 'TelemetryAlreadyStarted', retryable: false, message: 'telemetry already started for another service' },
  // --- Merkle anti-entropy ---
  /**
   * A Merkle tree shape is invalid (depth outside 1..6), or the peer of a verify exchange uses
   * another depth or message version. Trees of different shapes cannot be compared node by node:
   * both sides must build with the same depth. Retrying the same exchange cannot succeed.
   */
  FLEET_MERKLE_001: { name: 'MerkleShapeMismatch', retryable: false, message: 'Merkle tree shape is invalid or differs from the peer' },
  /** A Merkle tree was built from entries where a key repeats: the input must be a set (one record hash per key). */
  FLEET_MERKLE_002: { name: 'DuplicateMerkleKey', retryable: false, message: 'duplicate key in Merkle tree input' },
  /**
   * A Merkle verify message names a node or bucket that does not exist, carries digests of the wrong
   * length, or arrives out of turn. Abandon the exchange and start a new one.
   */
  FLEET_MERKLE_003: { name: 'BadMerkleMessage', retryable: false, message: 'malformed or out-of-turn Merkle verify message' },
  // --- scheduling ---
  /**
   * A scheduler or backoff input is outside its domain: an injected random source returned a value
   * outside [0, 1), an attempt number is negative, or a duration is negative or not finite. A bug in
   * the caller; a silently clamped value would hide it (a broken random source would resynchronise the fleet).
   */
  FLEET_SCHED_001: { name: 'InvalidScheduleInput', retryable: false, message: 'scheduler input outside its domain' },
  // --- internal ---
  /**
   * An error that is not a FleetError reached the edge: a bug. The reply carries only this code
   * (no message, no stack, nothing internal leaks); the service logs the original with its stack.
   */
  FLEET_INTERNAL_001: { name: 'Internal', retryable: false, message: 'internal error' },
  // --- sync-core domain (clocks, vectors, records, resolution) ---
  /**
   * A value cannot be hashed or stored as canonical JSON: `undefined`, NaN/Infinity, a function,
   * bigint, symbol, a class instance (Date, Map...), a sparse array or a cycle. Fix the producer.
   */
  FLEET_JSON_001: { name: 'NotCanonicalJson', retryable: false, message: 'value is not canonical JSON' },
  /**
   * A hybrid logical clock is malformed (bad string, node id not printable ASCII) or out of range
   * (physical time negative, not an integer, or past the encodable range).
   */
  FLEET_CLOCK_001: { name: 'InvalidClock', retryable: false, message: 'invalid hybrid logical clock' },
  /** A version vector has an empty actor or an entry that is not a non-negative safe integer. */
  FLEET_VV_001: { name: 'InvalidVersionVector', retryable: false, message: 'invalid version vector' },
  /**
   * A change cannot be applied: addressed to another record, a delete with fields, a field both set
   * and unset, a vector without the origin's own entry, or a value that is not JSON.
   */
  FLEET_CHANGE_001: { name: 'InvalidChange', retryable: false, message: 'invalid change' },
  /**
   * Two different changes (different `changeId`) claim the same dot (origin, counter) on one record:
   * an origin that lost its state restarted its counters (agents cannot: their counters are origin
   * sequences from a clock-based floor, docs/agent.md), or the change is forged. Applying it would
   * break convergence, so it is refused.
   */
  FLEET_CHANGE_002: { name: 'DotReuse', retryable: false, message: 'origin reused a version counter' },
  /** A changes sequence given to `coalesce` is not one origin's changes to one record, in order. */
  FLEET_CHANGE_003: { name: 'NotCoalescable', retryable: false, message: 'changes cannot be coalesced' },
  /**
   * The strategy configuration is invalid, or names a custom rule that is not registered, or a
   * registered rule threw or returned a non-JSON value.
   */
  FLEET_STRATEGY_001: { name: 'InvalidStrategy', retryable: false, message: 'invalid conflict strategy' },
  /** A stored record state (jsonb / SQLite) does not decode: corrupted or written by an unknown format. */
  FLEET_STATE_001: { name: 'InvalidRecordState', retryable: false, message: 'invalid record state' },
  /**
   * A resolution does not apply: the record has nothing to resolve (already resolved, maybe by another
   * operator), or the chosen origin is not one of the sides.
   */
  FLEET_RESOLVE_001: { name: 'InvalidResolution', retryable: false, message: 'invalid conflict resolution' },
  /** A field delta is malformed: a field both set and unset, or `deleted` with fields. */
  FLEET_DELTA_001: { name: 'InvalidDelta', retryable: false, message: 'invalid field delta' },
  // --- agent local store (libs/agent-store, apps/agent) ---
  /**
   * The agent's data directory or database cannot be created, opened or written: the directory is
   * missing and cannot be made, is not a directory, is read-only, or permissions forbid it. The
   * message names the path. Fix the path or its permissions (`FLEET_AGENT_DATA_DIR`); nothing was written.
   */
  FLEET_AGENT_001: { name: 'StoreUnavailable', retryable: false, message: 'agent store cannot be opened or written' },
  /**
   * The disk (or the database size quota, `FLEET_AGENT_DB_MAX_MB`) is full (SQLITE_FULL). The write
   * that hit it was rolled back whole (record and outbox row together), so nothing half-written
   * remains; free space or raise the quota and retry.
   */
  FLEET_AGENT_002: { name: 'StoreFull', retryable: true, message: 'agent store disk or quota is full' },
  /**
   * The offline queue (outbox) holds its configured maximum of unsent changes even after coalescing
   * every unsent change it may merge. The new write is refused (rolled back) rather than dropping a
   * queued change; it succeeds again once the sync manager has pushed part of the queue, or after
   * raising `FLEET_AGENT_OUTBOX_MAX`. Direct SQL writes stay in the capture table meanwhile.
   */
  FLEET_AGENT_003: { name: 'OutboxFull', retryable: true, message: 'offline queue is full' },
  /**
   * The store was restored from a backup and has not been re-verified against the server yet. Local
   * writes are held until then: writes made after the backup may have reached the server, and a new
   * write made without them would conflict with them instead of following them. The sync manager
   * clears it after its Merkle verification; direct SQL writes stay captured meanwhile.
   */
  FLEET_AGENT_004: { name: 'NeedsVerification', retryable: true, message: 'store awaits verification after a restore' },
  /**
   * A local write is invalid before it becomes a change: a malformed scope, collection or key, fields
   * that are not a storable JSON object, or a size cap the server would refuse. Refused at once so
   * the outbox never holds a change the server would dead-letter.
   */
  FLEET_AGENT_005: { name: 'InvalidLocalWrite', retryable: false, message: 'invalid local write' },
  /**
   * A backup cannot be taken or restored: no full backup to chain an incremental to, a missing file
   * in the chain, links that do not match (an incremental of another full backup), or a backup of
   * another agent. The message names the file.
   */
  FLEET_AGENT_006: { name: 'BadBackup', retryable: false, message: 'backup cannot be taken or restored' },
  /**
   * The database exists but is not this agent's store: another agent id, a newer schema version, or
   * not an agent database at all (corrupt). Opening it anyway could reuse another origin's counters,
   * so the agent stops; restore a backup or point `FLEET_AGENT_DATA_DIR` elsewhere.
   */
  FLEET_AGENT_007: { name: 'IncompatibleStore', retryable: false, message: 'database is not a compatible agent store' },
  /** The agent command line was used wrongly: unknown command, missing or malformed argument. `agent --help` lists the usage. */
  FLEET_AGENT_008: { name: 'AgentUsage', retryable: false, message: 'invalid agent command line' },
  /**
   * The change log holds changes of this agent id numbered at or above the store's own (an earlier store
   * on a reinstalled host, created with a clock far behind), and the store can no longer renumber its
   * changes because it has already pulled. Cannot happen through the sync manager, which settles the
   * origin before the store's first push or pull.
   */
  FLEET_AGENT_009: { name: 'OriginUnsettled', retryable: false, message: 'own changes cannot be renumbered above the log' },
  /**
   * The store is in use by a process that needs it alone, per the lock on `<data dir>/agent.lock`:
   * `agent restore`, or a second `agent run`, while `agent run` has it open; or any command while a
   * restore is moving the files. The message names the holder (command, pid, host, since). Stop the
   * running agent first, or retry once the restore is done; a crashed agent holds no lock (the kernel
   * releases it), so nothing needs cleaning up.
   */
  FLEET_AGENT_010: { name: 'StoreInUse', retryable: true, message: 'agent store is in use by another process' },
  // --- conflict log and manual queue (conflict-resolver) ---
  /** No conflict with that id in the conflict log. Check the id (`conflicts list`). */
  FLEET_CONFLICT_001: { name: 'ConflictNotFound', retryable: false, message: 'no such conflict' },
  /**
   * The conflict was already resolved (by an operator, possibly another one, or automatically by its
   * strategy). Resolving it again would write a second resolution over the first: refused. Show it to
   * see the resolution change.
   */
  FLEET_CONFLICT_002: { name: 'ConflictAlreadyResolved', retryable: false, message: 'conflict already resolved' },
  /**
   * The conflict no longer describes the record: a later change settled it (the record's vector moved
   * past every side), or new concurrent writes made a newer conflict of the record (resolve that one).
   * The item is marked `superseded`; list the record's pending items again.
   */
  FLEET_CONFLICT_003: { name: 'ConflictSuperseded', retryable: false, message: 'conflict superseded by later changes' },
  // --- critical operations: two-phase commit (change-log coordinator, agent participant) ---
  /** No critical transaction with that id in the coordinator's log (or not one this agent takes part in). Check the id. */
  FLEET_TPC_001: { name: 'TransactionNotFound', retryable: false, message: 'no such critical transaction' },
  /**
   * PostgreSQL refuses `PREPARE TRANSACTION`: its `max_prepared_transactions` is 0, so the server
   * cannot be a participant and critical operations are refused (everything else works). Set
   * `max_prepared_transactions` to at least the number of critical operations that may be in flight
   * at once (k8s/postgres sets 64) and restart PostgreSQL.
   */
  FLEET_TPC_002: { name: 'PreparedTransactionsDisabled', retryable: false, message: 'PostgreSQL max_prepared_transactions is 0' },
  /**
   * A participant was told to commit a transaction it holds no prepared state for and has no record of
   * having committed: its prepared state was lost (a PostgreSQL data directory restored from before the
   * prepare, or an agent store restored from a backup). The coordinator keeps retrying and reports it;
   * an operator must repair the participant and run the operation again.
   */
  FLEET_TPC_003: { name: 'PreparedStateLost', retryable: true, message: 'prepared state lost before commit' },
  /**
   * A host asked about a critical transaction the coordinator's log no longer holds: it was finished
   * (every participant acknowledged its decision) and pruned after `FLEET_CHANGELOG_CRITICAL_RETENTION`,
   * and the server holds nothing of it for that host, so the decision cannot be told. Only a host whose
   * store went back in time (restored from a backup taken between its prepare and the decision) can ask.
   * The host stays in doubt, and refuses other transactions on that entry, until an operator removes the
   * staged row by hand (docs/critical-operations.md, "Retention") and runs the operation again.
   */
  FLEET_TPC_004: { name: 'DecisionPruned', retryable: false, message: 'the decision of a pruned critical transaction cannot be told' },
  // --- operator APIs (fleetctl agents, replay) ---
  /**
   * The server knows no agent by that id: the change log holds none of its changes and it has no
   * group membership. Check the id (`fleetctl agents` lists the agents the log knows).
   */
  FLEET_OPS_001: { name: 'AgentNotFound', retryable: false, message: 'no such agent' },
  /**
   * No message with that stream sequence in the dead-letter stream: it was replayed or discarded
   * already (by this operator or another), or it aged out (30 days). `fleetctl replay list` shows what is there.
   */
  FLEET_OPS_002: { name: 'DeadLetterNotFound', retryable: false, message: 'no such dead letter' },
  /**
   * This dead letter cannot be re-published as it is: its original subject is not one of the
   * namespace's streams (or is missing), or it is a change the change log already holds and a
   * projection refused (FLEET_CHANGE_002: replaying it would only log a duplicate), or it was stored
   * cut short (`Fleet-Dead-Letter-Truncated`: with its headers it did not fit the server's max_payload).
   * Fix the cause at its origin, then discard the dead letter (`fleetctl replay discard`).
   */
  FLEET_OPS_003: { name: 'NotReplayable', retryable: false, message: 'dead letter cannot be replayed' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function isErrorCode(s: string): s is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ErrorCodes, s);
}
