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
 * Changelog (newest first; one line per version, what changed and why):
 * - 1: first version: Change, push batch, appended event, pull request/response, error reply,
 *      dead letter.
 */
export const PROTOCOL_VERSION = 1;

/** The versions this build can decode. The server must list every version still in the field. */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

export function isSupportedProtocol(v: number): boolean {
  return SUPPORTED_PROTOCOL_VERSIONS.includes(v);
}
