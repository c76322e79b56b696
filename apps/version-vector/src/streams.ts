import type { Subjects } from '@fleet/contracts';
import type { ConsumerSpec, StreamSpec } from '@fleet/messaging';
import type { VersionVectorConfig } from './config';

/**
 * The streams this service declares: its own classification stream, and the log stream it reads
 * (declared exactly as the change-log declares it, so whichever service starts first creates it).
 */
export function versionVectorStreams(s: Subjects, config: Pick<VersionVectorConfig, 'streamReplicas'>): StreamSpec[] {
  return [
    { name: s.streams.log, subjects: [s.appended], description: 'changes appended to the change log', replicas: config.streamReplicas },
    {
      name: s.streams.vv,
      subjects: [s.classifiedAll],
      description: 'version-vector: applied records, stale/duplicate changes, detected conflicts',
      replicas: config.streamReplicas,
      maxAgeMs: 7 * 24 * 3600 * 1000,
    },
  ];
}

/** Every replica binds this durable consumer of the appended events. */
export function appendedConsumerSpec(s: Subjects, config: Pick<VersionVectorConfig, 'ackWait' | 'maxDeliver'>): ConsumerSpec {
  return {
    stream: s.streams.log,
    durable: `${s.ns}-version-vector`,
    filterSubject: s.appended,
    description: 'version-vector: classify and apply appended changes',
    ackWaitMs: config.ackWait,
    maxDeliver: config.maxDeliver,
  };
}
