/**
 * The transport port of the sync manager, and its NATS adapter.
 *
 * Why a port: the manager's tests drive link loss and recovery (a private nats-server killed and
 * restarted) through the real adapter, but the manager itself only needs "publish with a dedupe id
 * and wait for the PubAck", "request/reply", "a subscription" and "the link went up / down".
 */
import { connectNats, NatsPublisher } from '@fleet/messaging';
import type { NatsConnectOptions, NatsTlsFiles } from '@fleet/messaging';
import { agentInboxPrefix, subjects } from '@fleet/contracts';
import type { Msg, NatsConnection } from '@nats-io/nats-core';

interface Sub {
  readonly subject: string;
  readonly onMessage: (msg: Msg) => void;
  unsub?: () => void;
}

export interface TransportReply {
  readonly data: Uint8Array;
  header(name: string): string | undefined;
}

export interface SyncTransport {
  /** Opens the link; resolves once connected the first time (retrying for as long as it takes). */
  connect(): Promise<void>;
  /** Link up / down, as the client sees it; returns the unsubscribe. */
  onStatus(listener: (online: boolean) => void): () => void;
  /** JetStream publish; resolves on the PubAck (`duplicate`: the stream already held this msg id). */
  publish(subject: string, data: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>>; timeoutMs?: number }): Promise<{ seq: number; duplicate: boolean }>;
  request(subject: string, data: Uint8Array, opts?: { timeoutMs?: number; headers?: Readonly<Record<string, string>> }): Promise<TransportReply>;
  /** Core NATS subscription, kept across reconnects. */
  subscribe(subject: string, onMessage: () => void): () => void;
  /** The server's `max_payload`, when connected. */
  maxPayload(): number | undefined;
  close(): Promise<void>;
}

/**
 * An agent's NATS connection options: named `agent-<id>`, replies under its own inbox prefix (its NATS
 * permissions allow only that one: contracts' `agentNatsPermissions`), with its credentials file.
 */
export function agentConnectOptions(o: {
  readonly servers: string | readonly string[];
  readonly agentId: string;
  readonly credentialsFile?: string | undefined;
  readonly tls?: NatsTlsFiles | undefined;
}): NatsConnectOptions {
  return {
    servers: o.servers,
    name: `agent-${o.agentId}`,
    inboxPrefix: agentInboxPrefix(o.agentId),
    ...(o.credentialsFile === undefined ? {} : { credentialsFile: o.credentialsFile }),
    ...(o.tls === undefined ? {} : { tls: o.tls }),
  };
}

/** `SyncTransport` over `@fleet/messaging`: reconnects forever, including the first connect. */
export class NatsSyncTransport implements SyncTransport {
  private nc: NatsConnection | undefined;
  private publisher: NatsPublisher | undefined;
  private readonly listeners = new Set<(online: boolean) => void>();
  private readonly subs: Sub[] = [];
  private closed = false;

  constructor(
    private readonly options: NatsConnectOptions,
    private readonly namespace?: string,
  ) {}

  async connect(): Promise<void> {
    const nc = await connectNats(this.options);
    if (this.closed) {
      await nc.close();
      return;
    }
    this.nc = nc;
    this.publisher = new NatsPublisher(nc, subjects(this.namespace));
    for (const s of this.subs) this.attach(s);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.emit(false);
        else if (s.type === 'reconnect') this.emit(true);
      }
    })().catch(() => undefined);
    void nc.closed().then(() => this.emit(false));
    this.emit(true);
  }

  private emit(online: boolean): void {
    for (const l of this.listeners) l(online);
  }

  onStatus(listener: (online: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private need(): NatsPublisher {
    if (this.publisher === undefined) throw new Error('transport not connected');
    return this.publisher;
  }

  async publish(subject: string, data: Uint8Array, opts: { msgId: string; headers?: Readonly<Record<string, string>>; timeoutMs?: number }): Promise<{ seq: number; duplicate: boolean }> {
    const ack = await this.need().publish(subject, data, {
      msgId: opts.msgId,
      ...(opts.headers === undefined ? {} : { headers: opts.headers }),
      ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
    });
    return { seq: ack.seq, duplicate: ack.duplicate };
  }

  async request(subject: string, data: Uint8Array, opts: { timeoutMs?: number; headers?: Readonly<Record<string, string>> } = {}): Promise<TransportReply> {
    const r = await this.need().request(subject, data, opts);
    return { data: r.data, header: (n) => (r.headers?.has(n) ? r.headers.get(n) : undefined) };
  }

  private attach(s: Sub): void {
    if (this.nc === undefined) return;
    const sub = this.nc.subscribe(s.subject, { callback: (err, msg) => (err ? undefined : s.onMessage(msg)) });
    s.unsub = () => sub.unsubscribe();
  }

  private add(s: Sub): () => void {
    this.subs.push(s);
    this.attach(s);
    return () => {
      s.unsub?.();
      const i = this.subs.indexOf(s);
      if (i >= 0) this.subs.splice(i, 1);
    };
  }

  subscribe(subject: string, onMessage: () => void): () => void {
    return this.add({ subject, onMessage: () => onMessage() });
  }

  /** Answers requests on `subject` (kept across reconnects); a handler's failure is answered as an error reply by the caller's handler, never here. */
  respond(subject: string, handler: (data: Uint8Array) => Promise<Uint8Array>): () => void {
    return this.add({
      subject,
      onMessage: (msg) => {
        if (!msg.reply) return;
        void handler(msg.data).then(
          (out) => msg.respond(out),
          () => undefined, // the handler answers its own errors; a throw here means the link is gone
        );
      },
    });
  }

  maxPayload(): number | undefined {
    return this.nc?.info?.max_payload;
  }

  async close(): Promise<void> {
    this.closed = true;
    const nc = this.nc;
    this.nc = undefined;
    this.publisher = undefined;
    if (nc !== undefined) await nc.drain().catch(() => nc.close());
  }
}
