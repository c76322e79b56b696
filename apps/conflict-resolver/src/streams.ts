import type { Subjects } from '@fleet/contracts';
import type { ConsumerSpec, StreamSpec } from '@fleet/messaging';
import type { ConflictResolverConfig } from './config';

/**
 * Streams this service declares: its own (`resolved` events), and the two it reads or writes,
 * declared as their owners declare them so start order does not matter (the log: resolution
 * changes are announced there; the vv stream: the conflict events it consumes).
 */
export function conflictResolverStreams(s: Subjects, config: Pick<ConflictResolverConfig, 'streamReplicas'>): StreamSpec[] {
  return [
    { name: s.streams.log, subjects: [s.appended], description: 'changes appended to the change log', replicas: config.streamReplicas },
    {
      name: s.streams.vv,
      subjects: [s.classifiedAll],
      description: 'version-vector: applied records, stale/duplicate changes, detected conflicts',
      replicas: config.streamReplicas,
      maxAgeMs: 7 * 24 * 3600 * 1000,
    },
    {
      name: s.streams.conflicts,
      subjects: [s.resolved],
      description: 'conflict-resolver: what became of each detected conflict',
      replicas: config.streamReplicas,
      maxAgeMs: 30 * 24 * 3600 * 1000,
    },
  ];
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
