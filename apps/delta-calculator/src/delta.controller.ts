import { Body, Catch, Controller, Get, Headers as HttpHeaders, HttpCode, Inject, Param, Put, UseFilters } from '@nestjs/common';
import type { ArgumentsHost, ExceptionFilter } from '@nestjs/common';
import type { Type } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { z } from 'zod';
import type { OperatorCheck } from '@fleet/config';
import { decodeWith, subjects, AgentIdSchema } from '@fleet/contracts';
import { isSubjectToken } from '@fleet/contracts';
import { DeltaStore, MerkleService, Nudger, PullService } from '@fleet/delta';
import { JetStreamEvent, JetStreamServer, NatsRequest, ReplyWithHeaders } from '@fleet/messaging';
import { isFleetError } from '@fleet/errors';
import type { InboundMessage, InboundRequest } from '@fleet/messaging';
import type { DeltaConfig } from './config';

const agentOf = (prefix: string, subject: string): string => subject.slice(prefix.length);

/** Request/reply handlers (queue group: replicas share the load) and the nudge consumer. A factory: subjects come from config. */
export function deltaController(config: DeltaConfig): Type<unknown> {
  const s = subjects(config.namespace);
  // Agents' own subjects: answered only in the requesting agent's inbox (contracts' replyRefusal).
  const opts = { maxConcurrent: config.maxConcurrent, agentReplies: true };

  @Controller()
  class DeltaController {
    constructor(
      @Inject(PullService) private readonly pulls: PullService,
      @Inject(MerkleService) private readonly merkle: MerkleService,
      @Inject(Nudger) private readonly nudger: Nudger,
      @Inject(JetStreamServer) private readonly transport: JetStreamServer,
    ) {}

    private maxPayload(): number {
      return this.transport.bus.nc.info?.max_payload ?? 1024 * 1024;
    }

    @NatsRequest(s.pullAll, s.queueGroups.pull, opts)
    async pull(@Payload() req: InboundRequest): Promise<ReplyWithHeaders> {
      const r = await this.pulls.pull(agentOf(`${s.ns}.pull.`, req.subject), req.data, this.maxPayload());
      return new ReplyWithHeaders(r.data, r.headers);
    }

    @NatsRequest(s.pullKeysAll, s.queueGroups.pull, opts)
    async pullKeys(@Payload() req: InboundRequest): Promise<ReplyWithHeaders> {
      const r = await this.pulls.pullKeys(agentOf(`${s.ns}.pullkeys.`, req.subject), req.data, this.maxPayload());
      return new ReplyWithHeaders(r.data, r.headers);
    }

    @NatsRequest(s.originAll, s.queueGroups.pull, opts)
    async origin(@Payload() req: InboundRequest): Promise<Uint8Array> {
      return this.pulls.origin(agentOf(`${s.ns}.origin.`, req.subject), req.data);
    }

    @NatsRequest(s.merkleAll, s.queueGroups.pull, opts)
    async verify(@Payload() req: InboundRequest): Promise<Uint8Array> {
      return this.merkle.answer(agentOf(`${s.ns}.merkle.`, req.subject), req.data);
    }

    /** One durable consumer shared by the replicas: each appended event reaches one of them, which nudges. */
    @JetStreamEvent({ stream: s.streams.log, durable: `${s.ns}-delta-calculator-notify`, filterSubject: s.appended, deliverPolicy: 'new', description: 'delta-calculator: nudges' })
    async onAppended(@Payload() msg: InboundMessage): Promise<void> {
      this.nudger.onAppended(msg.data);
    }
  }
  return DeltaController;
}

const GroupsBody = z.strictObject({ groups: z.array(z.string().refine(isSubjectToken, { error: 'expected a group name token' })).max(64) });

/** FleetError -> HTTP at the edge: decode errors are 400, a missing or wrong operator token 401, anything else 500. */
@Catch()
export class FleetHttpFilter implements ExceptionFilter {
  catch(e: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<{ status(n: number): { json(b: unknown): void } }>();
    if (isFleetError(e)) res.status(e.code.startsWith('FLEET_DECODE_') ? 400 : e.code === 'FLEET_AUTH_004' ? 401 : 500).json({ error: { code: e.code, message: e.message } });
    else res.status(500).json({ error: { code: 'FLEET_INTERNAL_001', message: 'internal error' } });
  }
}

/**
 * Operator API: group membership (authorises `group.<name>` pulls, routes nudges), `PUT` and `GET
 * /agents/:id/groups`, both with the operator token (`Authorization: Bearer <token>`,
 * FLEET_DELTA_OPERATOR_TOKEN; 401 otherwise). A factory: the check comes from config.
 */
export function agentsController(authorize: OperatorCheck): Type<unknown> {
  @UseFilters(FleetHttpFilter)
  @Controller('agents')
  class AgentsController {
    constructor(@Inject(DeltaStore) private readonly store: DeltaStore) {}

    @Put(':id/groups')
    @HttpCode(200)
    async setGroups(@Param('id') id: string, @Body() body: unknown, @HttpHeaders('authorization') authorization?: string): Promise<{ agentId: string; groups: string[] }> {
      authorize(authorization, 'agent groups write');
      const agentId = decodeWith(AgentIdSchema, id, ['id']);
      const { groups } = decodeWith(GroupsBody, body);
      const unique = [...new Set(groups)].sort();
      await this.store.setGroups(agentId, unique);
      return { agentId, groups: unique };
    }

    @Get(':id/groups')
    async getGroups(@Param('id') id: string, @HttpHeaders('authorization') authorization?: string): Promise<{ agentId: string; groups: string[] }> {
      authorize(authorization, 'agent groups read');
      const agentId = decodeWith(AgentIdSchema, id, ['id']);
      return { agentId, groups: await this.store.groupsOf(agentId) };
    }
  }
  return AgentsController;
}
