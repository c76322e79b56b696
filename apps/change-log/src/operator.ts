/**
 * change-log's part of the operator API (fleetctl `status`, `agents`, `verify`, `replay`), NATS
 * request/reply in the queue group `queueGroups.coordinator`:
 * - `<ns>.admin.agents.list|show`: the agents the log knows (`origin_progress`);
 * - `<ns>.admin.deadletters.list|show|replay|discard`: the dead-letter stream (messaging's
 *   `DeadLetterDesk`);
 * - `<ns>.admin.verify.change-log`: `origin_progress` against the log;
 * - the status figures (`STATUS_FACTS`): log head, agents, open critical operations, dead letters.
 * Every one needs the operator token, like `critical begin` (reads too: dead letters hold agents' data).
 */
import { Controller, Inject } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { DataSource } from 'typeorm';
import {
  answerRequest,
  decodeAgentShowRequest,
  decodeAgentsListRequest,
  decodeDeadLettersActionRequest,
  decodeDeadLetterShowRequest,
  decodeDeadLettersListRequest,
  decodeVerifyRequest,
  Headers,
  PROTOCOL_VERSION,
  subjects,
} from '@fleet/contracts';
import type { AgentsListResponse, StatusFacts, VerifyResponse } from '@fleet/contracts';
import { DeadLetterDesk, NatsRequest } from '@fleet/messaging';
import type { InboundRequest } from '@fleet/messaging';
import { agentProgress, changeLogFigures, listAgents, verifyOrigins } from '@fleet/server-store';
import type { ChangeLogConfig } from './config';
import { checkChangeLogOperator } from './critical';

/** The status figures of change-log (`fleetctl status`). */
export async function changeLogStatusFacts(ds: DataSource, desk: DeadLetterDesk): Promise<StatusFacts> {
  const [figures, deadLetters] = await Promise.all([changeLogFigures(ds), desk.summary()]);
  return { ...figures, deadLetters };
}

export function operatorApiController(config: ChangeLogConfig): Type<unknown> {
  const s = subjects(config.namespace);
  const group = s.queueGroups.coordinator;
  const authorize = (req: InboundRequest, action: string): void => checkChangeLogOperator(config.operatorToken, req.header(Headers.Authorization), action);

  @Controller()
  class OperatorApiController {
    constructor(
      @Inject(DataSource) private readonly ds: DataSource,
      @Inject(DeadLetterDesk) private readonly desk: DeadLetterDesk,
    ) {}

    @NatsRequest(s.agentsApi('list'), group)
    agents(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async (): Promise<AgentsListResponse> => {
        authorize(req, 'agents list');
        const r = decodeAgentsListRequest(req.data);
        const page = await listAgents(this.ds, { ...(r.after === undefined ? {} : { after: r.after }), limit: r.limit ?? 100 });
        return { protocol: PROTOCOL_VERSION, agents: page.agents, hasMore: page.hasMore, nextCursor: page.agents[page.agents.length - 1]?.agentId ?? null };
      });
    }

    @NatsRequest(s.agentsApi('show'), group)
    agent(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        authorize(req, 'agents show');
        return { protocol: PROTOCOL_VERSION, agent: await agentProgress(this.ds, decodeAgentShowRequest(req.data).agentId) };
      });
    }

    @NatsRequest(s.deadLettersApi('list'), group)
    deadLetters(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        authorize(req, 'dead-letter list');
        return this.desk.list(decodeDeadLettersListRequest(req.data));
      });
    }

    @NatsRequest(s.deadLettersApi('show'), group)
    deadLetter(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        authorize(req, 'dead-letter show');
        return this.desk.show(decodeDeadLetterShowRequest(req.data).seq);
      });
    }

    @NatsRequest(s.deadLettersApi('replay'), group)
    replay(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        authorize(req, 'dead-letter replay');
        return { protocol: PROTOCOL_VERSION, results: await this.desk.replay(decodeDeadLettersActionRequest(req.data).seqs) };
      });
    }

    @NatsRequest(s.deadLettersApi('discard'), group)
    discard(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async () => {
        authorize(req, 'dead-letter discard');
        return { protocol: PROTOCOL_VERSION, results: await this.desk.discard(decodeDeadLettersActionRequest(req.data).seqs) };
      });
    }

    @NatsRequest(s.verifyApi('change-log'), group, { maxConcurrent: 1 }) // one long snapshot at a time: the pool's other connections append
    verify(@Payload() req: InboundRequest): Promise<unknown> {
      return answerRequest(async (): Promise<VerifyResponse> => {
        authorize(req, 'verify');
        const r = decodeVerifyRequest(req.data);
        const started = performance.now();
        const check = await verifyOrigins(this.ds, r.maxDiffs ?? 100);
        return { protocol: PROTOCOL_VERSION, service: 'change-log', durationMs: Math.round(performance.now() - started), checks: [check] };
      });
    }
  }
  return OperatorApiController;
}
