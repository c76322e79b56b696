import { Headers, MAX_COLLECTION_LENGTH, MAX_KEY_BYTES, resyncCursor } from '@fleet/contracts';
import { PULL_HEADER_ROOM } from './pull.service';

/** Bytes a NATS header block takes: `NATS/1.0\r\n`, `k: v\r\n` per header, `\r\n`. */
const block = (h: Record<string, string>): number => 12 + Object.entries(h).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v) + 4, 0);

it('the largest headers a pull reply can carry fit the room left for them under max_payload', () => {
  // The longest cursor: a snapshot position after a record with the longest scope and collection and a
  // 512-byte key of control characters (each escaped in the cursor's JSON before base64url).
  const after = { scope: `group.${'g'.repeat(128)}`, collection: 'c'.repeat(MAX_COLLECTION_LENGTH), key: '\u0001'.repeat(MAX_KEY_BYTES) };
  const cursor = resyncCursor(Number.MAX_SAFE_INTEGER, after, 'snapshot');
  const headers = {
    [Headers.NextCursor]: JSON.stringify(cursor),
    [Headers.Encoding]: 'gzip',
    [Headers.Protocol]: '2',
    [Headers.TraceParent]: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
    [Headers.TraceState]: 'x'.repeat(512),
  };
  expect(block(headers)).toBeGreaterThan(4096); // what the room was: too little
  expect(block(headers)).toBeLessThanOrEqual(PULL_HEADER_ROOM);
});
