/**
 * The wire protocol version, carried in every message body (`protocol`) and in the
 * `Fleet-Protocol` header.
 *
 * Bump it when a message changes in a way an older peer would misread: a removed or renamed
 * field, a changed meaning, a new required field. Every schema is strict (unknown keys are
 * rejected, so nothing is dropped silently), so adding an optional field is also a bump.
 * A receiver accepts every version in `SUPPORTED_PROTOCOL_VERSIONS`; anything else is
 * rejected with FLEET_DECODE_003, never guessed at. Agents may stay offline for weeks, so the
 * server keeps accepting old versions for as long as agents in the field may speak them.
 *
 * A message is WRITTEN at the lowest version that has its shape, so a peer that speaks only an
 * older version keeps reading every message that did not change for it: `PROTOCOL_VERSION` for
 * every message a later version left as it was, the later version only for a message that uses
 * what it added. Today that is a pull request carrying `health` (`HEALTH_REPORT_PROTOCOL_VERSION`),
 * and delta-calculator's agent sync views with `push`, which it writes only in answer to a request of
 * that version (to a request of 1 it answers at 1, without them). A build upgraded before the other
 * side therefore keeps working with it, except for the messages that need the newer version, which
 * the older side refuses with FLEET_DECODE_003 (an agent then stops sending `health`, fleetctl asks
 * again at 1).
 *
 * Changelog (newest first; one line per version, what changed and why):
 * - 2: the pull request may carry `health`, the agent's push side (outbox, age of the oldest unsent
 *      change, changes waiting for a retry, failed pushes in a row), so the server's sync-health score
 *      sees a host that pulls but cannot push; the operator API's agent sync view (`admin.agents.sync`,
 *      `admin.health`'s worst agents) may carry `push`, the latest such report, when asked at 2.
 *      Every other message is unchanged and still written at 1.
 * - 1: first version: Change, push batch, appended event, pull request/response, error reply,
 *      dead letter.
 */
export const PROTOCOL_VERSION = 1;

/** The version of a pull request carrying the agent's push-side health report (and of the operator views that show it). */
export const HEALTH_REPORT_PROTOCOL_VERSION = 2;

/** The versions this build can decode. The server must list every version still in the field. */
export const SUPPORTED_PROTOCOL_VERSIONS = [1, 2] as const;

export type ProtocolVersion = (typeof SUPPORTED_PROTOCOL_VERSIONS)[number];

export function isSupportedProtocol(v: number): v is ProtocolVersion {
  return (SUPPORTED_PROTOCOL_VERSIONS as readonly number[]).includes(v);
}
