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
  // --- configuration ---
  /** A configuration value is missing or invalid; the message names the variable. */
  FLEET_CONFIG_001: { name: 'InvalidConfig', retryable: false, message: 'invalid configuration' },
  // --- infrastructure ---
  /** A dependency (NATS, PostgreSQL) is unreachable or timed out. */
  FLEET_INFRA_001: { name: 'Unavailable', retryable: true, message: 'dependency unavailable' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function isErrorCode(s: string): s is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ErrorCodes, s);
}
