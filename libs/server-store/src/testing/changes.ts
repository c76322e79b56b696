import { createHash, randomBytes } from 'node:crypto';
import { encodeHlc, formatUuidV7 } from '@fleet/sync-core';
import type { Change } from '@fleet/sync-core';

/** A UUIDv7 (what agents use as change ids), for tests: sync-core's formatter. */
export function testUuidV7(nowMs: number = Date.now()): string {
  return formatUuidV7(nowMs, randomBytes(16));
}

/**
 * A change that passes the wire schema (`decodeChange`), for tests; everything not given is
 * derived from (origin, originSeq). Host scope of its origin, so an agent may push it.
 */
export function testChange(origin: string, originSeq: number, overrides: Partial<Change> = {}): Change {
  return {
    changeId: testUuidV7(),
    origin,
    originSeq,
    scope: `host.${origin}`,
    collection: 'inventory',
    key: `k${originSeq % 7}`,
    op: 'put',
    fields: { n: originSeq, name: `item ${originSeq}`, nested: { a: [1, 'two', null] } },
    // sync-core's own encoder, so the helper follows the wire format when it changes.
    hlc: encodeHlc({ wallMs: 1_767_225_600_000 + originSeq, counter: 0, node: origin }),
    vv: { [origin]: originSeq },
    hash: createHash('sha256').update(`${origin}/${originSeq}`).digest('hex'),
    protocol: 1,
    ...overrides,
  };
}
