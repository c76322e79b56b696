/**
 * Decoding of snapshot pages OFF the agent's main thread. A 1,000,000-record snapshot spent ~2/3 of the
 * agent's thread on un-gzipping, parsing, checking and deriving each record's store row (state text,
 * visible fields, hash) and on the garbage that left; the SQLite writes (which must stay on the store's
 * thread, in one transaction with the cursor) were the other third. Here a worker thread does the first
 * part for page k+1 while the main thread inserts page k: the worker runs `decodePulledBody` (the same
 * un-gzip and `decodePullWirePage` checks as the main thread, then contracts' `prepareWireRows`), and
 * hands back plain strings (`PreparedWireRows`) that the store's `applyRemoteRows` inserts as they are.
 * Trust does not change: the rows are derived by this process's own code from the page it checked, as
 * `applyRemoteWire` derives them.
 *
 * Only pages of at least `minWorkerBytes` once decoded (default 256 KiB of JSON, about 1,500 records; for a
 * gzipped reply the size its gzip trailer records) go to the worker: a page of a few records decodes on
 * the calling thread in well under a millisecond, less than handing it over, and a fresh agent joining a
 * small fleet then never starts a thread. The worker starts on the first large page and stops when idle for `idleMs`; it never keeps
 * the process alive. When it cannot run (no worker file next to this one, e.g. a bundled build; a crash),
 * pages are decoded on the calling thread instead: the same result, only slower.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Worker } from 'node:worker_threads';
import { FleetError, isErrorCode } from '@fleet/errors';
import { prepareWireRows } from '@fleet/contracts';
import type { PreparedWireRows, PullCursor, WireRecord } from '@fleet/contracts';
import { decodePullWirePage } from './protocol/wire';

/** A decoded pull page: a snapshot page as prepared rows (`records` empty), any other page as its records. */
export interface DecodedPull {
  readonly records: readonly WireRecord[];
  readonly prepared?: PreparedWireRows | undefined;
  readonly nextCursor: PullCursor;
  readonly hasMore: boolean;
  readonly fullResync: boolean;
  readonly snapshot: boolean;
}

/**
 * Un-gzips (bounded: a reply may not inflate past `maxBytes`), decodes and checks a pull reply; a
 * snapshot page is returned as prepared rows. What the worker runs; also the fallback on the caller's thread.
 */
export function decodePulledBody(data: Uint8Array, gzip: boolean, maxBytes: number): DecodedPull {
  let bytes = data;
  if (gzip) {
    try {
      const out = gunzipSync(data, { maxOutputLength: maxBytes + 1 });
      bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (cause) {
      throw new FleetError('FLEET_DECODE_001', 'reply does not gunzip (or inflates past the pull response cap)', { cause });
    }
  }
  const page = decodePullWirePage(bytes);
  const meta = { nextCursor: page.nextCursor, hasMore: page.hasMore, fullResync: page.fullResync, snapshot: page.snapshot };
  return page.snapshot ? { ...meta, records: [], prepared: prepareWireRows(page.records) } : { ...meta, records: page.records };
}

/**
 * A decoded page as it crosses the thread: the prepared rows as they are (strings), records (the rare
 * non-single-write records, or a whole non-snapshot page) as JSON text, parsed again on the receiving
 * thread, so that their objects are that thread's own plain objects (structured clone builds them in the
 * main context, which is not the caller's realm under a VM sandbox such as jest's).
 */
export interface DecodedTransfer {
  readonly recordsText: string;
  readonly prepared?: { readonly rows: (string | null)[]; readonly hlcs: string[]; readonly othersText: string } | undefined;
  readonly nextCursor: PullCursor;
  readonly hasMore: boolean;
  readonly fullResync: boolean;
  readonly snapshot: boolean;
}

function toTransfer(d: DecodedPull): DecodedTransfer {
  const { records, prepared, ...meta } = d;
  return { ...meta, recordsText: JSON.stringify(records), prepared: prepared === undefined ? undefined : { rows: prepared.rows, hlcs: prepared.hlcs, othersText: JSON.stringify(prepared.others) } };
}

function fromTransfer(t: DecodedTransfer): DecodedPull {
  const { recordsText, prepared, ...meta } = t;
  return {
    ...meta,
    records: JSON.parse(recordsText) as WireRecord[],
    prepared: prepared === undefined ? undefined : { rows: prepared.rows, hlcs: prepared.hlcs, others: JSON.parse(prepared.othersText) as PreparedWireRows['others'] },
  };
}

/** Worker -> main. */
export type DecoderReply = { readonly id: number; readonly ok: true; readonly page: DecodedTransfer } | { readonly id: number; readonly ok: false; readonly error: { readonly code: string; readonly message: string; readonly details?: unknown } };
/** Main -> worker. */
export interface DecoderRequest {
  readonly id: number;
  readonly data: Uint8Array;
  readonly gzip: boolean;
  readonly maxBytes: number;
}

/** The worker's answer to one request (errors as data: a FleetError's code crosses the thread). */
export function answerDecode(req: DecoderRequest): DecoderReply {
  try {
    return { id: req.id, ok: true, page: toTransfer(decodePulledBody(req.data, req.gzip, req.maxBytes)) };
  } catch (e) {
    const f = e instanceof FleetError ? e : undefined;
    return { id: req.id, ok: false, error: { code: f?.code ?? 'FLEET_DECODE_001', message: e instanceof Error ? e.message : String(e), ...(f?.details === undefined ? {} : { details: f.details }) } };
  }
}

interface Pending {
  /** The caller's bytes (the request's copy was handed to the worker). */
  readonly data: Uint8Array;
  readonly gzip: boolean;
  readonly maxBytes: number;
  readonly resolve: (p: DecodedPull) => void;
  readonly reject: (e: unknown) => void;
}

/** The worker file beside this one (`.ts` when running from source under scripts/register.js or jest). */
function workerSpec(): { file: string; execArgv?: string[] } | undefined {
  const ts = __filename.endsWith('.ts');
  const file = join(__dirname, ts ? 'pull-decoder.worker.ts' : 'pull-decoder.worker.js');
  if (!existsSync(file)) return undefined;
  if (!ts) return { file };
  const register = join(__dirname, '..', '..', '..', 'scripts', 'register.js');
  return existsSync(register) ? { file, execArgv: ['-r', register] } : undefined;
}

/** Decoded bytes from which a page is decoded on the worker (see the file's comment). */
export const MIN_WORKER_BYTES = 256 * 1024;

/**
 * A reply's size once decoded: its length, or for gzip the uncompressed size its trailer records (ISIZE,
 * RFC 1952: the last 4 bytes, little-endian). Only picks the thread; the decode itself is bounded.
 */
export function decodedSize(data: Uint8Array, gzip: boolean): number {
  const n = data.byteLength;
  if (!gzip || n < 18) return n;
  return ((data[n - 4] as number) | ((data[n - 3] as number) << 8) | ((data[n - 2] as number) << 16) | ((data[n - 1] as number) << 24)) >>> 0;
}

export class PullDecoder {
  private worker: Worker | undefined;
  private broken = false;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private idle: NodeJS.Timeout | undefined;

  constructor(private readonly opts: { readonly idleMs?: number; readonly inThread?: boolean; readonly minWorkerBytes?: number } = {}) {}

  /** Decodes one reply body (`gzip`: its Fleet-Encoding): on the worker when it is large enough and the worker can run. */
  decode(data: Uint8Array, gzip: boolean, maxBytes: number): Promise<DecodedPull> {
    const small = decodedSize(data, gzip) < (this.opts.minWorkerBytes ?? MIN_WORKER_BYTES);
    if (this.opts.inThread === true || small) return Promise.resolve().then(() => decodePulledBody(data, gzip, maxBytes));
    if (this.idle !== undefined) clearTimeout(this.idle);
    this.idle = undefined;
    const w = this.start();
    if (w === undefined) return Promise.resolve().then(() => decodePulledBody(data, gzip, maxBytes));
    const copy = data.slice(); // its own buffer, handed over (not copied again)
    const req: DecoderRequest = { id: this.nextId++, data: copy, gzip, maxBytes };
    return new Promise<DecodedPull>((resolve, reject) => {
      this.pending.set(req.id, { data, gzip, maxBytes, resolve, reject });
      w.postMessage(req, [copy.buffer]);
    });
  }

  /** The worker is running (false: not started, stopped when idle, or decoding on the calling thread). */
  get onWorker(): boolean {
    return this.worker !== undefined;
  }

  /** Stops the worker (decodes it has not answered are done on the calling thread). */
  async close(): Promise<void> {
    if (this.idle !== undefined) clearTimeout(this.idle);
    this.idle = undefined;
    const w = this.worker;
    this.worker = undefined;
    this.failPending();
    if (w !== undefined) await w.terminate();
  }

  private start(): Worker | undefined {
    if (this.worker !== undefined || this.broken) return this.worker;
    const spec = workerSpec();
    if (spec === undefined) {
      this.broken = true;
      return undefined;
    }
    let w: Worker;
    try {
      w = new Worker(spec.file, spec.execArgv === undefined ? {} : { execArgv: spec.execArgv });
    } catch {
      this.broken = true;
      return undefined;
    }
    w.unref();
    w.on('message', (m: DecoderReply) => this.onReply(m));
    w.on('error', () => {
      this.broken = true;
      this.onGone(w);
    });
    w.on('exit', () => this.onGone(w));
    this.worker = w;
    return w;
  }

  private onReply(m: DecoderReply): void {
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(fromTransfer(m.page));
    else p.reject(new FleetError(isErrorCode(m.error.code) ? m.error.code : 'FLEET_DECODE_001', m.error.message, m.error.details === undefined ? {} : { details: m.error.details as Record<string, unknown> }));
    if (this.pending.size === 0 && this.worker !== undefined) {
      const w = this.worker;
      this.idle = setTimeout(() => {
        if (this.worker === w && this.pending.size === 0) {
          this.worker = undefined;
          void w.terminate();
        }
      }, this.opts.idleMs ?? 2000);
      this.idle.unref();
    }
  }

  private onGone(w: Worker): void {
    if (this.worker === w) this.worker = undefined;
    this.failPending();
  }

  /** Decodes on this thread what the worker did not answer. */
  private failPending(): void {
    const left = [...this.pending.values()];
    this.pending.clear();
    for (const p of left) {
      try {
        p.resolve(decodePulledBody(p.data, p.gzip, p.maxBytes));
      } catch (e) {
        p.reject(e);
      }
    }
  }
}
