/**
 * The pull decoder (pull-decoder.ts): a snapshot page decoded on its worker thread is the page the
 * calling thread decodes (`decodePullWirePage` + `prepareWireRows`), errors keep their codes, and a worker
 * stopped with decodes in flight leaves them to the calling thread.
 */
import { gzipSync } from 'node:zlib';
import { encodeJson, MAX_SNAPSHOT_RESPONSE_BYTES, prepareWireRows, PROTOCOL_VERSION, toWireRecord } from '@fleet/contracts';
import type { WireRecord } from '@fleet/contracts';
import { emptyRecord, joinChange } from '@fleet/sync-core';
import type { Change, RecordState } from '@fleet/sync-core';
import { decodedSize, decodePulledBody, MIN_WORKER_BYTES, PullDecoder } from './pull-decoder';
import { decodePullWirePage } from './protocol/wire';

function change(key: string, n: number, fields: Record<string, unknown>, op: 'put' | 'delete' = 'put', origin = 'server'): Change {
  return {
    changeId: `0190b0c0-0000-7000-8000-${String(n).padStart(12, '0')}`,
    origin,
    originSeq: n,
    scope: 'fleet',
    collection: 'pkgs',
    key,
    op,
    fields,
    hlc: `${String(1_767_225_600_000 + n).padStart(15, '0')}-000000-${origin}`,
    vv: { [origin]: n },
  } as Change;
}

function records(): WireRecord[] {
  const out: WireRecord[] = [];
  for (let i = 1; i <= 300; i++) out.push(toWireRecord(joinChange(emptyRecord(change(`k${i}`, i, {})), change(`k${i}`, i, { name: `p${i}`, n: i, nested: { b: [i], a: null } })).state));
  // not single writes: two writers, a delete after a put
  let st: RecordState = emptyRecord(change('conc', 1, {}));
  st = joinChange(st, change('conc', 1, { v: 'a' }, 'put', 'agent-a')).state;
  st = joinChange(st, change('conc', 1, { v: 'b' }, 'put', 'agent-b')).state;
  out.splice(10, 0, toWireRecord(st));
  let del: RecordState = emptyRecord(change('del', 901, {}));
  del = joinChange(del, change('del', 901, { x: 1 })).state;
  del = joinChange(del, change('del', 902, {}, 'delete')).state;
  out.push(toWireRecord(del));
  return out;
}

const page = (snapshot: boolean) => encodeJson({ protocol: PROTOCOL_VERSION, records: records(), nextCursor: 's.9.WyJmbGVldCIsInBrZ3MiLCJrMSJd', hasMore: true, ...(snapshot ? { snapshot: true } : {}) });

describe('PullDecoder', () => {
  // Every page to the worker (these pages are below the default size for it).
  const decoder = new PullDecoder({ idleMs: 50, minWorkerBytes: 0 });
  afterAll(() => decoder.close());

  it('a snapshot page decoded on the worker is the page decoded here, prepared (gzip and identity)', async () => {
    const raw = page(true);
    const here = decodePullWirePage(raw);
    const expected = { nextCursor: here.nextCursor, hasMore: true, fullResync: false, snapshot: true, records: [], prepared: prepareWireRows(here.records) };
    expect(expected.prepared.others.map((o) => o.at)).toEqual([10, 300]);
    expect(await decoder.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
    expect(decoder.onWorker).toBe(true); // decoded there, not on this thread
    expect(await decoder.decode(new Uint8Array(gzipSync(raw)), true, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
    expect(decodePulledBody(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
    // several in flight, answered in order
    const many = await Promise.all([1, 2, 3].map(() => decoder.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES)));
    for (const m of many) expect(m).toEqual(expected);
  });

  it('any other page comes back as its records', async () => {
    const raw = page(false);
    const d = await decoder.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES);
    expect(d.prepared).toBeUndefined();
    expect(d.records).toEqual(decodePullWirePage(raw).records);
    expect(d.snapshot).toBe(false);
  });

  it('errors keep their codes: not gzip, over the cap, a bad record, an error reply', async () => {
    const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: { code?: string }) => e.code);
    expect(await codeOf(decoder.decode(page(true), true, MAX_SNAPSHOT_RESPONSE_BYTES))).toBe('FLEET_DECODE_001');
    expect(await codeOf(decoder.decode(new Uint8Array(gzipSync(page(true))), true, 1000))).toBe('FLEET_DECODE_001');
    const bad = encodeJson({ protocol: PROTOCOL_VERSION, records: [{ s: 'fleet', c: 'pkgs', k: 'x', w: [], x: [] }], nextCursor: 1, hasMore: false, snapshot: true });
    expect(await codeOf(decoder.decode(bad, false, MAX_SNAPSHOT_RESPONSE_BYTES))).toBe('FLEET_DECODE_002');
    const refused = encodeJson({ error: { code: 'FLEET_AUTH_002', message: 'no' } });
    expect(await codeOf(decoder.decode(refused, false, MAX_SNAPSHOT_RESPONSE_BYTES))).toBe('FLEET_AUTH_002');
  });

  it('stopped with decodes in flight: they are done on the calling thread; after idling it starts again', async () => {
    const raw = page(true);
    const expected = decodePulledBody(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES);
    const inFlight = [decoder.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES), decoder.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES)];
    await decoder.close();
    for (const d of await Promise.all(inFlight)) expect(d).toEqual(expected);
    await new Promise((r) => setTimeout(r, 100));
    expect(await decoder.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
  });

  it('by default a small page is decoded on the calling thread (no worker started) and a large one on the worker, gzipped or not', async () => {
    const sized = new PullDecoder({ idleMs: 50 });
    try {
      const raw = page(true);
      expect(raw.byteLength).toBeLessThan(MIN_WORKER_BYTES);
      const expected = decodePulledBody(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES);
      expect(await sized.decode(new Uint8Array(gzipSync(raw)), true, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
      expect(await sized.decode(raw, false, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
      expect(sized.onWorker).toBe(false);
      // The same page padded past the threshold (JSON whitespace: the same page once parsed), gzipped:
      // a few KiB on the wire, its trailer says how large it is.
      const large = new Uint8Array(MIN_WORKER_BYTES + raw.byteLength);
      large.fill(0x20);
      large.set(raw, 0);
      const gz = new Uint8Array(gzipSync(large));
      expect(gz.byteLength).toBeLessThan(MIN_WORKER_BYTES);
      expect(decodedSize(gz, true)).toBe(large.byteLength);
      expect(await sized.decode(gz, true, MAX_SNAPSHOT_RESPONSE_BYTES)).toEqual(expected);
      expect(sized.onWorker).toBe(true);
    } finally {
      await sized.close();
    }
  });
});
