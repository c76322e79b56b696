/**
 * The agent as a participant of critical operations (two-phase commit; rules in sync-core
 * two-phase.ts, staging in agent-store critical-staging.ts). It answers the coordinator on
 * `<ns>.tpc.agent.<agentId>`: a prepare with a vote, a decision with an acknowledgement. A transaction
 * it voted yes on and has not heard the decision of is in doubt: it asks the coordinator
 * (`<ns>.tpc.status.<agentId>`) on every reconnect and every `retryMs` until it has an answer. It never
 * decides alone.
 */
import {
  decodeTpcAgentRequest,
  decodeTpcStatusReply,
  encodeJson,
  errorReply,
  PROTOCOL_VERSION,
  subjects,
  tpcVerifier,
} from '@fleet/contracts';
import type { CriticalOperation, Subjects, TpcAgentReply, TpcSigned } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import type { Decision, Vote } from '@fleet/sync-core';
import type { TransportReply } from './transport';

/** What the participant needs of the agent's store (`SqliteLocalStore` has it). */
export interface CriticalStore {
  readonly agentId: string;
  /** `deadline`: the prepare's (a store that prunes decided transactions refuses a late copy of a pruned one's prepare by it). */
  criticalPrepare(txid: string, operation: CriticalOperation, deadline?: number): Vote;
  criticalDecide(txid: string, decision: Decision): 'committed' | 'aborted';
  criticalInDoubt(): readonly { readonly txid: string }[];
}

/** What it needs of the link: answer requests, ask, and hear when the link comes back (`NatsSyncTransport` has it). */
export interface CriticalTransport {
  onStatus(listener: (online: boolean) => void): () => void;
  request(subject: string, data: Uint8Array, opts?: { timeoutMs?: number }): Promise<TransportReply>;
  respond(subject: string, handler: (data: Uint8Array) => Promise<Uint8Array>): () => void;
}

export type CriticalReport =
  | { readonly type: 'voted'; readonly txid: string; readonly vote: Vote }
  | { readonly type: 'decided'; readonly txid: string; readonly state: 'committed' | 'aborted'; readonly via: 'coordinator' | 'status' }
  | { readonly type: 'error'; readonly txid?: string; readonly error: unknown };

export interface CriticalParticipantOptions {
  readonly store: CriticalStore;
  readonly transport: CriticalTransport;
  readonly namespace?: string;
  /** How often a transaction in doubt is asked about again (default 5 s). */
  readonly retryMs?: number;
  /**
   * The coordinator's Ed25519 public key (PEM). Given, every prepare, decision and status answer must
   * carry the coordinator's signature for this host and transaction (FLEET_AUTH_005 otherwise: refused,
   * nothing staged or applied). Absent, the host relies on the NATS permissions alone.
   */
  readonly coordinatorKey?: string;
  readonly onReport?: (report: CriticalReport) => void;
}

export class CriticalParticipant {
  private readonly s: Subjects;
  private readonly unsubs: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private settling: Promise<number> | undefined;
  private readonly verify: ((agentId: string, m: TpcSigned, sig: string | undefined) => boolean) | undefined;

  constructor(private readonly o: CriticalParticipantOptions) {
    this.s = subjects(o.namespace);
    this.verify = o.coordinatorKey === undefined ? undefined : tpcVerifier(o.coordinatorKey);
  }

  private checkSigned(m: TpcSigned, sig: string | undefined): void {
    if (this.verify === undefined || this.verify(this.o.store.agentId, m, sig)) return;
    throw new FleetError('FLEET_AUTH_005', `${m.t} of transaction ${m.txid}: ${sig === undefined ? 'no signature' : "the signature is not the coordinator's for this host"}; ignored`, {
      details: { txid: m.txid, t: m.t },
    });
  }

  start(): void {
    if (this.unsubs.length > 0) return;
    this.unsubs.push(this.o.transport.respond(this.s.tpcAgent(this.o.store.agentId), (data) => Promise.resolve(this.handle(data))));
    this.unsubs.push(this.o.transport.onStatus((online) => void (online ? this.settleInDoubt() : undefined)));
    this.timer = setInterval(() => void this.settleInDoubt(), this.o.retryMs ?? 5000);
    this.timer.unref();
    void this.settleInDoubt();
  }

  stop(): void {
    for (const u of this.unsubs.splice(0)) u();
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One request from the coordinator, answered (never throws: a failure is an error reply, which the coordinator counts as no vote). */
  handle(data: Uint8Array): Uint8Array {
    let txid: string | undefined;
    try {
      const req = decodeTpcAgentRequest(data);
      txid = req.txid;
      this.checkSigned(req.t === 'prepare' ? { t: 'prepare', txid: req.txid, operation: req.operation, deadline: req.deadline } : { t: 'decision', txid: req.txid, decision: req.decision }, req.sig);
      let reply: TpcAgentReply;
      if (req.t === 'prepare') {
        const vote = this.o.store.criticalPrepare(req.txid, req.operation, req.deadline);
        this.report({ type: 'voted', txid: req.txid, vote });
        reply = { protocol: PROTOCOL_VERSION, txid: req.txid, vote };
      } else {
        const state = this.o.store.criticalDecide(req.txid, req.decision);
        this.report({ type: 'decided', txid: req.txid, state, via: 'coordinator' });
        reply = { protocol: PROTOCOL_VERSION, txid: req.txid, state };
      }
      return encodeJson(reply);
    } catch (e) {
      this.report({ type: 'error', ...(txid === undefined ? {} : { txid }), error: e });
      return encodeJson(errorReply(e));
    }
  }

  /** Asks the coordinator about every transaction in doubt; resolves with how many were settled. One pass at a time. */
  settleInDoubt(): Promise<number> {
    this.settling ??= this.settlePass().finally(() => (this.settling = undefined));
    return this.settling;
  }

  private async settlePass(): Promise<number> {
    let settled = 0;
    let inDoubt: readonly { readonly txid: string }[];
    try {
      inDoubt = this.o.store.criticalInDoubt();
    } catch (e) {
      this.report({ type: 'error', error: e });
      return 0;
    }
    for (const { txid } of inDoubt) {
      try {
        const r = await this.o.transport.request(this.s.tpcStatus(this.o.store.agentId), encodeJson({ protocol: PROTOCOL_VERSION, txid }), { timeoutMs: 5000 });
        const reply = decodeTpcStatusReply(r.data);
        if (!reply.ok) throw new Error(`${reply.error.code}: ${reply.error.message}`);
        if (reply.value.txid !== txid) throw new FleetError('FLEET_DECODE_002', `status answer about ${reply.value.txid}, not ${txid}`);
        this.checkSigned({ t: 'status', txid, decision: reply.value.decision }, reply.value.sig);
        if (reply.value.decision === 'pending') continue;
        const state = this.o.store.criticalDecide(txid, reply.value.decision);
        this.report({ type: 'decided', txid, state, via: 'status' });
        settled++;
      } catch (e) {
        // Offline, or the coordinator is not up: in doubt still, asked again on the next pass.
        this.report({ type: 'error', txid, error: e });
      }
    }
    return settled;
  }

  private report(r: CriticalReport): void {
    try {
      this.o.onReport?.(r);
    } catch {
      // a reporting failure must not change what is answered
    }
  }
}
