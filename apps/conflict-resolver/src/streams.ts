import type { Subjects } from '@fleet/contracts';
import { fleetStreams } from '@fleet/messaging';
import type { ConsumerSpec, StreamSpec } from '@fleet/messaging';
import type { ConflictResolverConfig } from './config';

/**
 * Streams this service declares: its own (`resolved` events), and the two it reads or writes,
 * declared as their owners declare them so start order does not matter (the log: resolution
 * changes are announced there; the vv stream: the conflict events it consumes).
 */
export function conflictResolverStreams(s: Subjects, config: Pick<ConflictResolverConfig, 'streamReplicas'>): StreamSpec[] {
  const all = fleetStreams(s, config.streamReplicas);
  return [all.log, all.vv, all.conflicts];
}

/** Every replica binds this durable consumer of the conflict events. */
export function conflictConsumerSpec(s: Subjects, config: Pick<ConflictResolverConfig, 'ackWait' | 'maxDeliver'>): ConsumerSpec {
  return {
    stream: s.streams.vv,
    durable: `${s.ns}-conflict-resolver`,
    filterSubject: s.classified('conflict'),
    description: 'conflict-resolver: apply the strategy to detected conflicts',
    ackWaitMs: config.ackWait,
    maxDeliver: config.maxDeliver,
  };
}
