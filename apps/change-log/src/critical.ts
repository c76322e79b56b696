/**
 * Critical operations on the change-log service: the two-phase commit coordinator
 * (`@fleet/server-store` CriticalCoordinator) wired to NATS and HTTP.
 *
 * - `NatsAgentParticipants`: the coordinator's port to agents, request/reply on `<ns>.tpc.agent.<id>`.
 * - `criticalApiController`: the operator API on NATS (`<ns>.admin.critical.begin|show|list`, every one
 *   with the operator token) and the agents' status requests (`<ns>.tpc.status.<id>`, no token: the
 *   agent's NATS permissions carry its identity), queue group `queueGroups.coordinator`.
 * - `CriticalHttpController`: the same operator API over HTTP (`POST /critical`, `GET /critical`,
 *   `GET /critical/:txid`), with the operator token (401 otherwise).
 * - `CriticalRecovery`: `recover()` at start and every `criticalRetry` (presumed abort of transactions
 *   whose coordinator died mid-vote, phase 2 again for participants that missed it), and at most once
 *   a minute `prune()` of finished transactions older than `criticalRetention`, in bounded batches.
 */
import { Body, Controller, Get, HttpCode, Headers as HttpHeaders, Inject, Logger, Param, Post, Query, UseFilters } from '@nestjs/common';
import type { OnApplicationBootstrap, OnApplicationShutdown, Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { checkOperatorToken } from '@fleet/config';
import {
  answerRequest,
  CriticalBeginRequestSchema,
  CriticalListRequestSchema,
  CriticalShowRequestSchema,
  decodeCriticalBeginRequest,
  decodeCriticalListRequest,
  decodeCriticalShowRequest,
  decodeTpcAgentReply,
  decodeTpcStatusRequest,
  decodeWith,
  Headers,
  encodeJson,
  PROTOCOL_VERSION,
  subjects,
} from '@fleet/contracts';
import type { CriticalOperation, Subjects, TpcSigned } from '@fleet/contracts';
import { FleetError } from '@fleet/errors';
import { isNoResponders, NatsRequest } from '@fleet/messaging';
import type { InboundRequest, Messaging } from '@fleet/messaging';
import { FleetErrorHttpFilter } from '@fleet/observability';
import { CriticalCoordinator } from '@fleet/server-store';
import type { AgentParticipants } from '@fleet/server-store';
import type { Decision, Vote } from '@fleet/sync-core';
import type { ChangeLogConfig } from './config';
import { CHANGE_LOG_CONFIG } from './tokens';

/** Failpoints of the coordinator (see failpoints.ts); test-only: crash the process mid-transaction. */
export const CRITICAL_FAILPOINTS = ['critical.after-votes', 'critical.after-decision'] as const;

/** The coordinator's port to agents over NATS request/reply. `bus` is read at each call: the transport connects after the providers are built. */
export class NatsAgentParticipants implements AgentParticipants {
  private readonly s: Subjects;

  constructor(
    private readonly bus: () => Messaging,
    namespace: string,
    /** Signs what hosts act on (`tpcSigner`), when the coordinator has a signing key. */
    private readonly sign?: (agentId: string, m: TpcSigned) => string,
  ) {
    this.s = subjects(namespace);
  }

  private signed<M extends TpcSigned>(agentId: string, m: M): M & { sig?: string } {
    return this.sign === undefined ? m : { ...m, sig: this.sign(agentId, m) };
  }

  /**
   * A host nobody answers for (not connected) refuses at once: it certainly did not receive the prepare.
   * So does one that answers with an error (its store is closed or full...): the reason is its error. A
   * timeout throws: no vote.
   */
  async prepare(agentId: string, txid: string, operation: CriticalOperation, deadline: number, timeoutMs: number): Promise<Vote> {
    let r;
    try {
      r = await this.ask(agentId, txid, { protocol: PROTOCOL_VERSION, ...this.signed(agentId, { t: 'prepare', txid, operation, deadline }) }, timeoutMs);
    } catch (e) {
      if (isNoResponders(e)) return { vote: 'no', reason: 'not connected (nothing answers on its participant subject)' };
      if (e instanceof AgentErrorReply) return { vote: 'no', reason: e.message };
      throw e;
    }
    if (!('vote' in r)) throw new FleetError('FLEET_DECODE_002', `agent ${agentId} answered a prepare of ${txid} without a vote`);
    return r.vote;
  }

  async decide(agentId: string, txid: string, decision: Decision, timeoutMs: number): Promise<'committed' | 'aborted'> {
    const r = await this.ask(agentId, txid, { protocol: PROTOCOL_VERSION, ...this.signed(agentId, { t: 'decision', txid, decision }) }, timeoutMs);
    if (!('state' in r)) throw new FleetError('FLEET_DECODE_002', `agent ${agentId} answered a decision of ${txid} without its state`);
    return r.state;
  }

  private async ask(agentId: string, txid: string, body: object, timeoutMs: number) {
    const reply = decodeTpcAgentReply((await this.bus().request(this.s.tpcAgent(agentId), encodeJson(body), { timeoutMs })).data);
    if (!reply.ok) throw new AgentErrorReply(`${reply.error.code}: ${reply.error.message}`);
    // A reply about another transaction is no answer to this one (a confused or forged responder).
    if (reply.value.txid !== txid) throw new FleetError('FLEET_DECODE_002', `agent ${agentId} answered about transaction ${reply.value.txid}, not ${txid}`);
    return reply.value;
  }
}

/** The agent answered with an error reply (as opposed to not answering). */
class AgentErrorReply extends Error {}

/**
 * The change-log's operator token check (libs/config `checkOperatorToken`), for every operator request:
 * critical operations (begin, list, show), dead letters (list, show, replay, discard), agents, verify, status.
 */
export function checkChangeLogOperator(configured: string | undefined, authorization: string | undefined, action = 'critical begin'): void {
  checkOperatorToken(configured, authorization, action, 'FLEET_CHANGELOG_OPERATOR_TOKEN');
}

export function criticalApiController(config: ChangeLogConfig, sign?: (agentId: string, m: TpcSigned) => string): Type<unknown> {
  const s = subjects(config.namespace);

  @Controller()
  class CriticalApiController {
    constructor(@Inject(CriticalCoordinator) private readonly coordinator: CriticalCoordinator) {}

    @NatsRequest(s.criticalApi('begin'), s.queueGroups.coordinator)
    begin(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        checkChangeLogOperator(config.operatorToken, req.header(Headers.Authorization));
        const r = decodeCriticalBeginRequest(req.data);
        return { protocol: PROTOCOL_VERSION, transaction: await this.coordinator.begin(r.operation, r.agents, r.voteTimeoutMs) };
      });
    }

    @NatsRequest(s.criticalApi('show'), s.queueGroups.coordinator)
    show(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        checkChangeLogOperator(config.operatorToken, req.header(Headers.Authorization), 'critical show');
        return { protocol: PROTOCOL_VERSION, transaction: await this.coordinator.show(decodeCriticalShowRequest(req.data).txid) };
      });
    }

    @NatsRequest(s.criticalApi('list'), s.queueGroups.coordinator)
    list(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        checkChangeLogOperator(config.operatorToken, req.header(Headers.Authorization), 'critical list');
        return { protocol: PROTOCOL_VERSION, transactions: await this.coordinator.list(decodeCriticalListRequest(req.data)) };
      });
    }

    /** An agent in doubt asks; the agent id is the subject's last token (its NATS permissions allow only its own). */
    @NatsRequest(s.tpcStatusAll, s.queueGroups.coordinator, { agentReplies: true })
    status(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        const agentId = s.agentOfTpcStatus(req.subject);
        if (agentId === undefined) throw new FleetError('FLEET_DECODE_002', `not a status subject: ${req.subject}`);
        const { txid } = decodeTpcStatusRequest(req.data);
        const decision = await this.coordinator.status(agentId, txid);
        return { protocol: PROTOCOL_VERSION, txid, decision, ...(sign === undefined ? {} : { sig: sign(agentId, { t: 'status', txid, decision }) }) };
      });
    }
  }
  return CriticalApiController;
}

/**
 * `POST /critical` with `{operation, agents, voteTimeoutMs?}` (answers once decided: 200 whatever the
 * outcome, the transaction's `state` and `reason` tell it), `GET /critical?state=&limit=`,
 * `GET /critical/:txid`. Inputs are decoded with the NATS API's schemas. Every route needs the operator
 * token (`Authorization: Bearer <token>`, FLEET_CHANGELOG_OPERATOR_TOKEN; 401 otherwise).
 */
@Controller('critical')
@UseFilters(new FleetErrorHttpFilter('FLEET_TPC_001'))
export class CriticalHttpController {
  constructor(
    @Inject(CriticalCoordinator) private readonly coordinator: CriticalCoordinator,
    @Inject(CHANGE_LOG_CONFIG) private readonly config: ChangeLogConfig,
  ) {}

  @Post()
  @HttpCode(200)
  async begin(@Body() body: unknown, @HttpHeaders('authorization') authorization?: string): Promise<unknown> {
    checkChangeLogOperator(this.config.operatorToken, authorization);
    const r = decodeWith(CriticalBeginRequestSchema, { protocol: PROTOCOL_VERSION, ...(typeof body === 'object' && body !== null ? body : {}) });
    return { protocol: PROTOCOL_VERSION, transaction: await this.coordinator.begin(r.operation, r.agents, r.voteTimeoutMs) };
  }

  @Get()
  async list(@Query('state') state?: string, @Query('limit') limit?: string, @HttpHeaders('authorization') authorization?: string): Promise<unknown> {
    checkChangeLogOperator(this.config.operatorToken, authorization, 'critical list');
    if (limit !== undefined && !/^\d{1,4}$/.test(limit)) throw new FleetError('FLEET_DECODE_002', `limit: expected a positive integer, got ${JSON.stringify(limit)}`);
    const r = decodeWith(CriticalListRequestSchema, {
      protocol: PROTOCOL_VERSION,
      ...(state === undefined ? {} : { state }),
      ...(limit === undefined ? {} : { limit: Number(limit) }),
    });
    return { protocol: PROTOCOL_VERSION, transactions: await this.coordinator.list(r) };
  }

  @Get(':txid')
  async show(@Param('txid') txid: string, @HttpHeaders('authorization') authorization?: string): Promise<unknown> {
    checkChangeLogOperator(this.config.operatorToken, authorization, 'critical show');
    const r = decodeWith(CriticalShowRequestSchema, { protocol: PROTOCOL_VERSION, txid });
    return { protocol: PROTOCOL_VERSION, transaction: await this.coordinator.show(r.txid) };
  }
}

/** Finished transactions deleted per statement, and statements per pass: a pass stays short, a backlog goes over a few passes. */
export const PRUNE_BATCH = 500;
const PRUNE_BATCHES_PER_PASS = 10;
/** Pruning is tried at most this often (ms): the retention is days, a query every recovery pass would be waste. */
const PRUNE_EVERY_MS = 60_000;

/**
 * Runs the coordinator's recovery at start and then every `criticalRetry`, one pass at a time; a pass
 * also prunes finished transactions past `criticalRetention` when the last prune is a minute old. Every
 * replica runs it: recovery races are safe (conditional updates), and pruning takes rows `for update
 * skip locked`.
 */
export class CriticalRecovery implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('CriticalRecovery');
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastPrune = -Infinity;

  constructor(
    @Inject(CriticalCoordinator) private readonly coordinator: CriticalCoordinator,
    @Inject(CHANGE_LOG_CONFIG) private readonly config: ChangeLogConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.pass(), this.config.criticalRetry);
    this.timer.unref();
    void this.pass(); // in the background: a long pass must not hold the service's start (and its probes)
  }

  /** One recovery pass, then pruning when due (skipped while the previous pass runs). */
  pass(): Promise<void> {
    this.running ??= this.coordinator
      .recover()
      .then((n) => {
        if (n > 0) this.logger.log(`recovery: ${n} critical transaction(s) moved on`);
      })
      .catch((e: unknown) => this.logger.warn(`recovery pass failed (retried in ${this.config.criticalRetry} ms): ${e instanceof Error ? e.message : String(e)}`))
      .then(async () => void (await this.pruneIfDue()))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Prunes finished transactions older than `criticalRetention`: up to PRUNE_BATCHES_PER_PASS batches, at most once a minute. Returns how many went. */
  async pruneIfDue(now = Date.now()): Promise<number> {
    if (now - this.lastPrune < PRUNE_EVERY_MS) return 0;
    this.lastPrune = now;
    let total = 0;
    try {
      for (let i = 0; i < PRUNE_BATCHES_PER_PASS; i++) {
        const r = await this.coordinator.prune(this.config.criticalRetention, PRUNE_BATCH);
        total += r.committed + r.aborted;
        if (r.committed + r.aborted < PRUNE_BATCH) break;
      }
    } catch (e) {
      this.logger.warn(`pruning finished critical transactions failed (retried next pass): ${e instanceof Error ? e.message : String(e)}`);
      this.lastPrune = -Infinity;
    }
    if (total > 0) this.logger.log(`pruned ${total} finished critical transaction(s) older than ${this.config.criticalRetention} ms`);
    return total;
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.running;
  }
}
