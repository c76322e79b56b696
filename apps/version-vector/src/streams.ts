import type { Subjects } from '@fleet/contracts';
import { fleetStreams } from '@fleet/messaging';
import type { ConsumerSpec, StreamSpec } from '@fleet/messaging';
import type { VersionVectorConfig } from './config';

/**
 * The streams this service declares: its own classification stream, and the log stream it reads
 * (declared exactly as the change-log declares it, so whichever service starts first creates it).
 */
export function versionVectorStreams(s: Subjects, config: Pick<VersionVectorConfig, 'streamReplicas'>): StreamSpec[] {
  const all = fleetStreams(s, config.streamReplicas);
  return [all.log, all.vv];
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
